/**
 * Virtual time for the simulated cluster: events run in time order (ties in
 * the order they were scheduled), and nothing else advances the clock, so a
 * run depends only on its seed.
 */
interface Event {
  at: number;
  seq: number;
  run: () => void;
}

export class Clock {
  now = 0;
  private seq = 0;
  private heap: Event[] = [];

  /** Run `run` after `delayMs` of virtual time (0: after what is due now). */
  after(delayMs: number, run: () => void): void {
    this.push({ at: this.now + Math.max(0, delayMs), seq: this.seq++, run });
  }

  /** Runs events until none is left, `until` returns true, or the clock passes limitMs. */
  runUntil(until: () => boolean, limitMs: number): void {
    while (this.heap.length > 0 && !until()) {
      const e = this.pop();
      if (e.at > limitMs) {
        this.now = limitMs;
        return;
      }
      this.now = e.at;
      e.run();
    }
  }

  private push(e: Event): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i], h[p])) break;
      [h[i], h[p]] = [h[p], h[i]];
      i = p;
    }
  }

  private pop(): Event {
    const h = this.heap;
    const top = h[0];
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l], h[m])) m = l;
        if (r < h.length && before(h[r], h[m])) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m], h[i]];
        i = m;
      }
    }
    return top;
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
