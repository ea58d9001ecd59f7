/**
 * Runs async work one at a time per key, in call order; different keys run
 * at once. For guarded etcd writes that only race with work of the same key
 * in this process too: queuing them here costs a wait, racing costs retries.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<void>>();

  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const mine = before.then(work);
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, settled);
    void settled.then(() => {
      if (this.tails.get(key) === settled) this.tails.delete(key);
    });
    return mine;
  }

  /** Keys with work queued or running (for tests). */
  get size(): number {
    return this.tails.size;
  }
}

/**
 * A short random pause before retrying a guarded write that lost to another
 * process's (up to 2 ms times the tries so far): nodes that lost together
 * do not all come back at the same moment and lose together again.
 */
export function retryPause(tries: number, random: () => number = Math.random): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 2 * Math.min(tries, 10))));
}
