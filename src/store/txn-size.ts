/**
 * Byte budgets of etcd transactions. etcd refuses a request larger than its
 * --max-request-bytes (1.5 MiB by default, which an `--etcd` cluster may
 * have; 10 MiB for embedded members) — the whole transaction, every task in
 * it. A task record can be ~300 KiB (argv and env are 128 KiB each) and a
 * queued task is stored twice, so batches of many tasks are split by bytes
 * as well as by operation count.
 */
import type { IRequestOp } from 'etcd3';

/**
 * Bytes of keys and values in one transaction: 1 MiB, under etcd's default
 * request limit with room for compares, framing and the raft header.
 */
export const MAX_TXN_BYTES = 1024 * 1024;

/**
 * Items (claims, results, submits, cancels: one nested transaction each, of
 * up to two ops) per etcd transaction, within etcd's default --max-txn-ops 128.
 */
export const BATCH_CHUNK = 64;

const OP_OVERHEAD = 16;

/** What `op` adds to a transaction's size (keys and values; nested transactions included). */
export function opBytes(op: IRequestOp): number {
  if (op.request_put) return OP_OVERHEAD + (op.request_put.key?.length ?? 0) + (op.request_put.value?.length ?? 0);
  if (op.request_delete_range) return OP_OVERHEAD + (op.request_delete_range.key?.length ?? 0) + (op.request_delete_range.range_end?.length ?? 0);
  if (op.request_range) return OP_OVERHEAD + (op.request_range.key?.length ?? 0) + (op.request_range.range_end?.length ?? 0);
  if (op.request_txn) {
    const t = op.request_txn;
    const compares = (t.compare ?? []).reduce((n, c) => n + OP_OVERHEAD + (c.key?.length ?? 0) + (Buffer.isBuffer(c.value) ? c.value.length : 0), 0);
    return OP_OVERHEAD + compares + [...(t.success ?? []), ...(t.failure ?? [])].reduce((n, o) => n + opBytes(o), 0);
  }
  return OP_OVERHEAD;
}

/**
 * Splits `items` into consecutive chunks of at most `maxItems` items and
 * `maxBytes` bytes; an item larger than `maxBytes` on its own forms a
 * chunk of one (and is etcd's to accept or refuse).
 */
export function chunkBySize<T>(items: readonly T[], sizeOf: (item: T) => number, maxItems: number, maxBytes = MAX_TXN_BYTES): T[][] {
  const chunks: T[][] = [];
  let chunk: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (chunk.length > 0 && (chunk.length >= maxItems || bytes + size > maxBytes)) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(item);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}
