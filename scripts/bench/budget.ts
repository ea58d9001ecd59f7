/**
 * Time budgets keep `npm run bench` bounded when the cluster is slower than
 * its targets: a scenario stops starting repetitions when the last one would
 * not fit, and a wait that runs out reports what was done by then (marked
 * partial) instead of hanging. `--no-budget` lifts every budget.
 */
import { BenchContext } from './context';

export class Budget {
  private readonly end: number;

  constructor(readonly seconds: number) {
    this.end = Date.now() + seconds * 1000;
  }

  /** The deadline (ms since epoch), but at least minMs from now. */
  deadline(minMs = 0): number {
    return Math.max(this.end, Date.now() + minMs);
  }

  leftMs(): number {
    return this.end - Date.now();
  }
}

/**
 * Runs fn for each repetition while the budget allows another one as long
 * as the longest so far; always runs the first. Notes skipped repetitions.
 */
export async function repeat<T>(ctx: BenchContext, scenario: string, what: string, budget: Budget, fn: (rep: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  let longest = 0;
  for (let rep = 0; rep < ctx.reps; rep++) {
    if (rep > 0 && budget.leftMs() < longest) {
      ctx.note(scenario, `${what}: ${rep} of ${ctx.reps} repetitions ran; the others did not fit the scenario's time budget of ${budget.seconds} s.`);
      ctx.log(`${scenario} ${what}: budget spent, ${rep} of ${ctx.reps} repetitions`);
      break;
    }
    const t0 = Date.now();
    out.push(await fn(rep));
    longest = Math.max(longest, Date.now() - t0);
  }
  return out;
}
