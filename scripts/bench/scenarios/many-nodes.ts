/**
 * Many nodes on one etcd (on demand: `npm run bench -- --only many-nodes`):
 * 3, 10, 20 and 30 worker-only nodes (`--etcd`, 1 slot each) on one
 * standalone etcd member, each given an array job of `true` as `loom run
 * --array N` submits it. Per repetition: throughput (tasks completed over the
 * time from the submit to the last finish), lost claims per task, etcd's CPU
 * per task, the nodes' CPU per task, nodes that fenced themselves (the change
 * of loom_fenced_total), and the largest node RSS seen while the job ran.
 *
 * With `--baseline PATH` (another checkout's dist/src/bin/loom.js) every node
 * count runs with that build too, right before the current one, so both sit
 * side by side from the same run on the same box.
 *
 * Then the simulated cluster (scripts/sim, the steal loop's own decision
 * functions on a virtual clock) with 50 and 500 nodes of 1 slot and 2,000
 * tasks, seeds 1..reps, for the lost claims per task that the real box cannot
 * reach: of this build and, with --baseline, of the baseline's own sim.
 */
import { TaskState } from '../../../src/gen/loom';
import { repeat } from '../budget';
import { BenchCluster, NodeStats } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { TaskCounter, terminalTotal } from '../etcd-probe';
import { spec } from '../tasks';
import * as path from 'path';
import { SimOptions, SimResult } from '../../sim/run';

const S = 'many-nodes';

interface Build {
  tag: string;
  label: string;
  bin?: string;
}

function tasksFor(nodes: number, quick: boolean): number {
  return quick ? 300 : Math.max(2000, nodes * 100);
}

function sum(stats: NodeStats[], k: keyof NodeStats): number {
  return stats.reduce((a, s) => a + s[k], 0);
}

interface Rep {
  throughput: number;
  lost: number;
  etcdCpu: number;
  nodeCpu: number;
  fenced: number;
  maxRssMb: number;
}

/** One array job on the running cluster, measured. */
async function oneJob(c: BenchCluster, counter: TaskCounter, n: number, deadlineMs: number, log: (m: string) => void): Promise<Rep & { done: number; timedOut: boolean }> {
  const before = await counter.counts();
  const stats0 = await c.claimCounters();
  const cpu0 = c.cpu();
  let maxRssKb = 0;
  const sampleRss = () => c.rss().forEach((r) => (maxRssKb = Math.max(maxRssKb, r.nodeKb ?? 0)));
  const sampler = setInterval(sampleRss, 1000);
  try {
    const t0 = Date.now();
    await c.api(0).submitJob({
      name: `many-${t0.toString(36)}`, owner: '', template: spec(['true']), count: n,
      overrides: {}, after: [], afterAny: [], labels: {},
    });
    const w = await counter.waitTerminalUntil(terminalTotal(before), n, deadlineMs, 250);
    sampleRss();
    const end = (await counter.lastFinishMs(TaskState.COMPLETED)) ?? w.atMs;
    const stats1 = await c.claimCounters();
    const cpu1 = c.cpu();
    const completed = Math.max(1, w.counts.completed - before.completed);
    const delta = (k: keyof NodeStats) => sum(stats1, k) - sum(stats0, k);
    log(`${S} ${c.nodes.length}n: ${completed} completed in ${((end - t0) / 1000).toFixed(1)} s, lost ${delta('lost')}, fenced ${delta('fenced')}`);
    return {
      done: w.done,
      timedOut: w.timedOut,
      throughput: (completed * 1000) / Math.max(1, end - t0),
      lost: delta('lost') / completed,
      etcdCpu: (cpu1.etcdMs - cpu0.etcdMs) / completed,
      nodeCpu: (cpu1.nodeMs - cpu0.nodeMs) / completed,
      fenced: delta('fenced'),
      maxRssMb: maxRssKb / 1024,
    };
  } finally {
    clearInterval(sampler);
  }
}

