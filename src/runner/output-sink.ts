/**
 * Where one attempt's output goes, whatever runs it (a process, a
 * container): framed into the attempt's log file (log-file.ts) with
 * backpressure, and the last bytes of each stream kept in TailBuffers for the
 * result.
 *
 * Backpressure: when the file's write queue passes LOG_HIGH_WATER_MARK the
 * sink calls opts.pause() (the runner stops reading the task's output, so a
 * task printing gigabytes blocks on its pipe instead of growing the node's
 * heap) and opts.resume() once the queue drained. A failing log file (disk
 * full, permissions) is logged once; output then only reaches the tails and
 * the task keeps running.
 *
 * Size cap (maxLogBytes, the node's --max-log-bytes): the file keeps the head
 * of the output up to the cap; what comes after is read (the task never
 * blocks on it) but only the tails keep it. At the end the file gets a note
 * on stderr saying how much of each stream was cut, then the retained tail of
 * each stream: head and tail, never a disk filled by one task.
 */
import * as fs from 'fs';
import * as path from 'path';
import { encodeFrameHeader, FRAME_HEADER_BYTES, MAX_FRAME_BYTES, STREAM_STDERR, STREAM_STDOUT } from './log-file';
import { TailBuffer } from './tail-buffer';

/** Bytes queued for the log file before the task's output is paused. */
export const LOG_HIGH_WATER_MARK = 512 * 1024;

export interface OutputSinkOptions {
  logPath: string;
  /** Bytes of each stream kept in memory (RunRequest.tailBytes). */
  tailBytes: number;
  /** Cap of the log file's size (framing included) before the end note and tails; undefined = none. */
  maxLogBytes?: number;
  /** Stop reading the task's output: the log file is behind. */
  pause: () => void;
  /** Read again: the log file caught up (or failed). */
  resume: () => void;
  /** More bytes reached the log file. */
  onProgress: () => void;
  log?: (message: string) => void;
}

/**
 * Creates the log file's directory, once per `made` set: log files of one
 * runner share a directory, and a mkdir per task is a blocking syscall on
 * the path from claim to spawn (0.3-0.6 ms here). Returns an error message
 * (a start failure for the task) or undefined. A directory removed while
 * the runner lives shows as a failing log file (output kept in the tails).
 */
export function prepareLogDir(logPath: string, made?: Set<string>): string | undefined {
  const logDir = path.dirname(logPath);
  if (made?.has(logDir)) return undefined;
  try {
    // Task output is private to the node's user: directories 0700, files 0600.
    fs.mkdirSync(logDir, { recursive: true, mode: 0o700 });
    made?.add(logDir);
    return undefined;
  } catch (err) {
    return `cannot create log directory ${logDir}: ${(err as Error).message}`;
  }
}

export class OutputSink {
  readonly stdoutTail: TailBuffer;
  readonly stderrTail: TailBuffer;
  /** Settles once the log file is closed (flushed, or failed), or at end() if none was opened. Never rejects. */
  readonly closed: Promise<void>;
  private markClosed!: () => void;
  /**
   * Opened at the first output: a task that prints nothing (most of a batch
   * of short tasks) costs no open and close, and has no log file.
   */
  private file: fs.WriteStream | undefined;
  private failed = false;
  private paused = false;
  private ended = false;
  private written = 0;
  /** Bytes handed to the file (framing included): what the cap counts. */
  private queued = 0;
  /** Bytes past the cap, per stream (index STREAM_STDOUT / STREAM_STDERR). */
  private readonly cut = [0, 0, 0];

  /** The log file's directory must exist (prepareLogDir); the file is created (or truncated) at the first output. */
  constructor(private readonly opts: OutputSinkOptions) {
    this.stdoutTail = new TailBuffer(opts.tailBytes);
    this.stderrTail = new TailBuffer(opts.tailBytes);
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
  }

