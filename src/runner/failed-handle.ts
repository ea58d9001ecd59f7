/** A handle for an attempt that could not start at all (or must not: fenced). */
import { RunHandle, RunResult, StopReason } from './types';

export function failedHandle(error: string, errorExitCode: number, stoppedFor?: StopReason, engineUnavailable?: boolean): RunHandle {
  const now = Date.now();
  const done = Promise.resolve<RunResult>({
    timedOut: false, error, errorExitCode, stoppedFor, stdoutTail: Buffer.alloc(0), stderrTail: Buffer.alloc(0),
    stdoutTruncated: false, stderrTruncated: false, startedAtMs: now, finishedAtMs: now,
    ...(engineUnavailable ? { engineUnavailable } : {}),
  });
  return { pid: undefined, done, stop: () => undefined, logBytes: 0, onProgress: () => () => undefined };
}