export const manyNodes: Scenario = {
  name: S,
  title: 'Many nodes on one etcd',
  onDemand: true,
  async run(ctx: BenchContext) {
    const counts = ctx.quick ? [3, 10] : [3, 10, 20, 30];
    const builds: Build[] = [
      ...(ctx.baselineBin ? [{ tag: '_baseline', label: 'baseline', bin: ctx.baselineBin }] : []),
      { tag: '', label: 'this build' },
    ];
    const throughput3 = new Map<string, number[]>();
    for (const nodes of counts) {
      const n = tasksFor(nodes, ctx.quick);
      for (const b of builds) {
        const row = `${nodes} nodes${builds.length > 1 ? `, ${b.label}` : ''}`;
        const what = `${nodes} worker-only nodes (${b.label})`;
        const reps: Rep[] = [];
        const c = await BenchCluster.start({ name: `many${nodes}`, nodes, etcd: 'shared', slots: 1, metrics: true, loomBin: b.bin, readyTimeoutMs: 240_000 }, ctx.log);
        const budget = ctx.budget(ctx.quick ? 20 : 150);
        try {
          const counter = new TaskCounter(c.etcd());
          await repeat(ctx, S, what, budget, async (rep) => {
            const r = await oneJob(c, counter, n, budget.deadline(60_000), ctx.log);
            if (r.timedOut) ctx.note(S, `${what}, repetition ${rep + 1}: cut by the time budget with ${r.done} of ${n} tasks done; figures are per task completed by then`);
            reps.push(r);
          });
        } finally {
          await c.stop();
        }
        const extra = (col: string) => ({ tasks: n, nodes, build: b.label, side: { row, col, rank: nodes * 10 + builds.indexOf(b) } });
        const tag = `${nodes}n${b.tag}`;
        const values = (k: keyof Rep) => reps.map((r) => r[k]);
        if (nodes === 3) throughput3.set(b.label, values('throughput'));
        const ref = throughput3.get(b.label);
        const refMedian = ref?.length ? ref.slice().sort((x, y) => x - y)[Math.floor(ref.length / 2)] : undefined;
        ctx.emit({
          scenario: S, figure: `throughput_${tag}`, label: `throughput (${what}, ${n} tasks)`, unit: 'tasks/s', values: values('throughput'), extra: extra('tasks/s'),
          target: nodes === 20 && refMedian ? { op: '>=', value: 0.8 * refMedian, text: `≥ 80 % of 3 nodes (${refMedian.toFixed(1)} tasks/s)` } : undefined,
        });
        ctx.emit({
          scenario: S, figure: `lost_claims_per_task_${tag}`, label: `lost claims per task (${what})`, unit: 'per task', values: values('lost'), extra: extra('lost claims / task'),
          target: nodes === 20 ? { op: '<=', value: 0.2, text: '≤ 0.2 per task' } : undefined,
        });
        ctx.emit({
          scenario: S, figure: `fenced_${tag}`, label: `nodes that fenced themselves (${what})`, unit: 'fences', values: values('fenced'), extra: extra('fences'),
          target: nodes === 20 ? { op: '<=', value: 0, text: 'none', on: 'max' } : undefined,
        });
        ctx.emit({ scenario: S, figure: `etcd_cpu_per_task_${tag}`, label: `etcd CPU per task (${what})`, unit: 'ms', values: values('etcdCpu'), extra: extra('etcd CPU ms / task') });
        ctx.emit({ scenario: S, figure: `node_cpu_per_task_${tag}`, label: `loom nodes' CPU per task, all nodes (${what})`, unit: 'ms', values: values('nodeCpu'), extra: extra('nodes CPU ms / task') });
        ctx.emit({ scenario: S, figure: `max_node_rss_${tag}`, label: `largest node RSS while the job ran (${what})`, unit: 'MB', values: values('maxRssMb'), extra: extra('largest node RSS MB') });
      }
    }
    await simulated(ctx, builds);
    ctx.note(S, 'Worker-only nodes (`--etcd URL`, `--slots 1`, `--metrics-listen`) on one standalone etcd member, all on this box; ' +
      'each repetition submits one array job of `true` (as `loom run --array N` does: LoomApi.submitJob with a template and a count) through node 1 ' +
      `(${counts.map((k) => `${k} nodes: ${tasksFor(k, ctx.quick)} tasks`).join(', ')}). ` +
      'Throughput is the tasks completed over the time from the submit to the last finish; lost claims are the change of loom_claims_lost_total ' +
      'summed over the nodes, per task completed; fences the change of loom_fenced_total; CPU from /proc (utime+stime) of the etcd process and of the node processes; ' +
      'RSS (VmRSS) of every node sampled each second. One cluster per node count and build, for all its repetitions.' +
      (ctx.baselineBin ? ` Baseline: ${ctx.baselineBin}, run right before this build at each node count.` : ''));
  },
};

