/**
 * The framed log file of one attempt. stdout and stderr go into one file so
 * their interleaving survives, and the payload is raw bytes so non-UTF-8
 * output is kept exactly.
 *
 *   frame = stream id (1 byte: 1 stdout, 2 stderr)
 *         + data length (4 bytes, big-endian)
 *         + data
 *
 * A reader may follow a file that is still being written: it reads up to the
 * current end, stops before a partial trailing frame, and comes back later
 * from the last complete frame's end offset.
 */
import { promises as fsp } from 'fs';

export const STREAM_STDOUT = 1;
export const STREAM_STDERR = 2;

/** Bytes before each frame's data. */
export const FRAME_HEADER_BYTES = 5;
/** Largest data length accepted; anything bigger means the file is corrupt. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

const READ_CHUNK_BYTES = 64 * 1024;

export interface Frame {
  stream: number;
  data: Buffer;
}

function isKnownStream(stream: number): boolean {
  return stream === STREAM_STDOUT || stream === STREAM_STDERR;
}

/** The 5-byte header alone, so writers can send header + data without copying data. */
export function encodeFrameHeader(stream: number, length: number): Buffer {
  if (!isKnownStream(stream)) throw new RangeError(`unknown log stream id ${stream}`);
  if (length > MAX_FRAME_BYTES) throw new RangeError(`log frame too large: ${length} bytes`);
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header[0] = stream;
  header.writeUInt32BE(length, 1);
  return header;
}

export function encodeFrame(stream: number, data: Buffer): Buffer {
  return Buffer.concat([encodeFrameHeader(stream, data.length), data], FRAME_HEADER_BYTES + data.length);
}

/**
 * Incremental decoder: push arbitrary slices of a framed byte stream, get back
 * the frames completed so far. Returned data may share memory with the pushed
 * chunks (no copy), so callers must not reuse chunk buffers they pushed.
 */
export class FrameDecoder {
  /** Bytes of an incomplete frame, kept as a list so big frames are not re-copied per push. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Bytes needed before the pending frame can make progress. */
  private needed = FRAME_HEADER_BYTES;

  /** Bytes buffered that do not yet form a complete frame. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    if (chunk.length === 0) return frames;
    let buf: Buffer;
    if (this.pendingBytes === 0) {
      buf = chunk;
    } else {
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < this.needed) return frames;
      buf = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }

    let pos = 0;
    this.needed = FRAME_HEADER_BYTES;
    while (buf.length - pos >= FRAME_HEADER_BYTES) {
      const stream = buf[pos];
      const length = buf.readUInt32BE(pos + 1);
      if (!isKnownStream(stream) || length > MAX_FRAME_BYTES) throw new Error('corrupt log frame');
      const end = pos + FRAME_HEADER_BYTES + length;
      if (end > buf.length) {
        this.needed = FRAME_HEADER_BYTES + length;
        break;
      }
      frames.push({ stream, data: buf.subarray(pos + FRAME_HEADER_BYTES, end) });
      pos = end;
    }
    if (pos < buf.length) {
      this.pending = [buf.subarray(pos)];
      this.pendingBytes = buf.length - pos;
    }
    return frames;
  }
}

/**
 * Yields the complete frames between fromOffset (a frame boundary) and the
 * file's end as it was when reading started, each with the offset just after
 * it. Reads in 64 KiB chunks; memory is bounded by one chunk plus one frame.
 * Aborting the signal makes the generator throw the signal's reason.
 */
export async function* readFrames(
  path: string,
  opts: { fromOffset?: number; signal?: AbortSignal } = {},
): AsyncGenerator<Frame & { endOffset: number }> {
  const { signal } = opts;
  signal?.throwIfAborted();
  let offset = opts.fromOffset ?? 0;
  const handle = await fsp.open(path, 'r');
  try {
    // Bound the read at the size seen now, so a fast writer cannot keep us here forever.
    const { size } = await handle.stat();
    const decoder = new FrameDecoder();
    let readPos = offset;
    while (readPos < size) {
      signal?.throwIfAborted();
      // A fresh buffer per read: yielded frames are views into it.
      const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK_BYTES, size - readPos));
      const { bytesRead } = await handle.read(buf, 0, buf.length, readPos);
      if (bytesRead === 0) break; // truncated underneath us
      readPos += bytesRead;
      for (const frame of decoder.push(buf.subarray(0, bytesRead))) {
        offset += FRAME_HEADER_BYTES + frame.data.length;
        yield { stream: frame.stream, data: frame.data, endOffset: offset };
        signal?.throwIfAborted();
      }
    }
  } finally {
    await handle.close();
  }
}
