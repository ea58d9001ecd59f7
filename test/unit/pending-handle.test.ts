/**
 * PendingHandle: the handle of a task claimed ahead of a free slot, until
 * the executor starts it (attach) or it is stopped unstarted.
 */
import { PendingHandle } from '../../src/node/pending-handle';
import { RunHandle, RunResult, StopReason } from '../../src/runner/types';

function fakeRun() {
  let finish: (r: RunResult) => void = () => undefined;
  const listeners = new Set<() => void>();
  const stops: StopReason[] = [];
  const handle: RunHandle & { bytes: number } = {
    pid: 4242,
    bytes: 0,
    get logBytes() {
      return this.bytes;
    },
    done: new Promise<RunResult>((r) => (finish = r)),
    stop: (reason) => void stops.push(reason),
    onProgress: (fn) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
  const progress = () => listeners.forEach((fn) => fn());
  const result = { exitCode: 0, timedOut: false, stdoutTail: Buffer.alloc(0), stderrTail: Buffer.alloc(0), stdoutTruncated: false, stderrTruncated: false, startedAtMs: 1, finishedAtMs: 2 };
  return { handle, finish: () => finish(result), progress, listeners, stops, result };
}

describe('PendingHandle', () => {
  it('answers like a process that printed nothing, then forwards to the started one', async () => {
    const p = new PendingHandle(() => undefined);
    expect([p.pid, p.logBytes]).toEqual([undefined, 0]);
    const run = fakeRun();
    let woken = 0;
    const off = p.onProgress(() => woken++);
    p.attach(run.handle);
    expect(woken).toBe(1); // a follower waiting before the start is woken by it
    run.handle.bytes = 10;
    run.progress();
    expect([p.pid, p.logBytes, woken]).toEqual([4242, 10, 2]);
    off();
    expect(run.listeners.size).toBe(0); // the unsubscribe reaches the started handle
    p.stop('cancel', 100);
    expect(run.stops).toEqual(['cancel']);
    run.finish();
    expect(await p.done).toBe(run.result);
  });

  it('stopped before the start: settles at once without an exit, tells its owner once, and refuses a later start', async () => {
    let dropped = 0;
    const p = new PendingHandle(() => dropped++);
    let woken = 0;
    p.onProgress(() => woken++);
    p.stop('drain', 0);
    p.stop('shutdown', 0);
    const r = await p.done;
    expect([r.stoppedFor, r.exitCode, r.stdoutBytes, dropped, woken]).toEqual(['drain', undefined, 0, 1, 1]);
    expect(() => p.attach(fakeRun().handle)).toThrow(/after a stop/);
  });
});
