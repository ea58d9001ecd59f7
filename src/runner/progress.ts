/** Tells a handle's progress listeners (RunHandle.onProgress); one that throws is logged, never the runner's problem. */
export function notifyProgress(listeners: Iterable<() => void>, log?: (msg: string) => void): void {
  for (const fn of listeners) {
    try {
      fn();
    } catch (err) {
      log?.(`progress listener threw: ${(err as Error).message}`);
    }
  }
}
