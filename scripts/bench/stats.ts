/** Small, dependency-free statistics for benchmark figures. */

export interface Spread {
  /** Median of the values. */
  median: number;
  min: number;
  max: number;
  /** First and third quartiles (linear interpolation, as R type 7). */
  q1: number;
  q3: number;
  n: number;
}

function sorted(values: readonly number[]): number[] {
  if (values.length === 0) throw new Error('no values');
  return [...values].sort((a, b) => a - b);
}

/** Quantile q in [0, 1] by linear interpolation between closest ranks. */
export function quantile(values: readonly number[], q: number): number {
  const s = sorted(values);
  const pos = (s.length - 1) * Math.min(1, Math.max(0, q));
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/**
 * Percentile p in (0, 100] by the nearest-rank method: the smallest value
 * with at least p % of the values at or below it (p99 of 500 samples is the
 * 495th smallest).
 */
export function percentile(values: readonly number[], p: number): number {
  const s = sorted(values);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length, Math.max(1, rank)) - 1];
}

export function spread(values: readonly number[]): Spread {
  const s = sorted(values);
  return {
    median: quantile(s, 0.5),
    min: s[0],
    max: s[s.length - 1],
    q1: quantile(s, 0.25),
    q3: quantile(s, 0.75),
    n: s.length,
  };
}

/** Rounds for display and JSON: 3 significant decimals below 10, fewer above. */
export function round(x: number): number {
  if (!Number.isFinite(x)) return x;
  const a = Math.abs(x);
  const digits = a >= 1000 ? 0 : a >= 100 ? 1 : a >= 10 ? 2 : 3;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
