/**
 * Following a task to its end: stream its output (resuming after a broken
 * connection without repeating bytes), Wait for the final record, handle
 * Ctrl-C, and turn the result into a process exit status.
 */
import * as os from 'os';
import { LoomError } from '../core/errors';
import { TaskState } from '../core/lifecycle';
import { LogStream, type LogChunk, type Task } from '../gen/loom';
import type { LoomApi } from './client';

export interface AttachIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** Exit status of `loom run` / `loom wait` for a terminal task. */
export function taskExitStatus(task: Task): number {
  const hasCode = task.exitCode !== undefined && task.exitCode !== null;
  switch (task.state) {
    case TaskState.COMPLETED:
      return hasCode ? (task.exitCode as number) : 0;
    case TaskState.CANCELLED:
      return 130;
    case TaskState.LOST:
      return 5;
    case TaskState.FAILED: {
      if (hasCode && task.exitCode !== 0) return task.exitCode as number;
      if (timedOut(task)) return 124;
      if (task.signal) return 128 + signalNumber(task.signal);
      return /not found|ENOENT/i.test(task.reason) ? 127 : 126;
    }
    default:
      // Not terminal: the node answered Wait too early.
      return 1;
  }
}

function timedOut(task: Task): boolean {
  const lastOutcome = task.history[task.history.length - 1]?.outcome ?? '';
  return /time(d)?[\s-]?out/i.test(task.reason) || /^timeout/i.test(lastOutcome);
}

function signalNumber(signal: string): number {
  const name = signal.toUpperCase().startsWith('SIG') ? signal.toUpperCase() : `SIG${signal.toUpperCase()}`;
  const n = (os.constants.signals as Record<string, number | undefined>)[name];
  if (n !== undefined) return n;
  const numeric = Number(signal);
  return Number.isInteger(numeric) && numeric > 0 && numeric < 128 ? numeric : 0;
}

/** Writes and waits for the stream to drain if it asked us to. */
export function writeOut(stream: NodeJS.WritableStream, data: Uint8Array | string): Promise<void> {
  if (stream.write(data)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      stream.removeListener('drain', done);
      stream.removeListener('error', done);
      stream.removeListener('close', done);
      resolve();
    };
    stream.once('drain', done);
    stream.once('error', done);
    stream.once('close', done);
  });
}

/** Copies one chunk to the terminal: raw bytes, notices as `loom: ...`. */
export async function writeChunk(io: AttachIo, chunk: LogChunk): Promise<void> {
  if (chunk.notice) await writeOut(io.stderr, `loom: ${chunk.notice}\n`);
  if (chunk.data && chunk.data.length > 0) {
    await writeOut(chunk.stream === LogStream.STDERR ? io.stderr : io.stdout, chunk.data);
  }
}

const RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000];

function retryable(err: unknown): boolean {
  return (
    err instanceof LoomError &&
    (err.code === 'UNAVAILABLE' || err.code === 'FENCED' || err.code === 'DEADLINE_EXCEEDED')
  );
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Byte offsets already written per stream. A resumed Logs call replays the
 * task's output from the start; what was written before is skipped.
 */
class Resume {
  private written = { out: 0, err: 0, notices: 0 };
  private seen = { out: 0, err: 0, notices: 0 };

  restart(): void {
    this.seen = { out: 0, err: 0, notices: 0 };
  }

  /** The part of `chunk` not yet written, or undefined if nothing is new. */
  fresh(chunk: LogChunk): LogChunk | undefined {
    let notice = '';
    if (chunk.notice) {
      this.seen.notices++;
      if (this.seen.notices > this.written.notices) {
        this.written.notices = this.seen.notices;
        notice = chunk.notice;
      }
    }
    let data = Buffer.alloc(0);
    const len = chunk.data?.length ?? 0;
    if (len > 0) {
      const key = chunk.stream === LogStream.STDERR ? 'err' : 'out';
      const start = this.seen[key];
      this.seen[key] += len;
      if (this.seen[key] > this.written[key]) {
        data = Buffer.from(chunk.data.subarray(Math.max(0, this.written[key] - start)));
        this.written[key] = this.seen[key];
      }
    }
    if (!notice && data.length === 0) return undefined;
    return { stream: chunk.stream, data, notice };
  }
}

/**
 * Streams the task's output (unless `showLogs` is false) and returns the
 * terminal task. Retries on a lost connection with backoff, then throws
 * UNAVAILABLE. Aborting `signal` throws CANCELLED.
 */
export async function followTask(
  api: LoomApi,
  id: string,
  io: AttachIo,
  opts: { showLogs: boolean; signal: AbortSignal },
): Promise<Task> {
  const resume = new Resume();
  let failures = 0;
  for (;;) {
    try {
      if (opts.showLogs) {
        resume.restart();
        for await (const chunk of api.logs(id, true, opts.signal)) {
          failures = 0;
          const fresh = resume.fresh(chunk);
          if (fresh) await writeChunk(io, fresh);
        }
      }
      return await api.wait(id, opts.signal);
    } catch (err) {
      if (opts.signal.aborted) throw new LoomError('CANCELLED', 'cancelled');
      if (!retryable(err) || failures >= RETRY_DELAYS_MS.length) throw err;
      const delay = RETRY_DELAYS_MS[failures++];
      await writeOut(
        io.stderr,
        `loom: ${(err as Error).message}; retrying in ${delay / 1000}s (${failures}/${RETRY_DELAYS_MS.length})\n`,
      );
      await sleep(delay, opts.signal);
      if (opts.signal.aborted) throw new LoomError('CANCELLED', 'cancelled');
    }
  }
}
