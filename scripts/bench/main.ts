/**
 * `npm run bench`: runs the benchmark scenarios against local clusters it
 * starts itself, prints one JSON line per figure on stdout (progress on
 * stderr) and writes BENCHMARKS.md from what it measured.
 *
 *   npm run bench -- [--only throughput,latency,...] [--reps N] [--quick] [--out FILE]
 *
 * The throughput and latency scenarios also measure a peer, BullMQ on a
 * private redis-server (scripts/bench/setup-peer.sh installs Debian's
 * redis-server; LOOM_REDIS_BIN names another binary); without Redis those
 * figures are reported as not measured.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Budget } from './budget';
import { killAllClustersNow, setDefaultStopGrace } from './cluster';
import { BenchContext, Scenario } from './context';
import { killAllPeersNow } from './peer/redis';
import { errorLine, Figure, FigureLine, toLine } from './figures';
import { machineInfo, renderReport } from './report';
import { confinement } from './scenarios/confinement';
import { contention } from './scenarios/contention';
import { failover } from './scenarios/failover';
import { fairness } from './scenarios/fairness';
import { latency } from './scenarios/latency';
import { manyNodes } from './scenarios/many-nodes';
import { cliStartup } from './scenarios/cli-startup';
import { scale } from './scenarios/scale';
import { throughput } from './scenarios/throughput';

const SCENARIOS: Scenario[] = [throughput, latency, failover, fairness, contention, scale, confinement, manyNodes, cliStartup];
const REPO = path.resolve(__dirname, '../../..');

interface Args {
  only: string[];
  reps: number;
  quick: boolean;
  budget: boolean;
  out?: string;
  baseline?: string;
}

const USAGE = `usage: npm run bench -- [options]
  --only NAME,...  scenarios to run (${SCENARIOS.map((s) => s.name).join(', ')}); default all
                   but the on-demand ones (${SCENARIOS.filter((s) => s.onDemand).map((s) => s.name).join(', ')}), which a full run has no time for
  --reps N         repetitions per figure (default 3; 1 with --quick)
  --quick          small sizes: a smoke run in under 2 minutes
  --no-budget      never cut a scenario short (by default each has a time budget so the
                   whole run stays under 15 minutes; cut figures say so)
  --out FILE       where to write the report (default BENCHMARKS.md in the repo root;
                   BENCHMARKS-NAME.md when only on-demand scenarios run)
  --baseline PATH  another build's dist/src/bin/loom.js: scenarios that compare builds
                   (many-nodes) run it too, beside this one, in the same run`;

function parseArgs(argv: string[]): Args {
  const args: Args = { only: [], reps: 0, quick: false, budget: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const next = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--only':
        args.only.push(...next().split(',').map((s) => s.trim()).filter(Boolean));
        break;
      case '--reps':
        args.reps = Number(next());
        if (!Number.isInteger(args.reps) || args.reps < 1 || args.reps > 100) throw new Error('--reps must be an integer from 1 to 100');
        break;
      case '--quick':
        args.quick = true;
        break;
      case '--no-budget':
        args.budget = false;
        break;
      case '--out':
        args.out = path.resolve(next());
        break;
      case '--baseline':
        args.baseline = path.resolve(next());
        if (!fs.existsSync(args.baseline)) throw new Error(`--baseline ${args.baseline}: no such file (give another checkout's dist/src/bin/loom.js)`);
        break;
      case '-h':
      case '--help':
        process.stdout.write(USAGE + '\n');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  }
  const unknown = args.only.filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`unknown scenario ${unknown.join(', ')}`);
  if (args.reps === 0) args.reps = args.quick ? 1 : 3;
  return args;
}

async function main(): Promise<number> {
  let args: Args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`bench: ${sig}: killing the clusters and peer processes started by this run\n`);
    killAllClustersNow();
    killAllPeersNow();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', (code) => {
    killAllClustersNow();
    killAllPeersNow();
    // main() settles through process.exit; getting here otherwise means the
    // event loop ran dry while a scenario still awaited something.
    if (!settled && code === 0) {
      process.stderr.write('bench: the event loop ran dry before the run finished (a scenario awaited something that holds no handle); no report written\n');
      process.exitCode = 1;
    }
  });

  // A node prints its stats line as soon as it gets SIGTERM; the rest of a graceful stop
  // (mostly the last etcd member of a cluster waiting for its peers) is not worth waiting for in a smoke run.
  if (args.quick) setDefaultStopGrace(2000);
  const startedAt = new Date();
  const t0 = Date.now();
  const log = (msg: string) => process.stderr.write(`[bench ${((Date.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
  const machine = machineInfo();
  log(`machine: ${machine.cpu} × ${machine.cores}, ${machine.ramGiB} GiB, node ${machine.node}, etcd ${machine.etcd}, load ${machine.loadAvg}`);
  const lines: FigureLine[] = [];
  const notes = new Map<string, string[]>();
  const print = (l: FigureLine) => {
    lines.push(l);
    process.stdout.write(JSON.stringify(l) + '\n');
  };
  const ctx: BenchContext = {
    quick: args.quick,
    reps: args.reps,
    log,
    emit: (f: Figure) => print(toLine(f)),
    fail: (scenario, figure, label, reason) => print({ scenario, figure, label, error: reason }),
    budget: (seconds) => new Budget(args.budget ? seconds : Infinity),
    note: (scenario, text) => notes.set(scenario, [...(notes.get(scenario) ?? []), text]),
    baselineBin: args.baseline,
  };
  const chosen = args.only.length ? SCENARIOS.filter((s) => args.only.includes(s.name)) : SCENARIOS.filter((s) => !s.onDemand);
  // A run of on-demand scenarios alone keeps the full run's BENCHMARKS.md and writes its own file.
  const out = args.out ?? path.join(REPO, chosen.every((s) => s.onDemand) ? `BENCHMARKS-${chosen.map((s) => s.name).join('-')}.md` : 'BENCHMARKS.md');
  for (const s of chosen) {
    log(`== ${s.name}`);
    const ts = Date.now();
    try {
      await s.run(ctx);
    } catch (err) {
      log(`${s.name} failed: ${(err as Error).stack ?? err}`);
      print(errorLine(s.name, err));
    }
    log(`== ${s.name} done in ${((Date.now() - ts) / 1000).toFixed(1)} s`);
  }
  const command = ['npm run bench --', ...process.argv.slice(2)].join(' ');
  const report = renderReport({
    machine, startedAt, durationMs: Date.now() - t0, command, quick: args.quick, reps: args.reps,
    scenarios: chosen.map((s) => ({ name: s.name, title: s.title })), lines, notes,
  });
  fs.writeFileSync(out, report);
  log(`wrote ${out} (${((Date.now() - t0) / 60_000).toFixed(1)} min in all)`);
  return 0;
}

let settled = false;
main().then(
  (code) => {
    settled = true;
    process.exit(code);
  },
  (err) => {
    settled = true;
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    killAllClustersNow();
    killAllPeersNow();
    process.exit(1);
  },
);
