/**
 * `npm run sim`: the simulated cluster (see README.md beside this file).
 *
 *   npm run sim                                   10 nodes, 5,000 tasks, seed 1
 *   npm run sim -- --nodes 3,10,20,50             one run per node count, a table
 *   npm run sim -- --plant claim-without-compare  the checker must report violations
 *   npm run sim -- --nodes 500 --no-thief-order   every thief at once, to compare
 *   npm run sim -- --json
 *
 * Exit status: 0 no violations, 1 violations, 2 bad arguments.
 */
import yargs from 'yargs';
import { runSimulation, SIM_DEFAULTS, SimResult } from './run';
import { Plant } from './store';

const PLANTS: Plant[] = ['none', 'claim-without-compare', 'requeue-live-lease'];

function parseNodeCounts(text: string): number[] {
  const counts = text.split(',').map((s) => Number(s.trim()));
  if (counts.length === 0 || counts.some((n) => !Number.isInteger(n) || n < 1 || n > 1000)) {
    throw new Error(`--nodes: expected node counts between 1 and 1000, comma-separated; got "${text}"`);
  }
  return counts;
}

function row(r: SimResult): string {
  const o = r.options;
  return [
    String(o.nodes).padStart(5),
    String(r.results).padStart(7),
    r.tasksPerVirtualSecond.toFixed(0).padStart(8),
    r.claimTxnsPerTask.toFixed(3).padStart(9),
    r.lostClaimsPerTask.toFixed(3).padStart(9),
    r.startsPerTask.toFixed(3).padStart(8),
    String(r.kills).padStart(5),
    String(r.violations.length).padStart(10),
    (r.wallMs / 1000).toFixed(1).padStart(7),
  ].join(' ');
}

function main(argv: string[]): number {
  const a = yargs(argv)
    .scriptName('npm run sim --')
    .usage('$0 [options]\n\nA seeded, simulated loom cluster on a virtual clock; see scripts/sim/README.md.')
    .option('nodes', { type: 'string', default: String(SIM_DEFAULTS.nodes), describe: 'node count, or several comma-separated (one run each)' })
    .option('slots', { type: 'number', default: SIM_DEFAULTS.slots })
    .option('tasks', { type: 'number', default: SIM_DEFAULTS.tasks })
    .option('seed', { type: 'number', default: SIM_DEFAULTS.seed })
    .option('deaths', { type: 'number', default: SIM_DEFAULTS.deaths, describe: 'node deaths (each restarts 1-3 s later)' })
    .option('lost-replies', { type: 'number', default: SIM_DEFAULTS.lostReplies, describe: 'chance a claim reply is lost' })
    .option('slow-periods', { type: 'number', default: SIM_DEFAULTS.slowPeriods, describe: '200 ms periods of 10x slower etcd' })
    .option('thief-order', { type: 'boolean', default: SIM_DEFAULTS.thiefOrder, describe: 'thieves of a task take turns in its order (--no-thief-order: all at once, with jitter)' })
    .option('turn-scale', { type: 'boolean', default: SIM_DEFAULTS.turnScale, describe: 'turns stretch while claims commit slowly (--no-turn-scale: fixed turns)' })
    .option('thief-step-ms', { type: 'number', default: SIM_DEFAULTS.thiefStepMs, describe: 'length of one thief\'s turn' })
    .option('turn-guard-ms', { type: 'number', default: SIM_DEFAULTS.turnGuardMs, describe: 'end of each turn in which its owner no longer claims' })
    .option('plant', { choices: PLANTS, default: 'none' as Plant, describe: 'remove one store compare on purpose' })
    .option('json', { type: 'boolean', default: false })
    .strict()
    .check((v) => {
      for (const k of ['slots', 'tasks', 'deaths', 'slow-periods', 'thief-step-ms', 'turn-guard-ms'] as const) {
        const n = v[k] as number;
        if (!Number.isInteger(n) || n < (k === 'slots' || k === 'tasks' ? 1 : 0)) throw new Error(`--${k}: expected a whole number, got ${n}`);
      }
      if (v['turn-guard-ms'] >= v['thief-step-ms']) throw new Error(`--turn-guard-ms must be shorter than --thief-step-ms (a turn needs time to claim in)`);
      const p = v['lost-replies'] as number;
      if (!(p >= 0 && p < 1)) throw new Error(`--lost-replies: expected a chance in [0, 1), got ${p}`);
      parseNodeCounts(v.nodes);
      return true;
    })
    .fail((msg, err) => {
      throw new UsageError(err?.message ?? msg);
    })
    .help()
    .parseSync();

  const results: SimResult[] = [];
  if (!a.json) console.log('nodes results tasks/s claims/t   lost/t starts/t kills violations  wall s');
  for (const nodes of parseNodeCounts(a.nodes)) {
    const r = runSimulation({
      nodes,
      slots: a.slots,
      tasks: a.tasks,
      seed: a.seed,
      deaths: a.deaths,
      lostReplies: a['lost-replies'],
      slowPeriods: a['slow-periods'],
      plant: a.plant,
      thiefOrder: a['thief-order'],
      turnScale: a['turn-scale'],
      thiefStepMs: a['thief-step-ms'],
      turnGuardMs: a['turn-guard-ms'],
    });
    results.push(r);
    if (!a.json) {
      console.log(row(r));
      for (const v of r.violations.slice(0, 5)) console.log(`      violation: ${v}`);
    }
  }
  if (a.json) console.log(JSON.stringify({ results }, null, 2));
  else console.log('(tasks/s in virtual time; claims/t = claim transactions per task, lost/t = claims that lost the race per task)');
  return results.some((r) => r.violations.length > 0) ? 1 : 0;
}

class UsageError extends Error {}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  console.error(`sim: ${err.message}`);
  process.exitCode = 2;
}
