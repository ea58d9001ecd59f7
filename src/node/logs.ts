/**
 * Serves a task's output. Where it comes from:
 *  - running here: the attempt's framed log file, followed as it grows;
 *  - running elsewhere: proxied from the owning node;
 *  - finished: the local file if this node ran the last attempt, else the
 *    retained tail stored with the task (which outlives its node).
 * With follow, it streams attempt after attempt until the task is terminal.
 * Nothing is buffered beyond one read chunk, whatever the task prints.
 * With TLS, the proxy calls its peers with this node's certificate (peers
 * serve one attempt's log only to node certificates).
 *
 * A log file that holds less than the attempt printed (its disk filled up,
 * or it could not be written at all) is completed from the retained tail:
 * exactly, when the tail reaches back to where the file stops; otherwise
 * with a notice of how many bytes were lost before the tail.
 */
import { existsSync } from 'fs';
import * as grpc from '@grpc/grpc-js';
import { LogChunk, LogStream, LoomClient, Task, TaskState } from '../gen/loom';
import { LoomError } from '../core/errors';
import { isTerminal } from '../core/lifecycle';
import { TaskQueries } from '../store/queries';
import { nextChange } from '../etcd/key-watch';
import { Kv } from '../etcd/client';
import { NodeDirectory } from '../store/node-directory';
import { readFrames, STREAM_STDERR } from '../runner/log-file';
import { Executor, legacyLogPathFor, logPathFor } from './executor';
import { fromGrpcError } from '../wire/grpc-errors';

export interface LogDeps {
  kv: Kv;
  queries: TaskQueries;
  executor: Executor;
  directory: NodeDirectory;
  self: string;
  dataDir: string;
  /** Credentials for calls to other nodes (TLS: this node's certificate); default plaintext. */
  credentials?: grpc.ChannelCredentials;
}

type Write = (chunk: LogChunk) => Promise<void>;

const chunk = (stream: number, data: Buffer): LogChunk => ({
  stream: stream === STREAM_STDERR ? LogStream.STDERR : LogStream.STDOUT,
  data,
  notice: '',
  attempt: 0,
});
const notice = (text: string): LogChunk => ({ stream: LogStream.STDERR, data: Buffer.alloc(0), notice: text, attempt: 0 });

/** Every chunk written through it carries `attempt` (a client resuming a follow counts bytes per attempt). */
const ofAttempt = (write: Write, attempt: number): Write => (c) => write({ ...c, attempt });

/** Bytes of each stream served from a log file so far. */
interface Served {
  out: number;
  err: number;
}

/** What the end of an attempt's output was: bytes printed per stream and the tails kept. */
export interface OutputEnd {
  stdoutBytes: number;
  stderrBytes: number;
  stdout: Buffer;
  stderr: Buffer;
}

/**
 * The part of a stream a log file lacks, from the stream's tail: `fromFile`
 * bytes were served of `total` printed, and `tail` holds the last bytes
 * printed. Undefined when nothing is missing (or the total is unknown: 0).
 * `lost` counts bytes neither the file nor the tail has.
 */
export function missingPart(fromFile: number, total: number, tail: Buffer): { data: Buffer; lost: number } | undefined {
  if (total <= fromFile) return undefined;
  const tailStart = total - tail.length;
  if (tailStart <= fromFile) return { data: tail.subarray(fromFile - tailStart), lost: 0 };
  return { data: tail, lost: tailStart - fromFile };
}

export class LogService {
  private readonly peers = new Map<string, InstanceType<typeof LoomClient>>();

  constructor(private readonly deps: LogDeps) {}

  close(): void {
    for (const c of this.peers.values()) c.close();
  }

  async stream(id: string, follow: boolean, attempt: number, write: Write, signal: AbortSignal): Promise<void> {
    if (attempt > 0) return this.localAttempt(id, attempt, follow, ofAttempt(write, attempt), signal);
    let streamedAttempt = 0;
    for (;;) {
      const held = await this.deps.queries.getShared(id, signal);
      const t = held.task;
      const w = ofAttempt(write, t.attempt);
      if (isTerminal(t.state)) {
        if (t.attempt > streamedAttempt) await this.finished(t, w, signal);
        return;
      }
      if (t.state === TaskState.RUNNING && t.attempt > streamedAttempt) {
        const local = this.deps.executor.handle(id);
        if (t.node === this.deps.self && local && local.attempt === t.attempt) {
          await this.followLocal(t, local.handle, follow, w, signal);
        } else if (t.node === this.deps.self) {
          await this.fromFile(this.logFile(t.id, t.attempt), w, signal);
        } else {
          await this.proxy(t, follow, w, signal);
        }
        streamedAttempt = t.attempt;
        if (!follow) return;
      } else if (!follow) {
        return;
      }
      // Wait for the record to move on (next attempt, or a terminal state).
      await nextChange(this.deps.kv, this.deps.queries.keys.task(id), held.revision, signal);
    }
  }

  /** One attempt this node ran (a peer proxying for its client asks this). */
  private async localAttempt(id: string, attempt: number, follow: boolean, write: Write, signal: AbortSignal): Promise<void> {
    const local = this.deps.executor.handle(id);
    if (local && local.attempt === attempt) {
      const t = (await this.deps.queries.get(id, signal)).task;
      await this.followLocal(t, local.handle, follow, write, signal);
    } else {
      const served = { out: 0, err: 0 };
      await this.fromFile(this.logFile(id, attempt), write, signal, 0, served);
      await this.completeFromRecord(id, attempt, served, write);
    }
  }

