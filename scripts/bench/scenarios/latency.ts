/**
 * 2. Latency on an idle cluster, through the client library: sequential
 * tasks `true`, each one LoomApi.run (submit and wait in one call); on the
 * one-member cluster, alternating with submit() then wait() for comparison.
 * submit→completed is the client wall clock from before the call to the final
 * record; submit→running is the record's startedAtMs minus the time taken
 * before the call (same machine clock). One-member etcd (1 node) and 3-member
 * etcd (3 nodes).
 */
import { benchSpawner, runOnce, runOnceSpawner } from '../spawn-rate';
import { TaskSpec, TaskState } from '../../../src/gen/loom';
import { LoomApi } from '../../../src/client/client';
import { repeat } from '../budget';
import { BenchCluster } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { putRoundTrips } from '../etcd-probe';
import { percentile } from '../stats';
import { spec, wallNow } from '../tasks';
import { BULLMQ_VERSION, BullRig } from '../peer/bullmq';
import { PERSISTENCE_TEXT, Persistence, redisVersion } from '../peer/redis';

const S = 'latency';

export interface LatencySample {
  runningMs: number;
  completedMs: number;
}

/** How a sample submits and waits: one LoomApi.run, or submit() then wait(). */
export type LatencyCall = 'run' | 'submit+wait';

async function oneTask(api: LoomApi, s: TaskSpec, how: LatencyCall): Promise<LatencySample> {
  const t0 = performance.now();
  const wall0 = wallNow();
  let id = '';
  const timeout = AbortSignal.timeout(60_000);
  const task = await (how === 'run'
    ? api.run(s, { signal: timeout, onId: (i) => (id = i) })
    : api.submit([s]).then(([i]) => api.wait((id = i), timeout))
  ).catch((err: Error) => {
    throw new Error(`task ${id || '(not submitted)'}: no result within 60 s (${err.message})`);
  });
  const completedMs = performance.now() - t0;
  if (task.state !== TaskState.COMPLETED) throw new Error(`task ${task.id} ended ${TaskState[task.state]}: ${task.reason}`);
  return { runningMs: task.startedAtMs - wall0, completedMs };
}

/** n sequential tasks `true` through api, each one `how` call (alternating between them when given two). */
export async function sequentialLatency(api: LoomApi, n: number, priority?: number, how: LatencyCall[] = ['run']): Promise<Map<LatencyCall, LatencySample[]>> {
  const out = new Map<LatencyCall, LatencySample[]>(how.map((h) => [h, []]));
  const s = spec(['true'], priority);
  for (let i = 0; i < n * how.length; i++) {
    const h = how[i % how.length];
    out.get(h)!.push(await oneTask(api, s, h));
  }
  return out;
}

