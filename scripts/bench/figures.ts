/** What a scenario measures (figures), and how a figure becomes a JSON line. */
import { round, spread } from './stats';

export interface Target {
  op: '>=' | '<=';
  value: number;
  /** The target as the issue states it, e.g. "≥ 600 tasks/s". */
  text: string;
  /** Which statistic the target is judged on (default: the median). */
  on?: 'median' | 'max' | 'min';
}

export interface Figure {
  scenario: string;
  /** Stable machine name, unique within the scenario. */
  figure: string;
  /** Human label for the report. */
  label: string;
  unit: string;
  /** One value per repetition (or per sample, see note). */
  values: number[];
  target?: Target;
  note?: string;
  /** Extra context printed in the JSON line (sizes, topology, ...). */
  extra?: Record<string, unknown>;
}

export interface FigureLine {
  scenario: string;
  figure?: string;
  unit?: string;
  median?: number;
  min?: number;
  max?: number;
  q1?: number;
  q3?: number;
  reps?: number;
  values?: number[];
  target?: string;
  met?: boolean;
  note?: string;
  error?: string;
  label?: string;
  [k: string]: unknown;
}

export function judge(values: number[], target: Target): boolean {
  const s = spread(values);
  const x = target.on === 'max' ? s.max : target.on === 'min' ? s.min : s.median;
  return target.op === '>=' ? x >= target.value : x <= target.value;
}

export function toLine(f: Figure): FigureLine {
  if (f.values.length === 0) {
    return { scenario: f.scenario, figure: f.figure, label: f.label, error: f.note ?? 'no value measured' };
  }
  const s = spread(f.values);
  const line: FigureLine = {
    scenario: f.scenario,
    figure: f.figure,
    unit: f.unit,
    median: round(s.median),
    min: round(s.min),
    max: round(s.max),
    q1: round(s.q1),
    q3: round(s.q3),
    reps: s.n,
    values: f.values.map(round),
  };
  if (f.target) {
    line.target = f.target.text + (f.target.on && f.target.on !== 'median' ? ` (on the ${f.target.on})` : '');
    line.met = judge(f.values, f.target);
  }
  if (f.note) line.note = f.note;
  if (f.extra) Object.assign(line, f.extra);
  line.label = f.label;
  return line;
}

export function errorLine(scenario: string, err: unknown, figure?: string): FigureLine {
  const message = err instanceof Error ? err.message : String(err);
  return figure ? { scenario, figure, error: message } : { scenario, error: message };
}