  /** Completes a finished attempt's log from the tail in its record (if the record is of that attempt). */
  private async completeFromRecord(id: string, attempt: number, served: Served, write: Write): Promise<void> {
    const tail = await this.deps.queries.tail(id);
    if (!tail || tail.attempt !== attempt) return;
    await this.complete(served, {
      stdoutBytes: tail.stdoutBytes, stderrBytes: tail.stderrBytes, stdout: Buffer.from(tail.stdout), stderr: Buffer.from(tail.stderr),
    }, write);
  }

  /** Writes what the log file lacked of each stream (see missingPart). */
  private async complete(served: Served, end: OutputEnd, write: Write): Promise<void> {
    const parts = [
      { name: 'stdout', stream: 1, part: missingPart(served.out, end.stdoutBytes, end.stdout) },
      { name: 'stderr', stream: 2, part: missingPart(served.err, end.stderrBytes, end.stderr) },
    ];
    for (const { name, stream, part } of parts) {
      if (!part) continue;
      const lost = part.lost > 0 ? `; ${part.lost} bytes before the last ${part.data.length} are lost` : '';
      await write(notice(`the log file on node ${this.deps.self} is missing the end of ${name} (was its disk full?): the rest comes from the retained tail${lost}`));
      await write(chunk(stream, part.data));
    }
  }

  private async finished(t: Task, write: Write, signal: AbortSignal): Promise<void> {
    const path = this.logFile(t.id, t.attempt);
    if (t.node === this.deps.self && existsSync(path)) {
      const served = { out: 0, err: 0 };
      await this.fromFile(path, write, signal, 0, served);
      await this.completeFromRecord(t.id, t.attempt, served, write);
      return;
    }
    const tail = await this.deps.queries.tail(t.id);
    if (!tail) return;
    if (tail.stdoutTruncated || tail.stderrTruncated) {
      await write(notice(`node ${t.node} is not serving this task's full log; showing the retained tail (last 64 KiB of each stream)`));
    }
    if (tail.stdout.length) await write(chunk(1, Buffer.from(tail.stdout)));
    if (tail.stderr.length) await write(chunk(2, Buffer.from(tail.stderr)));
  }

  /** An attempt's log file here: the flat layout's, or a file an older version wrote. */
  private logFile(id: string, attempt: number): string {
    const flat = logPathFor(this.deps.dataDir, id, attempt);
    if (existsSync(flat)) return flat;
    const legacy = legacyLogPathFor(this.deps.dataDir, id, attempt);
    return existsSync(legacy) ? legacy : flat;
  }

  private async fromFile(path: string, write: Write, signal: AbortSignal, fromOffset = 0, served?: Served): Promise<number> {
    let offset = fromOffset;
    if (!existsSync(path)) return offset;
    for await (const f of readFrames(path, { fromOffset: offset, signal })) {
      await write(chunk(f.stream, f.data));
      if (served) {
        if (f.stream === STREAM_STDERR) served.err += f.data.length;
        else served.out += f.data.length;
      }
      offset = f.endOffset;
    }
    return offset;
  }

  private async followLocal(
    t: Task,
    handle: NonNullable<ReturnType<Executor['handle']>>['handle'],
    follow: boolean,
    write: Write,
    signal: AbortSignal,
  ): Promise<void> {
    // The attempt running here now: always the flat layout.
    const path = logPathFor(this.deps.dataDir, t.id, t.attempt);
    let offset = 0;
    const served = { out: 0, err: 0 };
    let exited = false;
    handle.done.then(() => (exited = true));
    while (!signal.aborted) {
      let wake: () => void = () => undefined;
      const progressed = new Promise<void>((r) => (wake = r));
      const offProgress = handle.onProgress(() => wake());
      // A follower that goes away frees its stream now, not at the task's next output.
      signal.addEventListener('abort', wake, { once: true });
      const off = () => {
        offProgress();
        signal.removeEventListener('abort', wake);
      };
      const doneNow = exited;
      offset = await this.fromFile(path, write, signal, offset, served);
      if (!follow || doneNow) {
        off();
        if (doneNow && !signal.aborted) {
          const r = await handle.done;
          await this.complete(served, { stdoutBytes: r.stdoutBytes ?? 0, stderrBytes: r.stderrBytes ?? 0, stdout: r.stdoutTail, stderr: r.stderrTail }, write);
        }
        return;
      }
      if (handle.logBytes <= offset && !exited) await Promise.race([progressed, handle.done]);
      off();
    }
  }

  private client(t: Task): InstanceType<typeof LoomClient> {
    const info = this.deps.directory.get(t.node);
    if (!info) throw new LoomError('UNAVAILABLE', `node ${t.node} is not live`);
    let c = this.peers.get(info.address);
    if (!c) {
      c = new LoomClient(info.address, this.deps.credentials ?? grpc.credentials.createInsecure());
      this.peers.set(info.address, c);
    }
    return c;
  }

  private async proxy(t: Task, follow: boolean, write: Write, signal: AbortSignal): Promise<void> {
    let client;
    try {
      client = this.client(t);
    } catch {
      await write(notice(`node ${t.node} is not reachable; output will show once the task moves or finishes`));
      return;
    }
    const call = client.logs({ id: t.id, follow, attempt: t.attempt });
    const cancel = () => call.cancel();
    signal.addEventListener('abort', cancel, { once: true });
    try {
      for await (const msg of call as AsyncIterable<LogChunk>) {
        await write(msg);
      }
    } catch (err) {
      if (!signal.aborted) {
        await write(notice(`lost the log stream from node ${t.node}: ${fromGrpcError(err, `${t.node} (${this.deps.directory.get(t.node)?.address ?? '?'})`).message}`));
      }
    } finally {
      signal.removeEventListener('abort', cancel);
    }
  }
}
