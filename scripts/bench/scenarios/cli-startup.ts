/**
 * CLI start-up (on demand: `npm run bench -- --only cli-startup`): the wall
 * time of `loom -N ADDR run true` as a new process against an idle one-node
 * cluster, beside `node -e 0` (Node's own start-up) and `LoomApi.run(true)`
 * in a warm process (the round trip the command cannot avoid), all three
 * taken in turn within each repetition so their ratios come from the same
 * moment of the box. Also the command with its code cache turned off
 * (LOOM_COMPILE_CACHE=off, src/bin/compile-cache.ts) for what the cache buys.
 * The cache sits in a directory of the run's own, warmed by one command.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { repeat } from '../budget';
import { BenchCluster, LOOM_BIN } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { timedNode } from '../proc';
import { median } from '../stats';
import { spec } from '../tasks';
import { NODE_RUNTIME_FLAGS } from '../../../src/bin/runtime-flags';

const S = 'cli-startup';

interface Rep {
  nodeMs: number;
  cliMs: number;
  cliNoCacheMs: number;
  warmRunMs: number;
}

export const cliStartup: Scenario = {
  name: S,
  title: 'CLI start-up',
  onDemand: true,
  async run(ctx: BenchContext) {
    const samples = ctx.quick ? 3 : 10;
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-bench-cc-'));
    const c = await BenchCluster.start({ name: 'cli', nodes: 1, etcd: 'embedded' }, ctx.log);
    const reps: Rep[] = [];
    try {
      const addr = c.nodes[0].api;
      const cli = [...NODE_RUNTIME_FLAGS, LOOM_BIN, '-N', addr, 'run', 'true'];
      const cached = { ...process.env, LOOM_COMPILE_CACHE: cacheDir };
      const uncached = { ...process.env, LOOM_COMPILE_CACHE: 'off' };
      const api = c.api(0);
      await timedNode(cli, cached);
      await api.run(spec(['true']));
      await repeat(ctx, S, 'loom run true', ctx.budget(120), async () => {
        const r = { node: [] as number[], cli: [] as number[], off: [] as number[], warm: [] as number[] };
        for (let i = 0; i < samples; i++) {
          r.node.push(await timedNode(['-e', '0'], process.env));
          r.cli.push(await timedNode(cli, cached));
          r.off.push(await timedNode(cli, uncached));
          const t0 = performance.now();
          await api.run(spec(['true']));
          r.warm.push(performance.now() - t0);
        }
        const rep = { nodeMs: median(r.node), cliMs: median(r.cli), cliNoCacheMs: median(r.off), warmRunMs: median(r.warm) };
        ctx.log(`${S}: node -e 0 ${rep.nodeMs.toFixed(0)} ms, loom run true ${rep.cliMs.toFixed(0)} ms (no cache ${rep.cliNoCacheMs.toFixed(0)}), warm run ${rep.warmRunMs.toFixed(1)} ms`);
        reps.push(rep);
      });
    } finally {
      await c.stop();
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
    const each = `median of ${samples} per repetition, taken in turn`;
    const v = (f: (r: Rep) => number) => reps.map(f);
    ctx.emit({ scenario: S, figure: 'node_e0_ms', label: `\`node -e 0\` (${each})`, unit: 'ms', values: v((r) => r.nodeMs) });
    ctx.emit({ scenario: S, figure: 'cli_run_true_ms', label: `\`loom run true\` as a new process, idle one-node cluster (${each})`, unit: 'ms', values: v((r) => r.cliMs) });
    ctx.emit({ scenario: S, figure: 'cli_run_true_no_cache_ms', label: `the same with LOOM_COMPILE_CACHE=off (${each})`, unit: 'ms', values: v((r) => r.cliNoCacheMs) });
    ctx.emit({ scenario: S, figure: 'warm_run_true_ms', label: `LoomApi.run(true) in a warm process: the round trip (${each})`, unit: 'ms', values: v((r) => r.warmRunMs) });
    ctx.emit({ scenario: S, figure: 'cli_over_node_e0', label: '`loom run true` / `node -e 0`', unit: 'ratio', values: v((r) => r.cliMs / r.nodeMs) });
    ctx.emit({ scenario: S, figure: 'cache_over_no_cache', label: '`loom run true` with its code cache / without', unit: 'ratio', values: v((r) => r.cliMs / r.cliNoCacheMs) });
    ctx.emit({
      scenario: S, figure: 'cli_over_target', label: '`loom run true` / (1.5 × `node -e 0` + the warm round trip)', unit: 'ratio',
      values: v((r) => r.cliMs / (1.5 * r.nodeMs + r.warmRunMs)),
      target: { op: '<=', value: 1, text: '≤ 1 (within 1.5× `node -e 0` plus one round trip)' },
    });
  },
};
