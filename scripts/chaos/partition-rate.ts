/**
 * How much work the rest of the cluster gets done while one member node is
 * cut off (the chaos harness's partition-member, held longer): completions
 * per second before, in the first seconds of the partition, in its steady
 * state, and after the heal. A measurement, not a test:
 *
 *   node dist/scripts/chaos/partition-rate.js [--mode drop|reset] [--hold-s 30]
 *        [--target n3|leader|follower] [--reps 1]
 *
 * `--target leader` cuts off the node whose member leads etcd at that moment
 * (`follower`: one whose member does not). Each repetition also reports the
 * nodes other than the one cut off that fenced themselves: none should,
 * since the majority side keeps a quorum, but while the cut-off member was the
 * leader the others have no leader until they elect one, and no lease can be
 * renewed meanwhile. The last line is one JSON object with every repetition.
 *
 * Tasks are `sleep 0.3` (so the rate is bound by slots and claims, not CPU);
 * 5 nodes with 3 slots each, lease TTL 5 s, as in the chaos runs.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Etcd3 } from 'etcd3';
import { LoomApi } from '../../src/client/client';
import { TaskSpec } from '../../src/gen/loom';
import { ChaosCluster, ChaosNode, sleep } from './cluster';
import { isLeader } from '../bench/etcd-probe';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

/** The member node to cut off: by name, or by its member's etcd role now. */
async function pickTarget(cluster: ChaosCluster, target: string): Promise<ChaosNode> {
  if (target !== 'leader' && target !== 'follower') return cluster.node(target);
  for (const m of cluster.members) {
    if (!m.clientUrl) continue;
    const leads = await isLeader(m.clientUrl).catch(() => false);
    if (leads === (target === 'leader')) return m;
  }
  throw new Error(`no member node is an etcd ${target} now`);
}

interface Rep {
  target: string;
  before: number;
  first5s: number;
  steady: number;
  healed5s: number;
  after: number;
  /** Nodes other than the target that logged FENCED during the repetition. */
  othersFenced: string[];
  targetFenced: boolean;
}

async function main(): Promise<void> {
  const mode = arg('mode', 'drop') as 'drop' | 'reset';
  const holdS = Number(arg('hold-s', '30'));
  const target = arg('target', 'n3');
  const reps = Number(arg('reps', '1'));
  const bad = [
    mode === 'drop' || mode === 'reset' ? '' : `--mode must be drop or reset, not ${mode}`,
    Number.isInteger(holdS) && holdS >= 6 && holdS <= 600 ? '' : '--hold-s must be a whole number of seconds from 6 to 600',
    /^(leader|follower|n[1-3])$/.test(target) ? '' : `--target must be leader, follower or a member node (n1, n2, n3), not ${target}`,
    Number.isInteger(reps) && reps >= 1 && reps <= 100 ? '' : '--reps must be an integer from 1 to 100',
  ].filter(Boolean);
  if (bad.length > 0) {
    process.stderr.write(`partition-rate: ${bad.join('; ')}\n`);
    process.exit(2);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-partition-rate-'));
  const say = (m: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 23)}] ${m}\n`);
  const cluster = await ChaosCluster.create({ dir, slots: 3, leaseTtlS: 5, log: say });
  let client: Etcd3 | undefined;
  const results: Rep[] = [];
  try {
    await cluster.startAll();
    client = new Etcd3({ hosts: cluster.harnessUrls, dialTimeout: 3000 });
    const etcd = client;
    const completed = async () =>
      Number((await etcd.kv.range({ key: Buffer.from('/task/status/completed/'), range_end: Buffer.from('/task/status/completed0'), count_only: true })).count);
    const apis = cluster.nodes.map((n) => new LoomApi(n.api, { deadlineMs: 60_000 }));
    const total = Math.ceil(((10 + holdS + 15) * reps + 10) * 15 / 0.3 * 1.2);
    for (let i = 0; i < total; i += 500) {
      const n = Math.min(500, total - i);
      await apis[(i / 500) % apis.length].submit(Array.from({ length: n }, () => TaskSpec.fromPartial({ command: ['sleep', '0.3'], priority: 100 })));
    }
    say(`submitted ${total} tasks of sleep 0.3 (15 slots: at most 50/s)`);
    const rate = async (seconds: number) => {
      const a = await completed();
      const t = Date.now();
      await sleep(seconds * 1000);
      return ((await completed()) - a) / ((Date.now() - t) / 1000);
    };
    await sleep(5000);
    for (let r = 1; r <= reps; r++) {
      const before = await rate(10);
      const n = await pickTarget(cluster, target);
      const marks = new Map(cluster.nodes.map((x) => [x.name, x.output().length]));
      say(`rep ${r}/${reps} before: ${before.toFixed(1)}/s; cutting ${n.name} (${target}) off (${mode}) for ${holdS} s`);
      cluster.isolate(n, mode);
      const first = await rate(5);
      const steady = await rate(holdS - 5);
      cluster.rejoin();
      const healed = await rate(5);
      const after = await rate(10);
      const fenced = cluster.nodes.filter((x) => /FENCED/.test(x.output().slice(marks.get(x.name)))).map((x) => x.name);
      const rep: Rep = {
        target: n.name, before, first5s: first, steady, healed5s: healed, after,
        othersFenced: fenced.filter((x) => x !== n.name), targetFenced: fenced.includes(n.name),
      };
      results.push(rep);
      say(
        `rep ${r}/${reps} completions/s: before ${before.toFixed(1)}, partition first 5 s ${first.toFixed(1)}, partition 5-${holdS} s ${steady.toFixed(1)}, ` +
          `first 5 s after the heal ${healed.toFixed(1)}, then ${after.toFixed(1)}; fenced: ${fenced.join(',') || 'none'}` +
          (rep.othersFenced.length ? ` (not cut off: ${rep.othersFenced.join(',')})` : ''),
      );
    }
    for (const a of apis) a.close();
    const others = results.reduce((sum, r) => sum + r.othersFenced.length, 0);
    process.stdout.write(`${JSON.stringify({ mode, holdS, target, reps, othersFencedTotal: others, results })}\n`);
  } finally {
    client?.close();
    await cluster.stopAll();
    if (!process.argv.includes('--keep')) fs.rmSync(dir, { recursive: true, force: true });
    else say(`run dir kept: ${dir}`);
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
