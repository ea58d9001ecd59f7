/**
 * 4. Fairness: N tasks of 100 ms (`sleep 0.1`) on 3 equal nodes; each node's
 * share of the tasks (from each record's node) and the max/min ratio.
 */
import { TaskState } from '../../../src/gen/loom';
import { repeat } from '../budget';
import { BenchCluster } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { TaskCounter, terminalTotal } from '../etcd-probe';
import { spec, submitSpread } from '../tasks';

const S = 'fairness';
const SLOTS = 8;

export const fairness: Scenario = {
  name: S,
  title: 'Fairness',
  async run(ctx: BenchContext) {
    const n = ctx.quick ? 300 : 3000;
    const c = await BenchCluster.start({ name: 'fair', nodes: 3, etcd: 'embedded', slots: SLOTS }, ctx.log);
    const shares = new Map<string, number[]>(c.nodes.map((x) => [x.name, []]));
    const ratios: number[] = [];
    try {
      const counter = new TaskCounter(c.etcd());
      const budget = ctx.budget(ctx.quick ? 12 : 70);
      await repeat(ctx, S, 'runs', budget, async (rep) => {
        const before = terminalTotal(await counter.counts());
        const ids = new Set(await submitSpread(c, spec(['sleep', '0.1']), n, 500));
        const w = await counter.waitTerminalUntil(before, n, budget.deadline(20_000), 250);
        if (w.timedOut) {
          ctx.note(S, `repetition ${rep + 1} cut by the time budget with ${w.done} of ${n} tasks done; its shares are of the tasks completed by then`);
        }
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
        if (seen === 0) throw new Error(`none of the ${n} tasks completed`);
        const counts = [...per.values()];
        for (const [name, k] of per) shares.get(name)?.push((100 * k) / seen);
        ratios.push(Math.max(...counts) / Math.max(1, Math.min(...counts)));
        ctx.log(`${S} rep ${rep + 1}: ${[...per].map(([k, v]) => `${k}=${v}`).join(' ')}`);
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
    ctx.note(S, `${n} tasks \`sleep 0.1\` per repetition, submitted in batches of 500 spread over the nodes; 3 nodes with ${SLOTS} slots each ` +
      "(more than the default, to keep a repetition short), 3 embedded etcd members, one cluster for all repetitions. Shares come from each completed record's node.");
  },
};
