/**
 * 4. Fairness: N tasks of 100 ms (`sleep 0.1`) on 3 equal nodes; each node's
 * share of the tasks (from each record's node) and the max/min ratio. Then
 * the weighted variant: a 2-slot and a 6-slot node, whose shares should be
 * their slot shares (25 % and 75 %); the figure is the largest distance of a
 * share from its slot share, relative to it.
 */
import { spawn, spawnSync } from 'child_process';
import * as os from 'os';
import { TaskState } from '../../../src/gen/loom';
import { repeat } from '../budget';
import { BenchCluster } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { TaskCounter, terminalTotal } from '../etcd-probe';
import { spec, submitSpread } from '../tasks';

const S = 'fairness';
const SLOTS = 8;
const WEIGHTED_SLOTS = [2, 6];

/** Tasks of `ids` completed per node, from the records. */
async function completedPerNode(c: BenchCluster, ids: Set<string>): Promise<{ per: Map<string, number>; seen: number }> {
  const per = new Map<string, number>(c.nodes.map((x) => [x.name, 0]));
  let token = '';
  let seen = 0;
  do {
    const page = await c.api(0).list({ state: TaskState.COMPLETED, pageSize: 1000, pageToken: token });
    for (const t of page.tasks) {
      if (!ids.has(t.id)) continue;
      seen++;
      per.set(t.node, (per.get(t.node) ?? 0) + 1);
    }
    token = page.nextPageToken;
  } while (token);
  return { per, seen };
}

/** Runs `n` sleep tasks per repetition on `c`, calling `record` with each repetition's counts. */
async function runShares(
  ctx: BenchContext, c: BenchCluster, n: number, budgetS: number, what: string,
  record: (per: Map<string, number>, seen: number) => void,
): Promise<void> {
  const counter = new TaskCounter(c.etcd());
  const budget = ctx.budget(budgetS);
  await repeat(ctx, S, what, budget, async (rep) => {
    const before = terminalTotal(await counter.counts());
    const ids = new Set(await submitSpread(c, spec(['sleep', '0.1']), n, 500));
    const w = await counter.waitTerminalUntil(before, n, budget.deadline(20_000), 250);
    if (w.timedOut) {
      ctx.note(S, `${what} repetition ${rep + 1} cut by the time budget with ${w.done} of ${n} tasks done; its shares are of the tasks completed by then`);
    }
    const { per, seen } = await completedPerNode(c, ids);
    if (seen === 0) throw new Error(`none of the ${n} tasks completed`);
    record(per, seen);
    ctx.log(`${S} ${what} rep ${rep + 1}: ${[...per].map(([k, v]) => `${k}=${v}`).join(' ')}`);
  });
}

async function equalNodes(ctx: BenchContext, n: number): Promise<void> {
  const c = await BenchCluster.start({ name: 'fair', nodes: 3, etcd: 'embedded', slots: SLOTS }, ctx.log);
  const shares = new Map<string, number[]>(c.nodes.map((x) => [x.name, []]));
  const ratios: number[] = [];
  try {
    await runShares(ctx, c, n, ctx.quick ? 12 : 70, 'runs', (per, seen) => {
      const counts = [...per.values()];
      for (const [name, k] of per) shares.get(name)?.push((100 * k) / seen);
      ratios.push(Math.max(...counts) / Math.max(1, Math.min(...counts)));
    });
  } finally {
    await c.stop();
  }
  const extra = { tasks: n, nodes: 3, slotsPerNode: SLOTS };
  for (const [name, v] of shares) {
    ctx.emit({ scenario: S, figure: `share_${name}`, label: `share of tasks run by ${name}`, unit: '%', values: v, extra });
  }
  ctx.emit({
    scenario: S, figure: 'max_min_ratio', label: 'max/min tasks per node', unit: '×', values: ratios, extra,
    target: { op: '<=', value: 1.25, text: '≤ 1.25' },
  });
}

async function weightedNodes(ctx: BenchContext, n: number): Promise<void> {
  const c = await BenchCluster.start({ name: 'wfair', nodes: WEIGHTED_SLOTS.length, etcd: 'embedded', slotsPerNode: WEIGHTED_SLOTS }, ctx.log);
  const total = WEIGHTED_SLOTS.reduce((a, b) => a + b, 0);
  const slotShare = new Map(c.nodes.map((x, i) => [x.name, (100 * WEIGHTED_SLOTS[i]) / total]));
  const shares = new Map<string, number[]>(c.nodes.map((x) => [x.name, []]));
  const errors: number[] = [];
  try {
    await runShares(ctx, c, n, ctx.quick ? 12 : 60, 'weighted runs', (per, seen) => {
      let worst = 0;
      for (const [name, k] of per) {
        const share = (100 * k) / seen;
        shares.get(name)?.push(share);
        worst = Math.max(worst, (100 * Math.abs(share - slotShare.get(name)!)) / slotShare.get(name)!);
      }
      errors.push(worst);
    });
  } finally {
    await c.stop();
  }
  const extra = { tasks: n, nodes: WEIGHTED_SLOTS.length, slots: WEIGHTED_SLOTS.join('+') };
  for (const [name, v] of shares) {
    ctx.emit({ scenario: S, figure: `weighted_share_${name}`, label: `share of tasks run by ${name} (${WEIGHTED_SLOTS[c.nodes.findIndex((x) => x.name === name)]} slots)`, unit: '%', values: v, extra });
  }
  ctx.emit({
    scenario: S, figure: 'weighted_share_error', label: 'largest distance of a share from its slot share, relative', unit: '%', values: errors, extra,
    target: { op: '<=', value: 10, text: '≤ 10 %' },
  });
}

