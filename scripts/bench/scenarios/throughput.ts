/**
 * 1. Throughput: N tasks running `true`, submitted in batches spread over the
 * nodes, on 3 nodes each embedding an etcd member. tasks/s from the first
 * submit to the last completion (the latest finish time in the completed
 * index), beside the raw rate of spawning `true` from one Node process in
 * the same repetition, and where the CPU went.
 *
 * The peer, in the same repetition: BullMQ on a private Redis, once without
 * persistence and once with an fsync'd-every-second AOF, doing the same work
 * (N × `true` spawned with output piped and read to the end) with the same
 * total concurrency (one worker process per loom node, with that node's
 * slots) and the same batching. It runs here rather than in a scenario of
 * its own so that loom / BullMQ is a ratio of two runs of one repetition,
 * against the very loom figure this scenario reports, without a second loom
 * cluster run per repetition.
 */
import { repeat } from '../budget';
import { BenchCluster, ClusterCpu } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { busyPct, CORES, machineCpu, selfCpuMs } from '../cpu';
import { TaskCounter, terminalTotal } from '../etcd-probe';
import { benchSpawner, rawSpawnerRate, rawSpawnRate } from '../spawn-rate';
import { spec, submitSpread } from '../tasks';
import { BULLMQ_VERSION, BullCpu, BullRig, BullRun } from '../peer/bullmq';
import { PERSISTENCE_TEXT, Persistence, redisVersion } from '../peer/redis';

const S = 'throughput';
const PEERS: Persistence[] = ['none', 'aof'];

/** Rows and columns of the side-by-side table in BENCHMARKS.md (see report.ts). */
const LOOM = 'loom (3 nodes, 3 etcd members)';
const PEER_COL: Record<Persistence, string> = { none: 'BullMQ, Redis without persistence', aof: 'BullMQ, Redis AOF everysec' };
const ROW = {
  rate: 'throughput (tasks or jobs/s)',
  ratio: 'loom / this, throughput, same repetition',
  submit: 'submit (add) rate',
  server: 'CPU per task: store (etcd members / redis-server)',
  workers: 'CPU per task: loom nodes / BullMQ workers',
  commands: 'CPU per task: the command (`true`)',
  total: 'CPU per task: all of the above and the helpers',
  producer: 'CPU per task: the BullMQ producer',
};
const side = (row: string, col: string) => ({ row, col, rank: Object.values(ROW).indexOf(row) });

interface Rep {
  rate: number;
  raw: number;
  rawSpawner: number;
  submitRate: number;
  busy: number;
  rawBusy: number;
  rawCpu: number;
  cpu: ClusterCpu;
  failed: number;
  partial?: string;
  /** BullMQ's runs of this repetition, by Redis set-up (absent if it could not run). */
  peer: Partial<Record<Persistence, BullRun>>;
}

