/**
 * The handle of a task claimed ahead (Executor.startWhenFree): nothing runs
 * until a slot frees. Until then it answers like a process that has printed
 * nothing; once the executor attaches the real handle it forwards to it (log
 * followers subscribed before the start are moved over and woken). Stopped
 * before the start, it settles at once with `stoppedFor` and no exit: the
 * executor records a cancel, or hands the task back, without running it.
 */
import { RunHandle, RunResult, StopReason } from '../runner/types';

export function notStarted(reason: StopReason): RunResult {
  const now = Date.now();
  return {
    timedOut: false, stoppedFor: reason, stdoutTail: Buffer.alloc(0), stderrTail: Buffer.alloc(0),
    stdoutTruncated: false, stderrTruncated: false, stdoutBytes: 0, stderrBytes: 0, startedAtMs: now, finishedAtMs: now,
  };
}

export class PendingHandle implements RunHandle {
  readonly done: Promise<RunResult>;
  private settle: (r: RunResult | Promise<RunResult>) => void = () => undefined;
  private real: RunHandle | undefined;
  private stopped = false;
  /** Followers subscribed before the start, and their unsubscribe from the real handle once attached. */
  private readonly followers = new Map<() => void, (() => void) | undefined>();

  /** onStop: called once if stopped before the start (the executor drops it from its backlog). */
  constructor(private readonly onStop: () => void) {
    this.done = new Promise((resolve) => (this.settle = resolve));
  }

  get pid(): number | undefined {
    return this.real?.pid;
  }

  get logBytes(): number {
    return this.real?.logBytes ?? 0;
  }

  stop(reason: StopReason, graceMs: number): void {
    if (this.real) return this.real.stop(reason, graceMs);
    if (this.stopped) return;
    this.stopped = true;
    this.onStop();
    this.settle(notStarted(reason));
    for (const fn of this.followers.keys()) fn();
  }

  onProgress(fn: () => void): () => void {
    if (this.real) return this.real.onProgress(fn);
    this.followers.set(fn, undefined);
    return () => {
      this.followers.get(fn)?.();
      this.followers.delete(fn);
    };
  }

  /** The task started: forward to its handle from now on. */
  attach(real: RunHandle): void {
    if (this.stopped || this.real) throw new Error('PendingHandle attached twice or after a stop');
    this.real = real;
    this.settle(real.done);
    for (const fn of [...this.followers.keys()]) {
      this.followers.set(fn, real.onProgress(fn));
      fn();
    }
  }
}
