/**
 * How much work the rest of the cluster gets done while one member node is
 * cut off (the chaos harness's partition-member, held longer): completions
 * per second before, in the first seconds of the partition, in its steady
 * state, and after the heal. A measurement, not a test:
 *
 *   node dist/scripts/chaos/partition-rate.js [--mode drop|reset] [--hold-s 30] [--target n3]
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
import { ChaosCluster, sleep } from './cluster';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}

async function main(): Promise<void> {
  const mode = arg('mode', 'drop') as 'drop' | 'reset';
  const holdS = Number(arg('hold-s', '30'));
  const target = arg('target', 'n3');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-partition-rate-'));
  const say = (m: string) => process.stdout.write(`[${new Date().toISOString().slice(11, 23)}] ${m}\n`);
  const cluster = await ChaosCluster.create({ dir, slots: 3, leaseTtlS: 5, log: say });
  let client: Etcd3 | undefined;
  try {
    await cluster.startAll();
    client = new Etcd3({ hosts: cluster.harnessUrls, dialTimeout: 3000 });
    const etcd = client;
    const completed = async () =>
      Number((await etcd.kv.range({ key: Buffer.from('/task/status/completed/'), range_end: Buffer.from('/task/status/completed0'), count_only: true })).count);
    const apis = cluster.nodes.map((n) => new LoomApi(n.api, { deadlineMs: 60_000 }));
    const total = Math.ceil((20 + holdS + 20) * 15 / 0.3 * 1.2);
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
    const before = await rate(15);
    const n = cluster.node(target);
    const marks = new Map(cluster.nodes.map((x) => [x.name, x.output().length]));
    say(`before: ${before.toFixed(1)}/s; cutting ${target} off (${mode}) for ${holdS} s`);
    cluster.isolate(n, mode);
    const first = await rate(5);
    const steady = await rate(holdS - 5);
    cluster.rejoin();
    const healed = await rate(5);
    const after = await rate(10);
    const fenced = cluster.nodes.filter((x) => /FENCED/.test(x.output().slice(marks.get(x.name)))).map((x) => x.name);
    say(
      `completions/s: before ${before.toFixed(1)}, partition first 5 s ${first.toFixed(1)}, partition 5-${holdS} s ${steady.toFixed(1)}, ` +
        `first 5 s after the heal ${healed.toFixed(1)}, then ${after.toFixed(1)}; fenced: ${fenced.join(',') || 'none'}`,
    );
    for (const a of apis) a.close();
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
