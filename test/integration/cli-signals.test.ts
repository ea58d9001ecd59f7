/**
 * An attached `loom run` (a real CLI process) told to stop by SIGTERM/SIGINT,
 * against a real `loom node` process: the first signal cancels the task within
 * a short deadline and exits 143 / 130 saying whether the cancel reached the
 * cluster; a second one exits at once. The case that once hung for 30 s and
 * more: the node is gone when the signal comes.
 */
import { ChildProcessWithoutNullStreams, spawn } from 'child_process';
import { LoomApi } from '../../src/client/client';
import { CANCEL_DEADLINE_MS } from '../../src/client/cli';
import { TaskState } from '../../src/gen/loom';
import { waitFor } from '../support/etcd';
import { LOOM_BIN, ProcCluster, startCluster } from '../support/cluster';

jest.setTimeout(120_000);

let cluster: ProcCluster;
let api: LoomApi;
const started: ChildProcessWithoutNullStreams[] = [];

beforeAll(async () => {
  cluster = await startCluster(1, ['--slots', '4', '--shutdown-grace', '0s']);
  api = new LoomApi(cluster.nodes[0].api);
  await waitFor(async () => (await api.nodes().catch(() => [])).length === 1, { what: 'the node up', timeoutMs: 60_000 }).catch((err) => {
    process.stderr.write(`--- node log\n${cluster.nodes[0].output()}\n`);
    throw err;
  });
});

afterAll(async () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  api?.close();
  const node = cluster?.nodes[0].proc;
  if (node && node.exitCode === null && node.signalCode === null) node.kill('SIGCONT');
  await cluster?.stopAll();
});

interface Attached {
  proc: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** `loom run` of a task that prints "started" and sleeps, attached until the task runs. */
async function attachedRun(): Promise<Attached> {
  const proc = spawn(process.execPath, [LOOM_BIN, '-N', cluster.nodes[0].api, 'run', 'sh', '-c', 'echo started; sleep 60']);
  started.push(proc);
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    proc.on('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  await waitFor(() => out.includes('started'), { what: `the task's output (stderr: ${err})`, timeoutMs: 20_000 });
  return { proc, stdout: () => out, stderr: () => err, exited };
}

test('SIGTERM with the node up: the task is cancelled, exit 143', async () => {
  const run = await attachedRun();
  run.proc.kill('SIGTERM');
  const { code } = await run.exited;
  expect(code).toBe(143);
  expect(run.stderr()).toMatch(/SIGTERM: cancelling task (\S+)/);
  const id = /cancelling task (\S+)/.exec(run.stderr())![1];
  expect(run.stderr()).toMatch(/task \S+ cancelled|cancel of task \S+ reached the cluster/);
  await waitFor(async () => (await api.get(id)).state === TaskState.CANCELLED, { what: 'the task CANCELLED' });
});

test('node frozen, then killed: a second signal exits at once; SIGTERM alone exits within the cancel deadline', async () => {
  const frozenCase = await attachedRun();
  const killedCase = await attachedRun();
  const node = cluster.nodes[0].proc;

  // Frozen: connections are accepted but nothing answers, so the cancel waits
  // for its deadline; the second SIGINT must not wait for it.
  node.kill('SIGSTOP');
  frozenCase.proc.kill('SIGINT');
  await waitFor(() => frozenCase.stderr().includes('SIGINT: cancelling task'), { what: 'the cancel note' });
  const secondAt = Date.now();
  frozenCase.proc.kill('SIGINT');
  const frozen = await frozenCase.exited;
  expect(frozen.code).toBe(130);
  // It left before the cancel had an outcome to report (the deadline is 1 s).
  expect(frozenCase.stderr()).toMatch(/SIGINT again: exiting without waiting for the cancel; task \S+ may still run/);
  expect(frozenCase.stderr()).not.toMatch(/did not reach|reached the cluster|cancelled/);
  expect(frozen.at - secondAt).toBeLessThan(CANCEL_DEADLINE_MS);

  // Killed (a stopped process dies of SIGKILL too; its reaper takes its etcd member along).
  node.kill('SIGKILL');
  await new Promise<void>((resolve) => (node.exitCode !== null || node.signalCode !== null ? resolve() : node.once('exit', () => resolve())));
  const sentAt = Date.now();
  killedCase.proc.kill('SIGTERM');
  const killed = await killedCase.exited;
  expect(killed.code).toBe(143);
  expect(killedCase.stderr()).toMatch(/the cancel did not reach the cluster \(.*\): task \S+ may still run/);
  // The cancel deadline is 1 s; allow for a slow CI machine, far below the retries' 7 s and more.
  expect(killed.at - sentAt).toBeLessThan(3000);
});
