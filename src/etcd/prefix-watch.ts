/**
 * List a prefix, then watch it from the list's revision + 1, so nothing slips
 * between the two. On compaction or any watch error: re-list and re-watch.
 * The consumer sees a full `reset` after every (re-)list, then increments.
 * It never silently stops: errors are retried with backoff until aborted.
 */
import { Etcd3, IKeyValue, Watcher } from 'etcd3';
import { b, Kv, prefixEnd } from './client';
import { sleep } from '../core/sleep';

export interface PrefixHandlers {
  /** All keys under the prefix at `revision` (paged internally). */
  reset(kvs: IKeyValue[], revision: string): void;
  put(kv: IKeyValue): void;
  delete(kv: IKeyValue): void;
  /** Called once per watch response, after its events. */
  batch?(): void;
}

export interface PrefixWatchOptions {
  /** Only list/keep this many keys (the first in key order); undefined = all. */
  limit?: number;
  log?: (msg: string) => void;
}

export class PrefixWatch {
  private watcher: Watcher | undefined;
  private listRevision = 0n;
  private stopped = false;
  private restarting: Promise<void> | undefined;

  constructor(
    private readonly kv: Kv,
    private readonly prefix: string,
    private readonly handlers: PrefixHandlers,
    private readonly opts: PrefixWatchOptions = {},
  ) {}

  /** Resolves after the first list; keeps watching until stop(). */
  async start(signal?: AbortSignal): Promise<void> {
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    await this.relist();
  }

  /** Re-list now (e.g. the consumer needs keys beyond its limit). */
  refresh(): Promise<void> {
    return this.relist();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const w = this.watcher;
    this.watcher = undefined;
    await w?.cancel().catch(() => undefined);
  }

  private relist(): Promise<void> {
    if (!this.restarting) {
      this.restarting = this.doRelist().finally(() => {
        this.restarting = undefined;
      });
    }
    return this.restarting;
  }

  private async doRelist(): Promise<void> {
    let delayMs = 100;
    while (!this.stopped) {
      try {
        const res = await this.kv.range(
          { key: b(this.prefix), range_end: b(prefixEnd(this.prefix)), limit: this.opts.limit ?? 0 },
          `list ${this.prefix}`,
        );
        this.listRevision = BigInt(res.header.revision);
        this.handlers.reset(res.kvs, res.header.revision);
        if (!this.watcher) await this.watch(res.header.revision);
        return;
      } catch (err) {
        this.opts.log?.(`list ${this.prefix} failed (${(err as Error).message}); retrying`);
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, 2000);
      }
    }
  }

  private async watch(fromRevision: string): Promise<void> {
    const client: Etcd3 = this.kv.client;
    const watcher = await client
      .watch()
      .prefix(this.prefix)
      .startRevision(String(BigInt(fromRevision) + 1n))
      .create();
    if (this.stopped) {
      await watcher.cancel().catch(() => undefined);
      return;
    }
    this.watcher = watcher;
    watcher.on('data', (res) => {
      if (this.watcher !== watcher) return;
      for (const ev of res.events) {
        // Events up to the last list's revision are already in that list.
        if (BigInt(ev.kv.mod_revision) <= this.listRevision) continue;
        if (ev.type === 'Put') this.handlers.put(ev.kv);
        else this.handlers.delete(ev.kv);
      }
      this.handlers.batch?.();
    });
    watcher.on('error', (err) => {
      if (this.watcher !== watcher) return;
      this.opts.log?.(`watch ${this.prefix}: ${err.message}; re-listing`);
      this.watcher = undefined;
      void watcher.cancel().catch(() => undefined);
      void this.relist();
    });
  }
}