  private open(): fs.WriteStream {
    const { opts } = this;
    const file = fs.createWriteStream(opts.logPath, { highWaterMark: LOG_HIGH_WATER_MARK, mode: 0o600 });
    file.on('error', (err) => {
      this.failed = true;
      opts.log?.(`log file ${opts.logPath}: ${err.message}`);
      this.resumeOutput();
    });
    file.once('close', () => this.markClosed());
    this.file = file;
    return file;
  }

  /** Bytes written to the log file so far (framing included). */
  get bytesWritten(): number {
    return this.written;
  }

  /**
   * Appends a chunk of stdout (STREAM_STDOUT) or stderr (STREAM_STDERR).
   * The chunk is not copied: the caller must not reuse its memory.
   */
  write(stream: typeof STREAM_STDOUT | typeof STREAM_STDERR, chunk: Buffer): void {
    if (chunk.length === 0) return;
    (stream === STREAM_STDOUT ? this.stdoutTail : this.stderrTail).push(chunk);
    if (this.failed || this.ended) return;
    const cap = this.opts.maxLogBytes;
    if (cap !== undefined) {
      const room = Math.max(0, cap - this.queued - FRAME_HEADER_BYTES);
      if (this.cut[STREAM_STDOUT] + this.cut[STREAM_STDERR] > 0 || room === 0) {
        this.cut[stream] += chunk.length;
        return;
      }
      if (chunk.length > room) {
        this.cut[stream] += chunk.length - room;
        chunk = chunk.subarray(0, room);
      }
    }
    const ok = this.append(stream, chunk);
    if (!ok && !this.paused) {
      this.paused = true;
      this.opts.pause();
      this.file!.once('drain', this.resumeOutput);
    }
  }

  /** Frames a chunk into the file; false when the file's queue is past its high-water mark. */
  private append(stream: typeof STREAM_STDOUT | typeof STREAM_STDERR, chunk: Buffer): boolean {
    const file = this.file ?? this.open();
    let ok = true;
    // Header and data as two writes in one writev: no copy of the data.
    file.cork();
    for (let at = 0; at < chunk.length; at += MAX_FRAME_BYTES) {
      const piece = at === 0 && chunk.length <= MAX_FRAME_BYTES ? chunk : chunk.subarray(at, at + MAX_FRAME_BYTES);
      file.write(encodeFrameHeader(stream, piece.length));
      ok = file.write(piece, this.onWritten);
      this.queued += FRAME_HEADER_BYTES + piece.length;
    }
    file.uncork();
    return ok;
  }

  /** Past the cap: the note, then the tail of each stream that was cut. */
  private appendCutNote(): void {
    const [out, err] = [this.cut[STREAM_STDOUT], this.cut[STREAM_STDERR]];
    if (out + err === 0 || this.failed) return;
    const note =
      `\n[loom: the log file reached --max-log-bytes (${this.opts.maxLogBytes} bytes): ${out} bytes of stdout and ${err} bytes of stderr were not written; ` +
      'the retained tail of each stream follows]\n';
    this.append(STREAM_STDERR, Buffer.from(note));
    if (out > 0) this.append(STREAM_STDOUT, this.stdoutTail.toBuffer());
    if (err > 0) this.append(STREAM_STDERR, this.stderrTail.toBuffer());
  }

  /** Bytes of each stream not written to the file because of the cap. */
  get cutBytes(): { stdout: number; stderr: number } {
    return { stdout: this.cut[STREAM_STDOUT], stderr: this.cut[STREAM_STDERR] };
  }

  /** No more output: flushes and closes the log file. Resolves with `closed`. */
  end(): Promise<void> {
    if (!this.ended) {
      this.appendCutNote();
      this.ended = true;
      this.resumeOutput();
      if (!this.file) this.markClosed();
      else if (!this.file.destroyed) this.file.end();
    }
    return this.closed;
  }

  private readonly onWritten = (err?: Error | null): void => {
    if (err) return;
    this.written = this.file!.bytesWritten;
    this.opts.onProgress();
  };

  private readonly resumeOutput = (): void => {
    if (!this.paused) return;
    this.paused = false;
    this.file?.removeListener('drain', this.resumeOutput);
    this.opts.resume();
  };
}
