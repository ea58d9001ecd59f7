/**
 * 5. Contention: claim transactions that lost (another node claimed the task
 * first) per task completed, with 3 nodes (3 embedded etcd members) and with
 * 8 worker-only nodes sharing one etcd. Counts come from each node's
 * /metrics (--metrics-listen: loom_claims_total, loom_claims_lost_total,
 * loom_claim_transactions_total), read before and after each repetition, so
 * the repetitions share one cluster per variant. etcd's own Txn RPC count
 * (from its /metrics) is reported beside them.
 */
import { repeat } from '../budget';
import { BenchCluster, NodeStats } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { TaskCounter, terminalTotal, txnRpcs } from '../etcd-probe';
import { spec, submitSpread } from '../tasks';

const S = 'contention';

interface Variant {
  tag: string;
  label: string;
  nodes: number;
  etcd: 'embedded' | 'shared';
  /** Seconds of repetitions (on one cluster, started before). */
  budgetS: number;
}

const VARIANTS: Variant[] = [
  { tag: '3n', label: '3 nodes, 3 embedded etcd members', nodes: 3, etcd: 'embedded', budgetS: 45 },
  { tag: '8n', label: '8 worker-only nodes, one shared etcd', nodes: 8, etcd: 'shared', budgetS: 50 },
];

function total(stats: NodeStats[], k: keyof NodeStats): number {
  return stats.reduce((a, s) => a + s[k], 0);
}

async function sumTxns(urls: string[]): Promise<number> {
  return (await Promise.all(urls.map(txnRpcs))).reduce((a, b) => a + b, 0);
}

export const contention: Scenario = {
  name: S,
  title: 'Contention',
  async run(ctx: BenchContext) {
    const n = ctx.quick ? 200 : 1000;
    for (const v of VARIANTS) {
      const lost: number[] = [];
      const claimTxns: number[] = [];
      const etcdTxns: number[] = [];
      let missing = '';
      const c = await BenchCluster.start({ name: `con${v.tag}`, nodes: v.nodes, etcd: v.etcd, metrics: true }, ctx.log);
      const budget = ctx.budget(ctx.quick ? 10 : v.budgetS);
      try {
        const counter = new TaskCounter(c.etcd());
        await repeat(ctx, S, v.label, budget, async (rep) => {
          const before = await counter.counts();
          const txn0 = await sumTxns(c.etcdUrls);
          const stats0 = await c.claimCounters().catch((err: Error) => err);
          await submitSpread(c, spec(['true']), n, 500);
          const w = await counter.waitTerminalUntil(terminalTotal(before), n, budget.deadline(20_000), 250);
          if (w.timedOut) ctx.note(S, `${v.label}, repetition ${rep + 1}: cut by the time budget with ${w.done} of ${n} tasks done; figures are per task completed by then`);
          const txn1 = await sumTxns(c.etcdUrls);
          const stats1 = await c.claimCounters().catch((err: Error) => err);
          const completed = Math.max(1, w.counts.completed - before.completed);
          etcdTxns.push((txn1 - txn0) / completed);
          if (stats0 instanceof Error || stats1 instanceof Error) {
            missing = (stats0 instanceof Error ? stats0 : (stats1 as Error)).message;
            ctx.log(`${S} ${v.tag} rep ${rep + 1}: ${missing}`);
            return;
          }
          const delta = (k: keyof NodeStats) => total(stats1, k) - total(stats0, k);
          lost.push(delta('lost') / completed);
          claimTxns.push(delta('claimTxns') / completed);
          ctx.log(`${S} ${v.tag} rep ${rep + 1}: lost ${delta('lost')}, claimed ${delta('claimed')}, claim txns ${delta('claimTxns')} for ${completed} tasks`);
        });
      } finally {
        await c.stop();
      }
      const extra = { tasks: n, nodes: v.nodes, etcd: v.etcd === 'shared' ? '1 shared' : `${v.nodes} embedded members` };
      const target = v.nodes >= 8 ? { op: '<=' as const, value: 0.2, text: '≤ 0.2 per task' } : undefined;
      if (lost.length) {
        ctx.emit({ scenario: S, figure: `lost_claims_per_task_${v.tag}`, label: `lost claims per task completed (${v.label})`, unit: 'per task', values: lost, extra, target });
        ctx.emit({ scenario: S, figure: `claim_txns_per_task_${v.tag}`, label: `claim transactions per task completed (${v.label})`, unit: 'per task', values: claimTxns, extra });
      } else {
        ctx.fail(S, `lost_claims_per_task_${v.tag}`, `lost claims per task completed (${v.label})`,
          `${missing} (etcd cannot tell a lost nested claim from a won one; only the nodes count them)`);
      }
      ctx.emit({ scenario: S, figure: `etcd_txn_rpcs_per_task_${v.tag}`, label: `etcd Txn RPCs per task completed, all kinds (${v.label})`, unit: 'per task', values: etcdTxns, extra });
    }
    ctx.note(S, `${n} tasks \`true\` per repetition, batches of 500 spread over the nodes, default slots; one cluster per variant for all ` +
      'its repetitions, each node started with --metrics-listen; claim counters are the change of each node\'s loom_claims_total{via="queue"}, ' +
      'loom_claims_lost_total and loom_claim_transactions_total over the repetition. ' +
      'A lost claim is a task in a batched claim transaction whose compare failed because another node had claimed it. ' +
      'etcd Txn RPCs (grpc_server_handled_total{grpc_method="Txn"} summed over the members) count every transaction: submits, claims, results.');
  },
};
