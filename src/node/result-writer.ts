/**
 * Batches result writes: while one finish transaction is in flight, results
 * that arrive wait and go together in the next one (nested transactions, so
 * each commits or fails on its own). Per-item promises report the outcome.
 *
 * A result is sent on the next turn of the event loop, not at once: the slot
 * its task freed wakes the steal loop in the same turn, and if that loop
 * claims a task it takes the pending results into its claim transaction
 * (take / settle), so the node records one task and starts the next in one
 * round trip.
 *
 * Results share the node's WriteLane with the claims: while a claim (or an
 * earlier result batch) is out, results wait, and the next claim takes them
 * or, if none comes, they go on their own once the lane is free.
 */
import { BATCH_CHUNK, FinishItem, NodeIdentity, TaskTransitions } from '../store/transitions';
import { WriteLane } from './write-lane';

export interface PendingResult extends FinishItem {
  me: NodeIdentity;
  queuedAtMs: number;
  resolve: (ok: boolean) => void;
  reject: (err: unknown) => void;
}

/** Longest a result waits for a claim to ride in (see the hold option). */
export const HOLD_MAX_MS = 20;

export class ResultWriter {
  private queue: PendingResult[] = [];
  private flushing = false;
  private scheduled = false;
  /** Another turn once the lane is free (one function, so asking twice waits once). */
  private readonly retry = () => this.schedule();
  private holdTimer: NodeJS.Timeout | undefined;

  /**
   * hold: true while a claim transaction is sure to come soon (the node has
   * tasks claimed ahead queued for its slots, and claims again once they run
   * low): results then wait for it, up to HOLD_MAX_MS, instead of going in a
   * transaction of their own.
   */
  constructor(
    private readonly transitions: TaskTransitions,
    private readonly lane = new WriteLane(),
    private readonly hold: () => boolean = () => false,
  ) {}

  /** Look again (the hold may have ended). */
  kick(): void {
    if (this.queue.length > 0) this.schedule();
  }

  write(held: FinishItem['held'], outcome: FinishItem['outcome'], me: NodeIdentity): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ held, outcome, me, resolve, reject, queuedAtMs: Date.now() });
      this.schedule();
    });
  }

  /**
   * Hands up to `max` pending results written under `lease` to a caller that
   * records them in its own transaction; it must settle each one (resolve
   * with whether it committed, or reject on an error).
   */
  take(lease: string, max: number): PendingResult[] {
    if (max <= 0 || this.queue.length === 0) return [];
    const taken: PendingResult[] = [];
    const rest: PendingResult[] = [];
    for (const p of this.queue) {
      if (p.me.lease === lease && taken.length < max) taken.push(p);
      else rest.push(p);
    }
    this.queue = rest;
    return taken;
  }

  private schedule(): void {
    if (this.flushing || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  /** Sends one batch if the lane is free; otherwise waits for it. More queued: another turn after. */
  private async flush(): Promise<void> {
    if (this.flushing || this.queue.length === 0) return;
    if (this.hold()) {
      const waitMs = this.queue[0].queuedAtMs + HOLD_MAX_MS - Date.now();
      if (waitMs > 0) {
        if (!this.holdTimer) {
          this.holdTimer = setTimeout(() => {
            this.holdTimer = undefined;
            this.schedule();
          }, waitMs);
        }
        return;
      }
    }
    if (!this.lane.tryAcquire(this.retry)) return;
    this.flushing = true;
    try {
      const batch = this.take(this.queue[0].me.lease, BATCH_CHUNK);
      try {
        const results = await this.transitions.finish(batch, batch[0].me);
        batch.forEach((p, i) => p.resolve(results[i]));
      } catch (err) {
        batch.forEach((p) => p.reject(err));
      }
    } finally {
      this.flushing = false;
      // Release first: a claim waiting for the lane is woken ahead of our next
      // turn, and takes what is left into its own transaction.
      this.lane.release();
      if (this.queue.length > 0) this.schedule();
    }
  }
}