type RunSimulation = (o: Partial<SimOptions>) => SimResult;

/** A build's own simulation: this checkout's, or the one beside a baseline's dist/src/bin/loom.js. */
function simOf(b: Build): RunSimulation | undefined {
  const file = b.bin ? path.resolve(path.dirname(b.bin), '../../scripts/sim/run.js') : path.resolve(__dirname, '../../sim/run.js');
  try {
    return (require(file) as { runSimulation: RunSimulation }).runSimulation;
  } catch {
    return undefined;
  }
}

async function simulated(ctx: BenchContext, builds: Build[]): Promise<void> {
  const counts = ctx.quick ? [50] : [50, 500];
  const tasks = 2000;
  for (const nodes of counts) {
    for (const b of builds) {
      const run = simOf(b);
      if (!run) {
        ctx.note(S, `simulated ${nodes} nodes (${b.label}): that build has no scripts/sim/run.js, not run`);
        continue;
      }
      const what = `simulated ${nodes} nodes × 1 slot (${b.label})`;
      const lost: number[] = [];
      const rate: number[] = [];
      for (let rep = 0; rep < ctx.reps; rep++) {
        const r = run({ seed: rep + 1, nodes, slots: 1, tasks });
        ctx.log(`${S} ${what}, seed ${rep + 1}: ${r.lostClaimsPerTask.toFixed(3)} lost claims per task, ${r.violations.length} violations, ${(r.wallMs / 1000).toFixed(0)} s`);
        if (r.violations.length) ctx.note(S, `${what}, seed ${rep + 1}: ${r.violations.length} violations (${r.violations[0]})`);
        lost.push(r.lostClaimsPerTask);
        rate.push(r.tasksPerVirtualSecond);
        await new Promise((resolve) => setImmediate(resolve));
      }
      const extra = (col: string) => ({ tasks, nodes, build: b.label, side: { row: `sim ${nodes} nodes${builds.length > 1 ? `, ${b.label}` : ''}`, col, rank: 100_000 + nodes * 10 + builds.indexOf(b) } });
      const tag = `${nodes}n${b.tag}`;
      ctx.emit({
        scenario: S, figure: `sim_lost_claims_per_task_${tag}`, label: `lost claims per task (${what}, ${tasks} tasks)`, unit: 'per task', values: lost, extra: extra('lost claims / task'),
        target: nodes === 500 ? { op: '<=', value: 0.2, text: '≤ 0.2 per task' } : undefined,
      });
      ctx.emit({ scenario: S, figure: `sim_tasks_per_virtual_s_${tag}`, label: `tasks per virtual second (${what})`, unit: 'tasks/s', values: rate, extra: extra('tasks / virtual s') });
    }
  }
  ctx.note(S, `Simulated: \`npm run sim -- --nodes N --slots 1 --tasks ${tasks} --seed K\` for K = 1..repetitions, with the sim's default faults ` +
    '(3 node deaths, 1 % lost claim replies, 3 slow-etcd periods); tasks per virtual second compare builds within the model, not loom\'s throughput.');
}
