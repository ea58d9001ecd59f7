/**
 * 1. Throughput: N tasks running `true`, submitted in batches spread over the
 * nodes, on 3 nodes each embedding an etcd member. tasks/s from the first
 * submit to the last completion (the latest finish time in the completed
 * index), beside the raw rate of spawning `true` from one Node process in
 * the same repetition, and where the CPU went.
 */
import { repeat } from '../budget';
import { BenchCluster, ClusterCpu } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { busyPct, CORES, machineCpu, selfCpuMs } from '../cpu';
import { TaskCounter, terminalTotal } from '../etcd-probe';
import { benchSpawner, rawSpawnerRate, rawSpawnRate } from '../spawn-rate';
import { spec, submitSpread } from '../tasks';

const S = 'throughput';

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
    const budget = ctx.budget(ctx.quick ? 15 : 320);
    const c = await BenchCluster.start({ name: 'tput', nodes: 3, etcd: 'embedded' }, ctx.log);
    let slots = 0;
    let reps: Rep[];
    try {
      slots = await c.totalSlots();
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
        return {
          rate, raw, rawSpawner, submitRate, busy: busyPct(m2, m3), rawBusy: busyPct(m0, m1),
          rawCpu: (b1.selfMs - b0.selfMs + b1.childrenMs - b0.childrenMs) / ((raw * rawMs) / 1000),
          cpu, failed, partial,
        };
      });
    } finally {
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
      unit: 'tasks/s', values: v((r) => r.rate), target: { op: '>=', value: 600, text: '≥ 600 tasks/s' }, extra,
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
    ctx.emit({ scenario: S, figure: 'submit_tasks_per_s', label: `submit rate (batches of ${batch}, one lane per node)`, unit: 'tasks/s', values: v((r) => r.submitRate) });
    ctx.emit({ scenario: S, figure: 'cluster_machine_busy_pct', label: `machine CPU busy during the cluster run (all ${CORES} cores)`, unit: '%', values: v((r) => r.busy) });
    ctx.emit({ scenario: S, figure: 'raw_machine_busy_pct', label: `machine CPU busy during the raw spawn run (all ${CORES} cores)`, unit: '%', values: v((r) => r.rawBusy) });
    ctx.emit({ scenario: S, figure: 'cpu_ms_per_task_nodes', label: 'CPU per task: the 3 loom node processes', unit: 'ms', values: v((r) => r.cpu.nodeMs) });
    ctx.emit({ scenario: S, figure: 'cpu_ms_per_task_etcd', label: 'CPU per task: the 3 etcd members', unit: 'ms', values: v((r) => r.cpu.etcdMs) });
    ctx.emit({ scenario: S, figure: 'cpu_ms_per_task_processes', label: 'CPU per task: the task process (`true`)', unit: 'ms', values: v((r) => r.cpu.tasksMs) });
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
    ctx.emit({
      scenario: S, figure: 'raw_cpu_bound_ceiling_per_s', label: `raw spawn CPU-bound ceiling: ${CORES} cores ÷ CPU per raw spawn`,
      unit: 'tasks/s', values: v((r) => (CORES * 1000) / r.rawCpu),
    });
    ctx.note(S, "CPU figures come from /proc (utime+stime of each process; finished tasks are the waited-for children of their node or of its loom-spawner) over the cluster run, " +
      `divided by the tasks done; machine busy is the share of all ${CORES} cores not idle (/proc/stat), other load on the machine included. ` +
      'The CPU-bound ceiling is the rate this CPU cost per task would allow if every core did nothing else: a target above it cannot be met without making each task cheaper.');
  },
};