export const throughput: Scenario = {
  name: S,
  title: 'Throughput',
  async run(ctx: BenchContext) {
    const n = ctx.quick ? 300 : 10_000;
    const batch = ctx.quick ? 100 : 1000;
    const rawMs = ctx.quick ? 1500 : 4000;
    // 320 s: a second repetition whenever the first takes under 160 s (10,000 tasks at
    // ≥ 63/s), a third only under ~107 s; three of ~140 s would push the whole run
    // past 15 minutes on a 2-core machine.
    // The BullMQ runs of a repetition (two set-ups) take about as long as loom's together.
    const budget = ctx.budget(ctx.quick ? 40 : 420);
    const c = await BenchCluster.start({ name: 'tput', nodes: 3, etcd: 'embedded' }, ctx.log);
    let slots = 0;
    let perNode: number[] = [];
    let reps: Rep[];
    const rigs = new Map<Persistence, BullRig>();
    const peerErrors = new Map<Persistence, string>();
    const redis = redisVersion();
    try {
      slots = await c.totalSlots();
      perNode = (await c.api(0).nodes()).map((x) => x.slots);
      for (const p of PEERS) {
        if (redis.error) {
          peerErrors.set(p, redis.error);
          continue;
        }
        try {
          rigs.set(p, await BullRig.start({ persistence: p, concurrency: perNode }, ctx.log));
        } catch (err) {
          peerErrors.set(p, (err as Error).message);
          ctx.log(`${S}: BullMQ (${p}) could not start: ${(err as Error).message}`);
        }
      }
      const counter = new TaskCounter(c.etcd());
      reps = await repeat(ctx, S, 'cluster runs', budget, async (rep): Promise<Rep> => {
        const m0 = machineCpu();
        const b0 = selfCpuMs();
        const raw = await rawSpawnRate(slots, rawMs);
        const b1 = selfCpuMs();
        const m1 = machineCpu();
        const bs = await benchSpawner();
        const rawSpawner = await rawSpawnerRate(bs.spawner, slots, rawMs / 2).finally(() => bs.close());
        const before = await counter.counts();
        const c0 = c.cpu();
        const m2 = machineCpu();
        const t0 = Date.now();
        await submitSpread(c, spec(['true']), n, batch);
        const submitRate = n / ((Date.now() - t0) / 1000);
        const w = await counter.waitTerminalUntil(terminalTotal(before), n, budget.deadline(30_000), 250);
        const m3 = machineCpu();
        const c1 = c.cpu();
        const done = Math.max(1, w.done);
        const cpu = {} as ClusterCpu;
        for (const k of Object.keys(c0) as (keyof ClusterCpu)[]) cpu[k] = (c1[k] - c0[k]) / done;
        const a = w.counts;
        const failed = a.failed - before.failed + a.lost - before.lost + a.cancelled - before.cancelled;
        let rate: number;
        let partial: string | undefined;
        if (w.timedOut) {
          rate = w.done / ((w.atMs - t0) / 1000);
          partial = `repetition ${rep + 1} cut by the time budget after ${((w.atMs - t0) / 1000).toFixed(0)} s with ${w.done} of ${n} tasks done; its rate is tasks done / time so far`;
          ctx.note(S, partial);
        } else {
          const last = await counter.lastFinishMs();
          if (last === undefined) throw new Error('no completed task found');
          rate = n / (Math.max(1, last - t0) / 1000);
        }
        ctx.log(`${S} rep ${rep + 1}: ${rate.toFixed(0)} tasks/s${partial ? ' (partial)' : ''}, raw spawn ${raw.toFixed(0)}/s`);
        // The peer right after, the order of its two set-ups alternating per repetition.
        const peer: Rep['peer'] = {};
        for (const p of rep % 2 === 0 ? PEERS : [...PEERS].reverse()) {
          const rig = rigs.get(p);
          if (!rig) continue;
          try {
            const r = await rig.throughput(n, batch, c.nodes.length, budget.deadline(30_000));
            peer[p] = r;
            if (r.partial) ctx.note(S, `BullMQ (${p}), repetition ${rep + 1}: cut by the time budget: ${r.partial}`);
            ctx.log(`${S} rep ${rep + 1}: BullMQ (${p}) ${r.rate.toFixed(0)} jobs/s${r.partial ? ' (partial)' : ''}; loom / BullMQ ${(rate / r.rate).toFixed(2)}`);
          } catch (err) {
            peerErrors.set(p, (err as Error).message);
            ctx.log(`${S} rep ${rep + 1}: BullMQ (${p}) failed: ${(err as Error).message}`);
            rigs.delete(p);
            await rig.stop();
          }
        }
        return {
          rate, raw, rawSpawner, submitRate, busy: busyPct(m2, m3), rawBusy: busyPct(m0, m1),
          rawCpu: (b1.selfMs - b0.selfMs + b1.childrenMs - b0.childrenMs) / ((raw * rawMs) / 1000),
          cpu, failed, partial, peer,
        };
      });
    } finally {
      await Promise.all([...rigs.values()].map((r) => r.stop()));
      await c.stop();
    }
    const partial = reps.some((r) => r.partial);
    const extra = {
      tasks: n, batch, nodes: 3, etcd: '3 embedded members', totalSlots: slots,
      failedTasks: reps.reduce((a, r) => a + r.failed, 0), ...(partial ? { partial: true } : {}),
    };
    const v = (f: (r: Rep) => number) => reps.map(f);
    ctx.emit({
      scenario: S, figure: 'cluster_tasks_per_s', label: `cluster throughput, ${n} × \`true\`, first submit → last completion`,
      unit: 'tasks/s', values: v((r) => r.rate), target: { op: '>=', value: 600, text: '≥ 600 tasks/s' }, extra: { ...extra, side: side(ROW.rate, LOOM) },
    });
    ctx.emit({
      scenario: S, figure: 'raw_spawn_per_s', label: `raw spawn rate of \`true\` from one Node process (${slots} in flight, output piped)`,
      unit: 'tasks/s', values: v((r) => r.raw), extra: { concurrency: slots, durationMs: rawMs },
    });
    ctx.emit({
      scenario: S, figure: 'raw_spawner_per_s', label: `raw rate of \`true\` through loom-spawner (posix_spawn; how nodes start tasks), ${slots} in flight`,
      unit: 'tasks/s', values: v((r) => r.rawSpawner), extra: { concurrency: slots, durationMs: rawMs / 2 },
    });
    ctx.emit({
      scenario: S, figure: 'cluster_vs_raw_pct', label: 'cluster throughput / raw spawn rate (same repetition)',
      unit: '%', values: v((r) => (100 * r.rate) / r.raw), target: { op: '>=', value: 70, text: '≥ 70 %' },
    });
    ctx.emit({ scenario: S, figure: 'submit_tasks_per_s', label: `submit rate (batches of ${batch}, one lane per node)`, unit: 'tasks/s', values: v((r) => r.submitRate), extra: { side: side(ROW.submit, LOOM) } });
    ctx.emit({ scenario: S, figure: 'cluster_machine_busy_pct', label: `machine CPU busy during the cluster run (all ${CORES} cores)`, unit: '%', values: v((r) => r.busy) });
    ctx.emit({ scenario: S, figure: 'raw_machine_busy_pct', label: `machine CPU busy during the raw spawn run (all ${CORES} cores)`, unit: '%', values: v((r) => r.rawBusy) });
    ctx.emit({ scenario: S, figure: 'cpu_ms_per_task_nodes', label: 'CPU per task: the 3 loom node processes', unit: 'ms', values: v((r) => r.cpu.nodeMs), extra: { side: side(ROW.workers, LOOM) } });
    ctx.emit({ scenario: S, figure: 'cpu_ms_per_task_etcd', label: 'CPU per task: the 3 etcd members', unit: 'ms', values: v((r) => r.cpu.etcdMs), extra: { side: side(ROW.server, LOOM) } });
    ctx.emit({ scenario: S, figure: 'cpu_ms_per_task_processes', label: 'CPU per task: the task process (`true`)', unit: 'ms', values: v((r) => r.cpu.tasksMs), extra: { side: side(ROW.commands, LOOM) } });
    ctx.emit({ scenario: S, figure: 'cpu_ms_per_task_reapers', label: 'CPU per task: the helpers (reaper, loom-spawner)', unit: 'ms', values: v((r) => r.cpu.helperMs) });
    const perTask = (r: Rep) => r.cpu.nodeMs + r.cpu.etcdMs + r.cpu.tasksMs + r.cpu.helperMs;
    ctx.emit({
      scenario: S, figure: 'cpu_bound_ceiling_tasks_per_s', label: `CPU-bound ceiling: ${CORES} cores ÷ measured CPU per task (all processes)`,
      unit: 'tasks/s', values: v((r) => (CORES * 1000) / perTask(r)), extra: { cpuMsPerTask: v(perTask).map((x) => Math.round(x * 100) / 100) },
    });
    ctx.emit({ scenario: S, figure: 'cpu_ms_per_raw_spawn', label: 'CPU per raw spawn (spawning process + `true`)', unit: 'ms', values: v((r) => r.rawCpu) });
    ctx.note(S, `${n} tasks \`true\` per repetition in batches of ${batch} through LoomApi.submit, one submitting lane per node; ` +
      `3 nodes with default slots (${slots} in all), each embedding an etcd member, one cluster for all repetitions. The clock starts before the first submit ` +
      'and stops at the latest finish time in the completed index (progress is polled from etcd with count-only ranges every 250 ms; ' +
      'the end time comes from the index, not from the poll). The raw rate spawns `true` from this benchmark process ' +
      `with ${slots} children in flight (detached, stdout/stderr piped and read to the end) for ${rawMs / 1000} s while the cluster is idle, just before the cluster run.`);
    const loomCpu = (r: Rep) => r.cpu.nodeMs + r.cpu.etcdMs + r.cpu.tasksMs + r.cpu.helperMs;
    ctx.emit({ scenario: S, figure: 'cpu_ms_per_task_total', label: 'CPU per task: loom in all (nodes, etcd members, tasks, helpers; not the submitting bench process)', unit: 'ms', values: v(loomCpu), extra: { side: side(ROW.total, LOOM) } });
    emitPeer(ctx, reps, peerErrors, { n, batch, lanes: 3, perNode, redis: redis.version ?? 'unavailable' });
    ctx.emit({
      scenario: S, figure: 'raw_cpu_bound_ceiling_per_s', label: `raw spawn CPU-bound ceiling: ${CORES} cores ÷ CPU per raw spawn`,
      unit: 'tasks/s', values: v((r) => (CORES * 1000) / r.rawCpu),
    });
    ctx.note(S, "CPU figures come from /proc (utime+stime of each process; finished tasks are the waited-for children of their node or of its loom-spawner) over the cluster run, " +
      `divided by the tasks done; machine busy is the share of all ${CORES} cores not idle (/proc/stat), other load on the machine included. ` +
      'The CPU-bound ceiling is the rate this CPU cost per task would allow if every core did nothing else: a target above it cannot be met without making each task cheaper.');
  },
};

