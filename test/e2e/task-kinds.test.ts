/**
 * Task kinds, results and load-aware placement on three real node processes
 * (each embedding an etcd member), all with `--placement least-loaded
 * --max-load 90%`. e1 and e2 are pinned to CPU 0, e3 to CPU 1 (taskset), and
 * a busy loop outside loom is pinned to CPU 1: e3 measures its own CPU busy,
 * holds back, and runs none of the tasks, while the cluster runs an HTTP
 * task, a command task returning a result, and a job reading the results of
 * the job it runs after. Needs two CPUs and taskset; skipped otherwise.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import { AddressInfo } from 'net';
import { LoomApi } from '../../src/client/client';
import { JobState, TaskState } from '../../src/gen/loom';
import { spec } from '../support/nodes';
import { waitFor } from '../support/etcd';
import { cli, LOOM_BIN, ProcCluster, startCluster } from '../support/cluster';

jest.setTimeout(180_000);

const canPin = os.cpus().length >= 2 && spawnSync('taskset', ['-c', '1', 'true']).status === 0;
const d = canPin ? describe : describe.skip;

d('task kinds on a 3-node cluster, one node burdened', () => {
  let cluster: ProcCluster;
  let api: LoomApi;
  let burner: ChildProcess | undefined;
  let server: http.Server;
  let url: string;
  const env = { LOOM_INSECURE: '', LOOM_TLS_CA: '', LOOM_TLS_CERT: '', LOOM_TLS_KEY: '' };
  const loom = (...args: string[]) => cli(['-N', cluster.nodes[0].api, ...args], env);

  beforeAll(async () => {
    server = http.createServer((req, res) => res.end(`hello ${req.method}`));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    cluster = await startCluster(3, ['--slots', '4', '--placement', 'least-loaded', '--max-load', '90%'], undefined, ['0', '0', '1']);
    // Tasks run under uids of their own: they pass through the cluster's dir to their scratch dirs.
    fs.chmodSync(cluster.dir, 0o711);
    api = new LoomApi(cluster.nodes[0].api);
    await waitFor(async () => (await api.nodes().catch(() => [])).length === 3, { what: 'three nodes up', timeoutMs: 60_000 }).catch((err) => {
      for (const n of cluster.nodes) process.stderr.write(`--- ${n.name}\n${n.output()}\n`);
      throw err;
    });
    burner = spawn('taskset', ['-c', '1', process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' });
  });

  afterAll(async () => {
    if (burner && burner.exitCode === null && burner.signalCode === null) burner.kill('SIGKILL');
    api?.close();
    await cluster?.stopAll();
    await new Promise((r) => server.close(r));
  });

  it('the node whose CPU is burdened says so and holds back; the others do not', async () => {
    const held = await waitFor(async () => {
      const e3 = (await api.nodes()).find((n) => n.name === 'e3');
      return e3 && /^CPUs \d+% busy \(--max-load 90%/.test(e3.pausedReason) ? e3 : undefined;
    }, { what: 'e3 to hold back', timeoutMs: 60_000 });
    expect(held.metrics!.cpuUtilization).toBeGreaterThanOrEqual(0.9);
    const others = (await api.nodes()).filter((n) => n.name !== 'e3');
    expect(others.map((n) => n.pausedReason)).toEqual(['', '']);
    expect((await loom('nodes')).stdout).toMatch(/^e3 .*paused: CPUs \d+% busy/m);
  });

  it('runs an HTTP task, a command task with a result, and a job reading its dependency\'s results; none on e3', async () => {
    const web = await loom('run', '--http', url, '--data', 'x');
    expect(web).toMatchObject({ code: 0, stdout: 'hello POST' });
    const [withResult] = await api.submit([spec(['sh', '-c', 'printf 42 > "$LOOM_RESULT"'])]);
    expect(await loom('wait', withResult, '--result')).toMatchObject({ stderr: '', code: 0, stdout: '42' });

    await api.submitJob({ name: 'parts', owner: '', template: spec(['sh', '-c', 'printf "part-$LOOM_TASK_INDEX" > "$LOOM_RESULT"']), count: 4, overrides: {}, after: [], afterAny: [], labels: {} });
    const merge = spec(['sh', '-c', 'for i in 0 1 2 3; do "$NODE" "$LOOM_JS" -N "$ADDR" job result parts --index $i; echo; done > "$LOOM_RESULT"']);
    merge.env = { NODE: process.execPath, LOOM_JS: LOOM_BIN, ADDR: cluster.nodes[0].api };
    await api.submitJob({ name: 'merge', owner: '', template: merge, count: 1, overrides: {}, after: ['parts'], afterAny: [], labels: {} });
    await waitFor(async () => (await api.getJob('merge')).job!.state === JobState.JOB_COMPLETED, { what: 'merge to complete', timeoutMs: 90_000 });
    expect((await loom('job', 'result', 'merge', '--index', '0')).stdout).toBe('part-0\npart-1\npart-2\npart-3\n');

    const ids = await api.submit(Array.from({ length: 12 }, () => spec(['true'])));
    const done = await Promise.all(ids.map((id) => api.wait(id)));
    expect(done.every((t) => t.state === TaskState.COMPLETED)).toBe(true);
    const nodesUsed = new Set(done.map((t) => t.node));
    expect(nodesUsed.has('e3')).toBe(false);
    const all = (await api.list({ state: TaskState.COMPLETED, node: 'e3', pageSize: 100, pageToken: '' })).tasks;
    expect(all).toEqual([]);
  });
});
