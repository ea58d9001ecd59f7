/**
 * Wait ms, or less if signal aborts first. Resolves either way (it never
 * rejects): the caller's loop checks its signal next, which is where it
 * decides what an abort means.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Resolves after the event loop has gone round once (timers and I/O ran):
 * for work that must not share one turn with much else like it.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
