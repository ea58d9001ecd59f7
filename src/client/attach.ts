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
import { sleep } from '../core/sleep';

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

/**
 * Byte offsets already written, per attempt and stream. A resumed Logs call
 * replays the output from the start of the attempt running then (the same
 * node, or another one after a failover, possibly already at a later
 * attempt); what was written before is skipped. Nodes that predate the
 * attempt field send 0 for every chunk: counted as one attempt, as before.
 */
export class Resume {
  private written = new Map<number, { out: number; err: number }>();
  private seen = new Map<number, { out: number; err: number }>();
  private notices = { written: 0, seen: 0 };

  restart(): void {
    this.seen.clear();
    this.notices.seen = 0;
  }

  /** The part of `chunk` not yet written, or undefined if nothing is new. */
  fresh(chunk: LogChunk): LogChunk | undefined {
    let notice = '';
    if (chunk.notice) {
      this.notices.seen++;
      if (this.notices.seen > this.notices.written) {
        this.notices.written = this.notices.seen;
        notice = chunk.notice;
      }
    }
    let data = Buffer.alloc(0);
    const len = chunk.data?.length ?? 0;
    const attempt = chunk.attempt ?? 0;
    if (len > 0) {
      const key = chunk.stream === LogStream.STDERR ? 'err' : 'out';
      const seen = at(this.seen, attempt);
      const written = at(this.written, attempt);
      const start = seen[key];
      seen[key] += len;
      if (seen[key] > written[key]) {
        data = Buffer.from(chunk.data.subarray(Math.max(0, written[key] - start)));
        written[key] = seen[key];
      }
    }
    if (!notice && data.length === 0) return undefined;
    return { stream: chunk.stream, data, notice, attempt };
  }
}

function at(m: Map<number, { out: number; err: number }>, attempt: number): { out: number; err: number } {
  let v = m.get(attempt);
  if (!v) m.set(attempt, (v = { out: 0, err: 0 }));
  return v;
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
        `loom: ${(err as Error).message}; retrying in ${delay / 1000}s${api.addresses.length > 1 ? ` through ${api.address}` : ''} (${failures}/${RETRY_DELAYS_MS.length})\n`,
      );
      await sleep(delay, opts.signal);
      if (opts.signal.aborted) throw new LoomError('CANCELLED', 'cancelled');
    }
  }
}

/** How long an attached run waits in the queue before it says why, and how often it asks again. */
export const QUEUED_NOTICE_MS = 2000;

/**
 * While the task stays queued, says why on stderr ("loom: queued: no live node
 * has a Docker engine"): first after QUEUED_NOTICE_MS, then whenever the
 * reason changes. The reason is the node's (Get explains a queued task no live
 * node can run; see core/fit.ts explainUnplaceable); a task that merely waits
 * for a free slot has none and nothing is printed. Ends when the task leaves
 * the queue or `signal` aborts; never throws (a failed Get is asked again).
 */
export async function reportQueued(api: LoomApi, id: string, io: AttachIo, signal: AbortSignal, everyMs = QUEUED_NOTICE_MS): Promise<void> {
  let said = '';
  for (;;) {
    await sleep(everyMs, signal);
    if (signal.aborted) return;
    let task: Task;
    try {
      task = await api.get(id, signal);
    } catch {
      if (signal.aborted) return;
      continue;
    }
    if (signal.aborted || task.state !== TaskState.QUEUED) return;
    const why = task.reason.startsWith('waiting: ') ? task.reason.slice('waiting: '.length) : '';
    if (why && why !== said) {
      said = why;
      await writeOut(io.stderr, `loom: queued: ${why}\n`);
    }
  }
}
