/**
 * Batches result writes: while one finish transaction is in flight, results
 * that arrive wait and go together in the next one (nested transactions, so
 * each commits or fails on its own). Per-item promises report the outcome.
 */
import { HeldTask, NodeIdentity, Outcome, TaskTransitions } from '../store/transitions';

interface Pending {
  held: HeldTask;
  outcome: Outcome;
  me: NodeIdentity;
  resolve: (ok: boolean) => void;
  reject: (err: unknown) => void;
}

const MAX_BATCH = 128;

export class ResultWriter {
  private queue: Pending[] = [];
  private flushing = false;

  constructor(private readonly transitions: TaskTransitions) {}

  write(held: HeldTask, outcome: Outcome, me: NodeIdentity): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ held, outcome, me, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const lease = this.queue[0].me.lease;
        const batch: Pending[] = [];
        const rest: Pending[] = [];
        for (const p of this.queue) {
          if (p.me.lease === lease && batch.length < MAX_BATCH) batch.push(p);
          else rest.push(p);
        }
        this.queue = rest;
        try {
          const results = await this.transitions.finish(batch, batch[0].me);
          batch.forEach((p, i) => p.resolve(results[i]));
        } catch (err) {
          batch.forEach((p) => p.reject(err));
        }
      }
    } finally {
      this.flushing = false;
    }
  }
}