/** The BullMQ figures of the repetitions, beside loom's. */
function emitPeer(
  ctx: BenchContext,
  reps: Rep[],
  errors: Map<Persistence, string>,
  o: { n: number; batch: number; lanes: number; perNode: number[]; redis: string },
): void {
  const workers = `${o.perNode.length} worker processes × concurrency ${o.perNode.join('/')}`;
  for (const p of PEERS) {
    const runs = reps.filter((r) => r.peer[p]);
    const vals = (f: (b: BullRun, r: Rep) => number) => runs.map((r) => f(r.peer[p]!, r));
    const extra = {
      jobs: o.n, batch: o.batch, producerLanes: o.lanes, workers: o.perNode.length, concurrency: o.perNode, bullmq: BULLMQ_VERSION, redis: o.redis,
      persistence: PERSISTENCE_TEXT[p], failedJobs: runs.reduce((a, r) => a + r.peer[p]!.failed, 0),
      ...(runs.some((r) => r.peer[p]!.partial) ? { partial: true } : {}),
      ...(errors.has(p) ? { error: errors.get(p) } : {}),
    };
    const what = `BullMQ, Redis ${p === 'none' ? 'without persistence' : 'AOF everysec'}`;
    const fig = (figure: string, label: string, unit: string, values: number[], more?: Record<string, unknown>) =>
      ctx.emit({ scenario: S, figure, label, unit, values, extra: more, note: values.length ? undefined : errors.get(p) ?? 'no run' });
    const col = PEER_COL[p];
    fig(`bullmq_${p}_jobs_per_s`, `${what}: ${o.n} × \`true\`, ${workers}, first add → last finishedOn`, 'jobs/s', vals((b) => b.rate), { ...extra, side: side(ROW.rate, col) });
    fig(`loom_vs_bullmq_${p}`, `loom / ${what}, throughput (same repetition)`, '×', vals((b, r) => r.rate / b.rate), { side: side(ROW.ratio, col) });
    fig(`bullmq_${p}_add_jobs_per_s`, `${what}: add rate (addBulk of ${o.batch}, ${o.lanes} connections)`, 'jobs/s', vals((b) => b.submitRate), { side: side(ROW.submit, col) });
    const cpu = (k: keyof BullCpu, label: string, row: string) =>
      fig(`bullmq_${p}_cpu_ms_per_job_${k.replace(/Ms$/, '')}`, `${what}: CPU per job, ${label}`, 'ms', vals((b) => b.cpu[k]), { side: side(row, col) });
    cpu('redisMs', 'redis-server', ROW.server);
    cpu('workersMs', 'the worker processes', ROW.workers);
    cpu('commandsMs', 'the job process (`true`)', ROW.commands);
    cpu('producerMs', 'the producer process', ROW.producer);
    fig(`bullmq_${p}_cpu_ms_per_job_total`, `${what}: CPU per job in all (redis-server, workers, jobs; not the producer)`, 'ms',
      vals((b) => b.cpu.redisMs + b.cpu.workersMs + b.cpu.commandsMs), { side: side(ROW.total, col) });
  }
  ctx.note(S, `Peer: BullMQ ${BULLMQ_VERSION} (ioredis) on Debian's redis-server ${o.redis}, each set-up its own server on a private loopback port and temp dir, ` +
    `started once for all repetitions like the loom cluster: ${PERSISTENCE_TEXT.none}, BullMQ's usual benchmark set-up, and ${PERSISTENCE_TEXT.aof}, ` +
    "closer to loom's durability (etcd commits each write to disk before answering; everysec can lose the last second). " +
    `Same work as loom's: ${o.n} jobs per repetition whose worker spawns \`true\` (own process group, stdout/stderr piped and read to the end, a tail of each returned ` +
    `as the job's result and kept in Redis, as loom keeps a tail in the task's record; completed jobs are kept, BullMQ's default), ` +
    `${workers} (the slots of each loom node), Node's default flags, each job's process started with Node's child_process.spawn as a BullMQ user would ` +
    `(loom nodes start plain tasks through loom-spawner, posix_spawn: the two raw rates above show what that is worth here); one producer process adds them with Queue.addBulk in batches of ${o.batch} over ${o.lanes} ` +
    'connections adding concurrently (one lane per loom node). Workers and producer are child processes of the bench, ready before the clock starts. ' +
    "The clock starts at the producer's wall clock before the first add and stops at the latest finishedOn in the completed set " +
    '(progress is polled with ZCARD every 250 ms). Each repetition runs loom first, then the two BullMQ set-ups, their order alternating per repetition; ' +
    'the loom cluster idles while BullMQ runs and the Redis servers and workers idle while loom runs. loom / BullMQ is taken per repetition, ' +
    'so only machine load that changes within a repetition skews it. CPU per job is the /proc utime+stime of each process over the run ' +
    "(the job processes are the workers' waited-for children), divided by the jobs done." +
    (process.getuid?.() === 0
      ? ' This bench runs as root, so loom confines each task (--run-as pool: its own uid, cgroups, a scratch dir; see Confinement cost for what that costs) while BullMQ runs its jobs as the worker: loom does more per task here.'
      : ''));
}
