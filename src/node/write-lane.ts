/**
 * One task-write transaction in flight per node: the steal loop's claims and
 * the result writer's results take turns on this lane instead of each sending
 * its own. Whatever piles up while a transaction is out goes together in the
 * next one, so under load a node records k results and claims k tasks in one
 * raft entry, where two independent senders (one for claims, one for results)
 * each sent small transactions side by side. etcd's cost is mostly per
 * transaction (a raft entry, a WAL fsync on every member, an apply), so
 * fewer, fuller transactions are what lets the cluster keep up.
 *
 * When idle, a transaction goes at once: an idle node's latency is unchanged.
 *
 *   lane.tryAcquire(retry) -> false: someone else's transaction is out;
 *                             retry runs (once) after the next release.
 */
export class WriteLane {
  private busy = false;
  /** Run at the next release, in the order first asked; a function asked twice runs once. */
  private waiters = new Set<() => void>();

  get idle(): boolean {
    return !this.busy;
  }

  /**
   * Takes the lane if it is free (the caller must release it when its
   * transaction settles); otherwise `retry`, if given, runs once after the
   * next release, however many times it was passed meanwhile.
   */
  tryAcquire(retry?: () => void): boolean {
    if (!this.busy) {
      this.busy = true;
      return true;
    }
    if (retry) this.waiters.add(retry);
    return false;
  }

  /** Frees the lane and runs what waited for it, in the order it asked. */
  release(): void {
    this.busy = false;
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const fn of waiters) fn();
  }
}
