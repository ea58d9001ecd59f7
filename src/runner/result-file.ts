/**
 * A task's result: a small value it leaves in the file named by $LOOM_RESULT,
 * read by the node once the task has exited and stored with the final
 * record. The node may be root and the file is the task's, so it is opened
 * without following a symlink, without blocking on a FIFO, and only if it is
 * a regular file owned by the task's uid (a hard link to a file of the
 * node's would have another owner).
 */
import * as fs from 'fs';

/** Largest result kept (the record carries it through etcd). */
export const RESULT_MAX_BYTES = 64 * 1024;

export interface ResultRead {
  /** The bytes written, when the task left a result. */
  result?: Buffer;
  /** Why a file that is there was not taken. */
  error?: string;
}

export function readResultFile(file: string, ownerUid?: number): ResultRead {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return {};
    if (code === 'ELOOP') return { error: 'result not read: $LOOM_RESULT is a symbolic link' };
    return { error: `result not read: ${code ?? (err as Error).message}` };
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return { error: 'result not read: $LOOM_RESULT is not a regular file' };
    if (ownerUid !== undefined && st.uid !== ownerUid) return { error: `result not read: $LOOM_RESULT is owned by uid ${st.uid}, not the task's` };
    if (st.size > RESULT_MAX_BYTES) return { error: `result dropped: $LOOM_RESULT has ${st.size} bytes, over the ${RESULT_MAX_BYTES / 1024} KiB limit` };
    const buf = Buffer.alloc(RESULT_MAX_BYTES + 1);
    let n = 0;
    for (;;) {
      const k = fs.readSync(fd, buf, n, buf.length - n, null);
      if (k === 0) break;
      n += k;
      if (n > RESULT_MAX_BYTES) return { error: `result dropped: $LOOM_RESULT grew over the ${RESULT_MAX_BYTES / 1024} KiB limit` };
    }
    return { result: Buffer.from(buf.subarray(0, n)) };
  } finally {
    fs.closeSync(fd);
  }
}
