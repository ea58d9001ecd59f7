/**
 * Autoscaling with the exec provider, all real: a one-node cluster (its own
 * embedded etcd) whose node has `--autoscale`, and a provider script that
 * starts and stops worker-only `loom node --etcd` processes. 60 one-second
 * tasks, then 4 of 12 s (so the group is told to shrink while they still
 * run): the group grows to its max, the tasks spread over the workers, every
 * task completes exactly once in its first attempt (no work killed when the
 * group shrinks), and when the queue is empty the group goes back to min
 * (drained first, then handed to the provider, which SIGKILLs them as a
 * cloud ends an instance: work still running there would be lost).
 */
import * as fs from 'fs';
import * as path from 'path';
import { LoomApi } from '../../src/client/client';
import { TaskState } from '../../src/gen/loom';
import { sharedFile, spec } from '../support/nodes';
import { waitFor } from '../support/etcd';
import { LOOM_BIN, ProcCluster, startCluster } from '../support/cluster';

jest.setTimeout(240_000);

const TASKS = 64;
const LONG = 4;
let cluster: ProcCluster;
let api: LoomApi;
let dir: string;
let state: string;

/** The provider: `scale.sh COUNT`, keeping COUNT workers (stopping LOOM_AUTOSCALE_REMOVE first). */
function writeScaleScript(dir: string): string {
  const script = path.join(dir, 'scale.sh');
  fs.writeFileSync(script, `#!/usr/bin/env bash
set -eu
dir=${JSON.stringify(state)}
echo "$1 \${LOOM_AUTOSCALE_REMOVE:-}" >> "$dir/calls"
IFS=, read -ra remove <<< "\${LOOM_AUTOSCALE_REMOVE:-}"
for name in "\${remove[@]}"; do
  if [ -n "$name" ] && [ -f "$dir/$name.pid" ]; then kill -KILL "$(cat "$dir/$name.pid")" 2>/dev/null || true; rm -f "$dir/$name.pid"; fi
done
labels=()
IFS=, read -ra kv <<< "$LOOM_AUTOSCALE_LABELS"
for l in "\${kv[@]}"; do labels+=(--label "$l"); done
while [ "$(find "$dir" -maxdepth 1 -name 'w*.pid' | wc -l)" -lt "$1" ]; do
  n=$(( $(cat "$dir/seq" 2>/dev/null || echo 0) + 1 )); echo "$n" > "$dir/seq"
  ${JSON.stringify(process.execPath)} ${JSON.stringify(LOOM_BIN)} node --name "w$n" --etcd "$LOOM_ETCD_ENDPOINTS" --listen 127.0.0.1:0 \\
    --data-dir "$dir/w$n" --slots 1 --lease-ttl 3 "\${labels[@]}" > "$dir/w$n.log" 2>&1 < /dev/null &
  echo $! > "$dir/w$n.pid"; echo $! >> "$dir/all-pids"
done
`, { mode: 0o755 });
  return script;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'loom-autoscale-'));
  state = path.join(dir, 'workers');
  fs.mkdirSync(state);
  const policy = path.join(dir, 'policy.yaml');
  fs.writeFileSync(policy, [
    'group: workers', 'min: 0', 'max: 3', 'slotsPerNode: 1', 'targetQueuedPerSlot: 1',
    'upCooldown: 2s', 'downCooldown: 6s', 'interval: 1s', 'drainDeadline: 60s',
    `provider: { kind: exec, command: [${JSON.stringify(writeScaleScript(dir))}] }`, '',
  ].join('\n'));
  cluster = await startCluster(1, ['--slots', '1', '--lease-ttl', '3', '--autoscale', policy, '--http-listen', '127.0.0.1:0']);
  api = new LoomApi(cluster.nodes[0].api);
  await waitFor(async () => (await api.nodes().catch(() => [])).length === 1, { what: 'the node up', timeoutMs: 60_000 });
});

afterAll(async () => {
  // Every worker the script ever started, whatever the test's outcome.
  const pids = fs.existsSync(path.join(state, 'all-pids')) ? fs.readFileSync(path.join(state, 'all-pids'), 'utf8').trim().split('\n').filter(Boolean).map(Number) : [];
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  api?.close();
  await cluster?.stopAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Status { leading: boolean; state?: { target: number; applied?: number; removing: string[]; reason: string } }

async function status(): Promise<Status> {
  const up = () => /http api (http:\/\/[\d.]+:\d+)\/api\/v1/.exec(cluster.nodes[0].output())?.[1];
  // Its "up" line comes just after it joins.
  await waitFor(async () => up() !== undefined, { what: 'the node saying where its HTTP API listens', timeoutMs: 30_000 });
  return (await (await fetch(`${up()}/api/v1/autoscale`)).json()) as Status;
}

test('grows on the queue, runs every task once, and shrinks back to min when idle', async () => {
  fs.chmodSync(cluster.dir, 0o711);
  const ran = sharedFile(cluster.dir, 'ran.txt');
  const task = (secs: number, priority: number) => spec(['sh', '-c', `echo "$LOOM_TASK_ID $LOOM_NODE" >> ${ran}; sleep ${secs}`], { priority });
  // The long ones last (lowest priority): the queue is empty while they run, so fewer nodes are wanted then.
  const ids = await api.submit([...Array.from({ length: TASKS - LONG }, () => task(1, 100)), ...Array.from({ length: LONG }, () => task(12, 1))]);

  await waitFor(async () => (await api.nodes()).filter((n) => n.labels.autoscale === 'workers').length === 3, { what: 'three workers up', timeoutMs: 90_000 })
    .catch(async (err) => {
      throw new Error(`${(err as Error).message}: ${JSON.stringify(await status())}\n${cluster.nodes[0].output().slice(-3000)}`);
    });
  expect((await status()).leading).toBe(true);

  await waitFor(async () => (await api.list({ state: TaskState.COMPLETED, pageSize: 1000 })).tasks.length === TASKS, { what: 'every task completed', timeoutMs: 150_000 });
  const tasks = await Promise.all(ids.map((id) => api.get(id)));
  // Never requeued, so nothing was killed or lost while the group changed.
  expect(tasks.filter((t) => t.state !== TaskState.COMPLETED || t.attempt !== 1).map((t) => t.id)).toEqual([]);
  const lines = fs.readFileSync(ran, 'utf8').trim().split('\n');
  expect(lines).toHaveLength(TASKS);
  expect(new Set(lines.map((l) => l.split(' ')[0])).size).toBe(TASKS);
  const byNode = new Set(tasks.map((t) => t.node));
  expect([...byNode].filter((n) => /^w\d+$/.test(n)).length).toBe(3);

  // Idle: back to min, every worker drained and then stopped by the provider.
  await waitFor(async () => {
    const s = await status();
    return s.state?.target === 0 && s.state.applied === 0 && s.state.removing.length === 0 && (await api.nodes()).length === 1;
  }, { what: 'the group back to 0', timeoutMs: 60_000 });
  const calls = fs.readFileSync(path.join(state, 'calls'), 'utf8');
  expect(calls).toMatch(/^3 $/m);
  expect(calls).toMatch(/^0 w\d+/m);
  expect(cluster.nodes[0].output()).toMatch(/autoscale workers: scale down \d → 0/);
});
