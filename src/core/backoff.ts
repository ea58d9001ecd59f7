/** Waits of a retry loop that must not hammer a peer, nor retry in step with its neighbours. */

export interface BackoffOptions {
  /** First wait. */
  baseMs: number;
  /** Doubling stops here. */
  maxMs: number;
  /** Each wait is drawn from ±spread around its nominal value (0.2: 80-120 %). */
  spread: number;
}

/** The next wait each call: base, doubled per call up to max, each jittered by ±spread. */
export function backoff(o: BackoffOptions, rand: () => number = Math.random): () => number {
  let nominal = o.baseMs;
  return () => {
    const wait = Math.round(nominal * (1 - o.spread + 2 * o.spread * rand()));
    nominal = Math.min(nominal * 2, o.maxMs);
    return wait;
  };
}
