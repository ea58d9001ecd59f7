/**
 * 2. Latency on an idle cluster, through the client library: sequential
 * tasks `true`, each one LoomApi.run (submit and wait in one call); on the
 * one-member cluster, alternating with submit() then wait() for comparison.
 * submit→completed is the client wall clock from before the call to the final
 * record; submit→running is the record's startedAtMs minus the time taken
 * before the call (same machine clock). One-member etcd (1 node) and 3-member
 * etcd (3 nodes). The peer, BullMQ on a private Redis (without persistence
 * and with AOF everysec), runs single jobs the same way in each repetition of
 * the one-member cluster, so loom / BullMQ is a ratio within one repetition.
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
const PEERS: Persistence[] = ['none', 'aof'];

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
    let peer: PeerLatency | undefined;
    for (const members of [1, 3]) {
      const one = members === 1;
      const c = await BenchCluster.start({ name: `lat${members}m`, nodes: members, etcd: 'embedded' }, ctx.log);
      // The peer runs inside the one-member cluster's repetitions (its ratios are per repetition).
      if (one) {
        try {
          peer = await PeerLatency.start(ctx, await c.totalSlots(), warmup);
        } catch (err) {
          await c.stop();
          throw err;
        }
      }
      // The one-member cluster also times submit() then wait(), alternating task by task with run.
      const calls: LatencyCall[] = one ? ['run', 'submit+wait'] : ['run'];
      const p = new Map(calls.map((h) => [h, { r50: [] as number[], r99: [] as number[], c50: [] as number[], c99: [] as number[] }]));
      let put50 = NaN;
      try {
        const api = c.api(0);
        await sequentialLatency(api, warmup, undefined, calls);
        // The one-member repetitions also run the BullMQ peer (about a third of their time).
        const budget = ctx.budget(ctx.quick ? 8 : one ? 75 : 40);
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
          if (one) await peer!.rep(ctx, rep, n, p.get('run')!.c50[rep], p.get('run')!.c99[rep]);
        });
        // A task's end-to-end path holds two durable etcd writes (submit+claim, result):
        // one put's round trip on this cluster, from this process, is their floor.
        put50 = percentile(await putRoundTrips(c.etcd(), '/bench/latency-floor', 200), 50);
      } finally {
        if (one) await peer!.stop();
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
    peer?.emit(ctx, n, warmup);
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
 * without persistence and with AOF everysec, run in each repetition of the
 * one-member loom cluster right after loom's samples.
 */
class PeerLatency {
  private readonly rigs = new Map<Persistence, BullRig>();
  private readonly errors = new Map<Persistence, string>();
  private readonly q = new Map(PEERS.map((p) => [p, { p50: [] as number[], p99: [] as number[], r50: [] as number[], r99: [] as number[] }]));
  private redis = redisVersion();

  private constructor(private readonly slots: number) {}

  static async start(ctx: BenchContext, slots: number, warmup: number): Promise<PeerLatency> {
    const pl = new PeerLatency(slots);
    for (const p of PEERS) {
      if (pl.redis.error) {
        pl.errors.set(p, pl.redis.error);
        continue;
      }
      try {
        const rig = await BullRig.start({ persistence: p, concurrency: [slots] }, ctx.log);
        pl.rigs.set(p, rig);
        await rig.latency(warmup);
      } catch (err) {
        pl.errors.set(p, (err as Error).message);
        ctx.log(`${S}: BullMQ (${p}) failed: ${(err as Error).message}`);
        await pl.rigs.get(p)?.stop();
        pl.rigs.delete(p);
      }
    }
    return pl;
  }

  /** One repetition of each set-up (their order alternating), beside loom's p50 and p99 of the same repetition. */
  async rep(ctx: BenchContext, rep: number, n: number, loom50: number, loom99: number): Promise<void> {
    for (const p of rep % 2 === 0 ? PEERS : [...PEERS].reverse()) {
      const rig = this.rigs.get(p);
      if (!rig) continue;
      try {
        const xs = await rig.latency(n);
        const q = this.q.get(p)!;
        q.p50.push(percentile(xs, 50));
        q.p99.push(percentile(xs, 99));
        q.r50.push(loom50 / q.p50[q.p50.length - 1]);
        q.r99.push(loom99 / q.p99[q.p99.length - 1]);
        ctx.log(`${S} BullMQ (${p}) rep ${rep + 1}: add→finished p50 ${q.p50[q.p50.length - 1].toFixed(2)} ms p99 ${q.p99[q.p99.length - 1].toFixed(2)} ms`);
      } catch (err) {
        this.errors.set(p, (err as Error).message);
        ctx.log(`${S}: BullMQ (${p}) failed: ${(err as Error).message}`);
        this.rigs.delete(p);
        await rig.stop();
      }
    }
  }

  async stop(): Promise<void> {
    await Promise.all([...this.rigs.values()].map((r) => r.stop()));
  }

  emit(ctx: BenchContext, n: number, warmup: number): void {
    for (const p of PEERS) {
      const q = this.q.get(p)!;
      const error = this.errors.get(p);
      const what = `BullMQ, Redis ${p === 'none' ? 'without persistence' : 'AOF everysec'}, 1 worker process`;
      const col = `BullMQ, Redis ${p === 'none' ? 'without persistence' : 'AOF everysec'} (1 worker)`;
      const extra = { jobs: n, bullmq: BULLMQ_VERSION, redis: this.redis.version ?? 'unavailable', persistence: PERSISTENCE_TEXT[p], concurrency: this.slots, ...(error ? { error } : {}) };
      const fig = (figure: string, label: string, unit: string, values: number[], row: string, more: object = {}) =>
        ctx.emit({ scenario: S, figure, label, unit, values, extra: { ...more, side: { row, col } }, note: error });
      fig(`bullmq_${p}_completed_p50`, `peer: submit→completed p50 (${what})`, 'ms', q.p50, 'submit→completed p50', extra);
      fig(`bullmq_${p}_completed_p99`, `peer: submit→completed p99 (${what})`, 'ms', q.p99, 'submit→completed p99', extra);
      fig(`loom_vs_bullmq_${p}_p50`, `loom (1 node, run) / ${what}, submit→completed p50 (same repetition)`, '×', q.r50, 'loom / this, p50, same repetition');
      fig(`loom_vs_bullmq_${p}_p99`, `loom (1 node, run) / ${what}, submit→completed p99 (same repetition)`, '×', q.r99, 'loom / this, p99, same repetition');
    }
    ctx.note(S, `Peer: BullMQ ${BULLMQ_VERSION} on Debian's redis-server ${this.redis.version ?? '(unavailable)'}, ${PERSISTENCE_TEXT.none} and ${PERSISTENCE_TEXT.aof}, ` +
      `each its own server; one worker process of concurrency ${this.slots} (the one-node cluster's slots) spawning \`true\` as in Throughput. ` +
      `A producer process times ${n} jobs per repetition (after ${warmup} warm-up jobs), one at a time: Queue.add, then Job.waitUntilFinished ` +
      "(QueueEvents, BullMQ's way to wait for a job), from before the add to the finished event. They run in each repetition of the one-member loom cluster, " +
      "right after loom's samples (the two set-ups' order alternating per repetition), while the loom cluster idles; " +
      "loom / BullMQ compares loom's LoomApi.run figure with BullMQ's of the same repetition.");
  }
}
