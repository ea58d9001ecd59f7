/**
 * 7. Confinement cost: the same N × `true` through a one-node cluster whose
 * tasks run confined under uids of their own (--run-as pool, the default as
 * root: loom-confine, a pids and a freezer cgroup per task, a scratch dir)
 * and through one whose tasks run as the node (--run-as node, which still
 * goes through loom-confine for the cgroups), alternating which goes first in
 * each repetition. The figure is the ratio, from the same repetition.
 */
import { repeat } from '../budget';
import { BenchCluster } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { TaskCounter, terminalTotal } from '../etcd-probe';
import { spec, submitSpread } from '../tasks';

const S = 'confinement';

interface Rep {
  pool: number;
  node: number;
}

async function rate(c: BenchCluster, counter: TaskCounter, n: number, batch: number, deadline: number): Promise<number> {
  const before = await counter.counts();
  const t0 = Date.now();
  await submitSpread(c, spec(['true']), n, batch);
  const w = await counter.waitTerminalUntil(terminalTotal(before), n, deadline, 250);
  if (w.timedOut) return w.done / ((w.atMs - t0) / 1000);
  const last = await counter.lastFinishMs();
  if (last === undefined) throw new Error('no completed task found');
  return n / (Math.max(1, last - t0) / 1000);
}

export const confinement: Scenario = {
  name: S,
  title: 'Confinement cost',
  async run(ctx: BenchContext) {
    if (process.getuid?.() !== 0) {
      ctx.fail(S, 'pool_vs_node_pct', 'confined / unconfined throughput', 'needs root (--run-as pool switches uids)');
      return;
    }
    const n = ctx.quick ? 300 : 3000;
    const batch = ctx.quick ? 100 : 500;
    const budget = ctx.budget(ctx.quick ? 20 : 150);
    const pool = await BenchCluster.start({ name: 'cpool', nodes: 1, etcd: 'embedded', args: ['--run-as', 'pool'] }, ctx.log);
    let reps: Rep[];
    try {
      const node = await BenchCluster.start({ name: 'cnode', nodes: 1, etcd: 'embedded', args: ['--run-as', 'node'] }, ctx.log);
      try {
        const counters = { pool: new TaskCounter(pool.etcd()), node: new TaskCounter(node.etcd()) };
        reps = await repeat(ctx, S, 'paired runs', budget, async (rep): Promise<Rep> => {
          const order: Array<'pool' | 'node'> = rep % 2 === 0 ? ['pool', 'node'] : ['node', 'pool'];
          const r = {} as Rep;
          for (const which of order) r[which] = await rate(which === 'pool' ? pool : node, counters[which], n, batch, budget.deadline(30_000));
          ctx.log(`${S} rep ${rep + 1}: pool ${r.pool.toFixed(0)}/s, node ${r.node.toFixed(0)}/s`);
          return r;
        });
      } finally {
        await node.stop();
      }
    } finally {
      await pool.stop();
    }
    const v = (f: (r: Rep) => number) => reps.map(f);
    const extra = { tasks: n, batch, nodes: 1, etcd: '1 embedded member each' };
    ctx.emit({ scenario: S, figure: 'pool_tasks_per_s', label: `--run-as pool (own uid, cgroups, scratch dir), ${n} × \`true\``, unit: 'tasks/s', values: v((r) => r.pool), extra });
    ctx.emit({ scenario: S, figure: 'node_tasks_per_s', label: `--run-as node (the node's user, cgroups), ${n} × \`true\``, unit: 'tasks/s', values: v((r) => r.node), extra });
    ctx.emit({ scenario: S, figure: 'pool_vs_node_pct', label: 'confined / unconfined throughput (same repetition)', unit: '%', values: v((r) => (100 * r.pool) / r.node) });
    ctx.note(S, `Two one-node clusters (default slots, embedded member each) on the same machine, idle while the other runs; ${n} tasks per run ` +
      `in batches of ${batch}; the order alternates per repetition. First submit → latest finish time in the completed index, as in Throughput.`);
  },
};
