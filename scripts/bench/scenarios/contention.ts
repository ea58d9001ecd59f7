/**
 * 5. Contention: claim transactions that lost (another node claimed the task
 * first) per task completed, with 3 nodes (3 embedded etcd members) and with
 * 8 worker-only nodes sharing one etcd. Counts come from each node's shutdown
 * log line `stats: claimed=N lost=M claimTxns=K`, so each repetition runs on a
 * fresh cluster that is stopped gracefully. etcd's own Txn RPC count (from
 * /metrics) is reported beside them.
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
  /** Seconds of repetitions (the target is on 8 nodes; 3 nodes is context, one repetition). */
  budgetS: number;
}

const VARIANTS: Variant[] = [
  { tag: '3n', label: '3 nodes, 3 embedded etcd members', nodes: 3, etcd: 'embedded', budgetS: 25 },
  { tag: '8n', label: '8 worker-only nodes, one shared etcd', nodes: 8, etcd: 'shared', budgetS: 50 },
];

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
      const budget = ctx.budget(ctx.quick ? 10 : v.budgetS);
      await repeat(ctx, S, v.label, budget, async (rep) => {
        const c = await BenchCluster.start({ name: `con${v.tag}`, nodes: v.nodes, etcd: v.etcd }, ctx.log);
        let completed = 0;
        let stats: Map<string, NodeStats | undefined>;
        try {
          const counter = new TaskCounter(c.etcd());
          const before = await counter.counts();
          const txn0 = await sumTxns(c.etcdUrls);
          await submitSpread(c, spec(['true']), n, 500);
          const w = await counter.waitTerminalUntil(terminalTotal(before), n, budget.deadline(20_000), 250);
          if (w.timedOut) ctx.note(S, `${v.label}, repetition ${rep + 1}: cut by the time budget with ${w.done} of ${n} tasks done; figures are per task completed by then`);
          const txn1 = await sumTxns(c.etcdUrls);
          completed = Math.max(1, w.counts.completed - before.completed);
          etcdTxns.push((txn1 - txn0) / completed);
        } finally {
          stats = await c.stop();
        }
        const without = [...stats].filter(([, s]) => !s).map(([name]) => name);
        if (without.length) {
          missing = `no \`stats: claimed=N lost=M claimTxns=K\` line in the shutdown log of ${without.join(', ')}`;
          ctx.log(`${S} ${v.tag} rep ${rep + 1}: ${missing}`);
          return;
        }
        const all = [...stats.values()] as NodeStats[];
        const sum = (k: keyof NodeStats) => all.reduce((a, s) => a + s[k], 0);
        lost.push(sum('lost') / completed);
        claimTxns.push(sum('claimTxns') / completed);
        ctx.log(`${S} ${v.tag} rep ${rep + 1}: lost ${sum('lost')}, claimed ${sum('claimed')}, claim txns ${sum('claimTxns')} for ${completed} tasks`);
      });
      const extra = { tasks: n, nodes: v.nodes, etcd: v.etcd === 'shared' ? '1 shared' : `${v.nodes} embedded members` };
      const target = v.nodes >= 8 ? { op: '<=' as const, value: 0.2, text: '≤ 0.2 per task' } : undefined;
      if (lost.length) {
        ctx.emit({ scenario: S, figure: `lost_claims_per_task_${v.tag}`, label: `lost claims per task completed (${v.label})`, unit: 'per task', values: lost, extra, target });
        ctx.emit({ scenario: S, figure: `claim_txns_per_task_${v.tag}`, label: `claim transactions per task completed (${v.label})`, unit: 'per task', values: claimTxns, extra });
      } else {
        ctx.fail(S, `lost_claims_per_task_${v.tag}`, `lost claims per task completed (${v.label})`,
          `${missing}; the node exports no lost-claim counter yet (etcd cannot tell a lost nested claim from a won one)`);
      }
      ctx.emit({ scenario: S, figure: `etcd_txn_rpcs_per_task_${v.tag}`, label: `etcd Txn RPCs per task completed, all kinds (${v.label})`, unit: 'per task', values: etcdTxns, extra });
    }
    ctx.note(S, `${n} tasks \`true\` per repetition, batches of 500 spread over the nodes, default slots; a fresh cluster per repetition, ` +
      "stopped with SIGTERM so that each node prints its claim counters (`stats: claimed=N lost=M claimTxns=K`) on shutdown. " +
      'A lost claim is a task in a batched claim transaction whose compare failed because another node had claimed it. ' +
      'etcd Txn RPCs (grpc_server_handled_total{grpc_method="Txn"} summed over the members) count every transaction: submits, claims, results.');
  },
};
