/**
 * Sends independent guarded transactions issued in the same turn of the event
 * loop as ONE etcd transaction, each nested so that it commits or fails on its
 * own compares. Many concurrent callers (a bulk cancel: hundreds of cancel
 * calls at once) then cost one raft entry per batch instead of one each.
 * While a batch is in flight, new ones wait and go together in the next.
 */
import { ITxnRequest } from 'etcd3';
import { Kv, nested } from '../etcd/client';
import { BATCH_CHUNK, MAX_TXN_BYTES, opBytes } from './txn-size';

interface Pending {
  txn: ITxnRequest;
  resolve: (succeeded: boolean) => void;
  reject: (err: unknown) => void;
}

export class TxnBatcher {
  private queue: Pending[] = [];
  private flushing = false;
  private scheduled = false;

  constructor(
    private readonly kv: Kv,
    private readonly what: string,
  ) {}

  /** Resolves with whether `txn`'s compares held (and its ops were applied). */
  run(txn: ITxnRequest): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.queue.push({ txn, resolve, reject });
      if (!this.flushing && !this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          void this.flush();
        });
      }
    });
  }

  /**
   * The next batch: up to BATCH_CHUNK queued transactions, skipping (for the
   * next batch) any that writes a key an earlier one in the batch writes:
   * etcd refuses a transaction that writes one key twice, which would fail
   * the whole batch (two cancels of one task at once).
   */
  private take(): Pending[] {
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    const written = new Set<string>();
    let bytes = 0;
    for (const p of this.queue) {
      const keys = writtenKeys(p.txn);
      // Also by bytes (see txn-size.ts); the first always goes, whatever its size.
      const size = opBytes(nested(p.txn));
      if (batch.length >= BATCH_CHUNK || keys.some((k) => written.has(k)) || (batch.length > 0 && bytes + size > MAX_TXN_BYTES)) {
        rest.push(p);
        continue;
      }
      keys.forEach((k) => written.add(k));
      bytes += size;
      batch.push(p);
    }
    this.queue = rest;
    return batch;
  }

  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.take();
        try {
          const res = await this.kv.txn({ compare: [], success: batch.map((p) => nested(p.txn)) }, this.what);
          batch.forEach((p, i) => p.resolve(!!res.responses[i]?.response_txn?.succeeded));
        } catch (err) {
          batch.forEach((p) => p.reject(err));
        }
      }
    } finally {
      this.flushing = false;
    }
  }
}

function writtenKeys(txn: ITxnRequest): string[] {
  const out: string[] = [];
  for (const op of [...(txn.success ?? []), ...(txn.failure ?? [])]) {
    const key = op.request_put?.key ?? op.request_delete_range?.key;
    if (key) out.push(key.toString());
  }
  return out;
}
