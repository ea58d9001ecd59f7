/**
 * An attached `loom run` (a real CLI process) whose task no live node can run
 * says why on stderr after about 2 s, the reason `loom status` gives, and again
 * when the reason changes; before, it waited in silence.
 */
import { ChildProcessWithoutNullStreams, spawn } from 'child_process';
import { uniqueRoot, waitFor } from '../support/etcd';
import { startNode, stopNode, TestNode } from '../support/nodes';
import { LOOM_BIN } from '../support/cluster';

jest.setTimeout(60_000);

const NO_ENGINE = { kind: 'unix' as const, socketPath: '/nonexistent/loom-test/docker.sock', source: 'test' };
const nodes: TestNode[] = [];
let cliProc: ChildProcessWithoutNullStreams | undefined;

afterAll(async () => {
  if (cliProc && cliProc.exitCode === null && cliProc.signalCode === null) cliProc.kill('SIGKILL');
  for (const n of nodes) await stopNode(n);
});

test('queued: the reason, then the new reason once it changes', async () => {
  const root = uniqueRoot();
  const first = await startNode(root, 'plain', { slots: 1, docker: NO_ENGINE });
  nodes.push(first);
  const proc = spawn(process.execPath, [LOOM_BIN, '-N', first.node.address, 'run', '--image', 'nonexistent:1', '--pull', 'never',
    '--constraint', 'zone=eu', 'true']);
  cliProc = proc;
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const startedAt = Date.now();

  await waitFor(() => stderr.includes('loom: queued: '), { what: `a queued notice (stderr: ${JSON.stringify(stderr)})` });
  // Not at once: a task that is claimed within a moment gets no notice.
  expect(Date.now() - startedAt).toBeGreaterThanOrEqual(1500);
  expect(stderr).toBe('loom: queued: no node has zone=eu\n');

  // A node with the label but no Docker engine either: the reason changes, and is said again.
  nodes.push(await startNode(root, 'eu', { slots: 1, docker: NO_ENGINE, labels: { zone: 'eu' } }));
  await waitFor(() => stderr.includes('no live node has a Docker engine'), { what: `the new reason (stderr: ${JSON.stringify(stderr)})` });
  expect(stderr).toBe('loom: queued: no node has zone=eu\nloom: queued: no live node has a Docker engine\n');

  proc.kill('SIGINT');
  expect(await exited).toBe(130);
});