const LOAD_SLOTS = 4;

/** Waits until `pred` holds of the nodes' records (their metrics are published every 3 s). */
async function untilNodes(c: BenchCluster, timeoutMs: number, pred: (byName: Map<string, { cpu: number; paused: string }>) => boolean): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const nodes = await c.api(0).nodes();
    if (pred(new Map(nodes.map((n) => [n.name, { cpu: n.metrics?.cpuUtilization ?? 0, paused: n.pausedReason }])))) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

/**
 * The load variant: two nodes, each pinned to one CPU (taskset), both with
 * --placement least-loaded --max-load 90%; a CPU burner outside loom on the
 * second node's CPU. The figure is the burdened node's share of the tasks,
 * then the same node's share once the burner is gone (same cluster, same run).
 */
async function loadedNodes(ctx: BenchContext, n: number): Promise<void> {
  if (os.cpus().length < 2 || spawnSync('taskset', ['-c', '0', 'true']).status !== 0) {
    ctx.note(S, 'load variant skipped: it needs two CPUs and taskset');
    return;
  }
  const c = await BenchCluster.start({
    name: 'lfair', nodes: 2, etcd: 'embedded', slots: LOAD_SLOTS, cpusPerNode: ['0', '1'], args: ['--placement', 'least-loaded', '--max-load', '90%'],
  }, ctx.log);
  const [idle, busy] = c.nodes.map((x) => x.name);
  const busyShares: number[] = [];
  const afterShares: number[] = [];
  const burner = spawn('taskset', ['-c', '1', process.execPath, '-e', 'for (;;) {}'], { stdio: 'ignore' });
  try {
    const seen = await untilNodes(c, 30_000, (m) => (m.get(busy)?.cpu ?? 0) >= 0.9 && m.get(busy)!.paused !== '');
    if (!seen) ctx.note(S, `load variant: ${busy} did not report its CPU busy and paused within 30 s; its shares are as measured`);
    await runShares(ctx, c, n, ctx.quick ? 10 : 40, 'load runs (burner on)', (per, k) => busyShares.push((100 * (per.get(busy) ?? 0)) / k));
    burner.kill('SIGKILL');
    const resumed = await untilNodes(c, 30_000, (m) => m.get(busy)!.paused === '' && (m.get(busy)?.cpu ?? 1) < 0.5);
    if (!resumed) ctx.note(S, `load variant: ${busy} had not resumed 30 s after the burner stopped`);
    await runShares(ctx, c, n, ctx.quick ? 10 : 40, 'load runs (burner off)', (per, k) => afterShares.push((100 * (per.get(busy) ?? 0)) / k));
  } finally {
    burner.kill('SIGKILL');
    await c.stop();
  }
  const extra = { tasks: n, nodes: 2, slotsPerNode: LOAD_SLOTS };
  ctx.emit({
    scenario: S, figure: 'load_share_burdened', label: `share of tasks run by ${busy}, its CPU busy with a burner outside loom`, unit: '%', values: busyShares, extra,
    target: { op: '<=', value: 10, text: '≤ 10 %' },
  });
  ctx.emit({ scenario: S, figure: 'load_share_after', label: `share of tasks run by ${busy} once the burner stopped (${idle} the rest)`, unit: '%', values: afterShares, extra });
}

export const fairness: Scenario = {
  name: S,
  title: 'Fairness',
  async run(ctx: BenchContext) {
    const n = ctx.quick ? 300 : 3000;
    await equalNodes(ctx, n);
    // 8 slots in all: fewer tasks, so that three repetitions fit its budget.
    const nWeighted = ctx.quick ? 300 : 1200;
    await weightedNodes(ctx, nWeighted);
    const nLoad = ctx.quick ? 200 : 800;
    await loadedNodes(ctx, nLoad);
    ctx.note(S, `${n} tasks \`sleep 0.1\` per repetition, submitted in batches of 500 spread over the nodes; 3 nodes with ${SLOTS} slots each ` +
      "(more than the default, to keep a repetition short), 3 embedded etcd members, one cluster for all repetitions. Shares come from each completed record's node. " +
      `Weighted: ${nWeighted} such tasks per repetition on ${WEIGHTED_SLOTS.length} nodes with ${WEIGHTED_SLOTS.join(' and ')} slots (each an embedded etcd member); ` +
      'the error is |share − slot share| / slot share of the node furthest from its slot share. ' +
      `Load: ${nLoad} such tasks per repetition on 2 nodes of ${LOAD_SLOTS} slots, each pinned to one CPU with taskset (a node measures the CPUs it may run on), ` +
      'both with `--placement least-loaded --max-load 90%`; a busy loop outside loom pinned to the second CPU, then stopped: the second node\'s share with it and without it.');
  },
};