export const latency: Scenario = {
  name: S,
  title: 'Idle latency',
  async run(ctx: BenchContext) {
    const n = ctx.quick ? 50 : 500;
    const warmup = ctx.quick ? 10 : 30;
    // The floor: the same sequential round trip with no loom at all, one
    // spawn of `true` (as a node spawns it) to its exit, from this process.
    const floor: Record<string, number[]> = { p50: [], p99: [] };
    await repeat(ctx, S, 'raw spawn floor', ctx.budget(ctx.quick ? 4 : 15), async () => {
      const xs: number[] = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await runOnce('true');
        xs.push(performance.now() - t0);
      }
      floor.p50.push(percentile(xs, 50));
      floor.p99.push(percentile(xs, 99));
    });
    const floorExtra = { tasks: n, note: 'no loom: spawn(true) detached with stdout/stderr piped, awaited to close, sequentially, from the benchmark process' };
    ctx.emit({ scenario: S, figure: 'raw_spawn_p50', label: 'floor: one `true` spawned (Node spawn) and awaited, no loom, p50', unit: 'ms', values: floor.p50, extra: floorExtra });
    ctx.emit({ scenario: S, figure: 'raw_spawn_p99', label: 'floor: one `true` spawned (Node spawn) and awaited, no loom, p99', unit: 'ms', values: floor.p99, extra: floorExtra });
    // The same through loom-spawner (posix_spawn), as nodes start plain tasks.
    const viaSpawner: Record<string, number[]> = { p50: [], p99: [] };
    const bs = await benchSpawner();
    try {
      await repeat(ctx, S, 'loom-spawner floor', ctx.budget(ctx.quick ? 3 : 8), async () => {
        const xs: number[] = [];
        for (let i = 0; i < n; i++) {
          const t0 = performance.now();
          await runOnceSpawner(bs.spawner, 'true');
          xs.push(performance.now() - t0);
        }
        viaSpawner.p50.push(percentile(xs, 50));
        viaSpawner.p99.push(percentile(xs, 99));
      });
    } finally {
      await bs.close();
    }
    const spawnerExtra = { tasks: n, note: 'no loom: true started by a loom-spawner of the benchmark process, both output connections read to the end and the exit status received, sequentially' };
    ctx.emit({ scenario: S, figure: 'raw_spawner_p50', label: 'floor: one `true` through loom-spawner (posix_spawn) and awaited, no loom, p50', unit: 'ms', values: viaSpawner.p50, extra: spawnerExtra });
    ctx.emit({ scenario: S, figure: 'raw_spawner_p99', label: 'floor: one `true` through loom-spawner (posix_spawn) and awaited, no loom, p99', unit: 'ms', values: viaSpawner.p99, extra: spawnerExtra });
    let oneNodeSlots = 0;
    for (const members of [1, 3]) {
      const one = members === 1;
      const c = await BenchCluster.start({ name: `lat${members}m`, nodes: members, etcd: 'embedded' }, ctx.log);
      if (one) oneNodeSlots = await c.totalSlots().catch(() => 0);
      // The one-member cluster also times submit() then wait(), alternating task by task with run.
      const calls: LatencyCall[] = one ? ['run', 'submit+wait'] : ['run'];
      const p = new Map(calls.map((h) => [h, { r50: [] as number[], r99: [] as number[], c50: [] as number[], c99: [] as number[] }]));
      let put50 = NaN;
      try {
        const api = c.api(0);
        await sequentialLatency(api, warmup, undefined, calls);
        const budget = ctx.budget(ctx.quick ? 8 : one ? 55 : 40);
        await repeat(ctx, S, `${members}-member`, budget, async (rep) => {
          const byCall = await sequentialLatency(api, n, undefined, calls);
          for (const [h, samples] of byCall) {
            const q = p.get(h)!;
            const running = samples.map((x) => x.runningMs);
            const completed = samples.map((x) => x.completedMs);
            q.r50.push(percentile(running, 50));
            q.r99.push(percentile(running, 99));
            q.c50.push(percentile(completed, 50));
            q.c99.push(percentile(completed, 99));
            ctx.log(`${S} ${members}-member ${h} rep ${rep + 1}: completed p50 ${q.c50[rep].toFixed(2)} ms p99 ${q.c99[rep].toFixed(2)} ms`);
          }
        });
        // A task's end-to-end path holds two durable etcd writes (submit+claim, result):
        // one put's round trip on this cluster, from this process, is their floor.
        put50 = percentile(await putRoundTrips(c.etcd(), '/bench/latency-floor', 200), 50);
      } finally {
        await c.stop();
      }
      const topo = one ? '1 node, one-member etcd' : '3 nodes, 3-member etcd';
      const extra = { tasks: n, nodes: members, etcdMembers: members };
      const q = p.get('run')!;
      ctx.emit({ scenario: S, figure: `submit_running_p50_${members}m`, label: `submit→running p50 (${topo})`, unit: 'ms', values: q.r50, extra });
      ctx.emit({ scenario: S, figure: `submit_running_p99_${members}m`, label: `submit→running p99 (${topo})`, unit: 'ms', values: q.r99, extra });
      const side = (row: string) => (one ? { side: { row, col: 'loom, 1 node (one-member etcd)' } } : {});
      ctx.emit({
        scenario: S, figure: `submit_completed_p50_${members}m`, label: `submit→completed p50 (${topo})`, unit: 'ms', values: q.c50, extra: { ...extra, ...side('submit→completed p50') },
        target: one ? { op: '<=', value: 5, text: '≤ 5 ms' } : undefined,
      });
      ctx.emit({
        scenario: S, figure: `submit_completed_p99_${members}m`, label: `submit→completed p99 (${topo})`, unit: 'ms', values: q.c99, extra: { ...extra, ...side('submit→completed p99') },
        target: one ? { op: '<=', value: 20, text: '≤ 20 ms' } : undefined,
      });
      const sw = p.get('submit+wait');
      if (sw) {
        ctx.emit({ scenario: S, figure: `submit_wait_completed_p50_${members}m`, label: `submit→completed p50 with submit() then wait(), two calls (${topo})`, unit: 'ms', values: sw.c50, extra });
        ctx.emit({ scenario: S, figure: `submit_wait_completed_p99_${members}m`, label: `submit→completed p99 with submit() then wait(), two calls (${topo})`, unit: 'ms', values: sw.c99, extra });
      }
      ctx.emit({ scenario: S, figure: `etcd_put_p50_${members}m`, label: `floor: one etcd put (a durable write), round trip p50, ${members === 1 ? 'one-member' : '3-member'} etcd`, unit: 'ms', values: [put50], extra: { puts: 200 } });
    }
    await bullmqLatency(ctx, n, warmup, oneNodeSlots || 1);
    ctx.note(S, `${n} sequential tasks \`true\` per repetition (after ${warmup} warm-up tasks), each one LoomApi.run(spec) call to node 1 ` +
      '(submit and wait in one gRPC stream: the node claims the task in the submit transaction and answers the waiting caller itself). ' +
      `On the one-member cluster each repetition also runs ${n} tasks as LoomApi.submit([one]) then LoomApi.wait(id), alternating task by task with run, ` +
      'so both see the same machine. submit→completed: client wall clock (performance.now) before the call to the final record arriving. ' +
      "submit→running: the record's startedAtMs (taken when the node claims the task, just before the claim transaction) minus the wall clock " +
      "taken before the call (ms resolution of the node's clock, so it reads up to 1 ms low). " +
      'Percentiles are nearest-rank; each repetition gives one p50 and one p99, the table shows their median and spread. ' +
      'The floor figures time the same sequential round trip with no loom at all (one `true` spawned the way a node spawns it, awaited to exit): ' +
      'submit→completed can never be faster than this on the machine. loom starts plain tasks through loom-spawner, so the loom-spawner floor is the relevant one; ' +
      'add two etcd put round trips (the submit transaction that also claims the task, and the result transaction, each committed to disk before loom goes on) ' +
      'for the least a durable submit→completed can take here.');
  },
};

