/** What main gives each scenario. */
import { Budget } from './budget';
import { Figure } from './figures';

export interface BenchContext {
  /** Small sizes for a smoke run. */
  quick: boolean;
  /** Repetitions per figure. */
  reps: number;
  /** Progress for humans (stderr). */
  log: (msg: string) => void;
  /** Records a figure and prints its JSON line. */
  emit: (f: Figure) => void;
  /** Records a figure that could not be measured, with the reason. */
  fail: (scenario: string, figure: string, label: string, reason: string) => void;
  /** A time budget of `seconds` (unlimited with --no-budget). */
  budget: (seconds: number) => Budget;
  /** Method notes and caveats shown under the scenario in BENCHMARKS.md. */
  note: (scenario: string, text: string) => void;
  /** --baseline: another build's loom.js that scenarios which compare builds also run. */
  baselineBin?: string;
}

export interface Scenario {
  name: string;
  title: string;
  /** Not part of a full run (too long for its 15 minutes): only with --only; reported in its own file. */
  onDemand?: boolean;
  run: (ctx: BenchContext) => Promise<void>;
}