/**
 * The peer: BullMQ's submit→done for single jobs `true`, one at a time, on one
 * worker process (the slots of the one-node loom cluster) and its own Redis,
 * without persistence and with AOF everysec.
 */
async function bullmqLatency(ctx: BenchContext, n: number, warmup: number, slots: number): Promise<void> {
  const redis = redisVersion();
  for (const p of ['none', 'aof'] as Persistence[]) {
    const q = { p50: [] as number[], p99: [] as number[] };
    let error = redis.error;
    if (!error) {
      try {
        const rig = await BullRig.start({ persistence: p, concurrency: [slots] }, ctx.log);
        try {
          await rig.latency(warmup);
          await repeat(ctx, S, `BullMQ (${p})`, ctx.budget(ctx.quick ? 4 : 20), async (rep) => {
            const xs = await rig.latency(n);
            q.p50.push(percentile(xs, 50));
            q.p99.push(percentile(xs, 99));
            ctx.log(`${S} BullMQ (${p}) rep ${rep + 1}: add→finished p50 ${q.p50[rep].toFixed(2)} ms p99 ${q.p99[rep].toFixed(2)} ms`);
          });
        } finally {
          await rig.stop();
        }
      } catch (err) {
        error = (err as Error).message;
        ctx.log(`${S}: BullMQ (${p}) failed: ${error}`);
      }
    }
    const what = `BullMQ, Redis ${p === 'none' ? 'without persistence' : 'AOF everysec'}, 1 worker process`;
    const extra = { jobs: n, bullmq: BULLMQ_VERSION, redis: redis.version ?? 'unavailable', persistence: PERSISTENCE_TEXT[p], concurrency: slots, ...(error ? { error } : {}) };
    const col = `BullMQ, Redis ${p === 'none' ? 'without persistence' : 'AOF everysec'} (1 worker)`;
    ctx.emit({ scenario: S, figure: `bullmq_${p}_completed_p50`, label: `peer: submit→completed p50 (${what})`, unit: 'ms', values: q.p50, extra: { ...extra, side: { row: 'submit→completed p50', col } }, note: error });
    ctx.emit({ scenario: S, figure: `bullmq_${p}_completed_p99`, label: `peer: submit→completed p99 (${what})`, unit: 'ms', values: q.p99, extra: { ...extra, side: { row: 'submit→completed p99', col } }, note: error });
  }
  ctx.note(S, `Peer: BullMQ ${BULLMQ_VERSION} on Debian's redis-server ${redis.version ?? '(unavailable)'}, ${PERSISTENCE_TEXT.none} and ${PERSISTENCE_TEXT.aof}, ` +
    `each its own server; one worker process of concurrency ${slots} (the one-node cluster's slots) spawning \`true\` as in Throughput. ` +
    `A producer process times ${n} jobs per repetition (after ${warmup} warm-up jobs), one at a time: Queue.add, then Job.waitUntilFinished ` +
    "(QueueEvents, BullMQ's way to wait for a job), from before the add to the finished event; compare with loom's one-member figures. " +
    "These run after the loom clusters, not in the same repetitions: compare medians, expecting the machine's load to differ.");
}
