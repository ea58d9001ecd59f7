/**
 * A bounded, ordered view of the head of the queue: the first `size` queued
 * keys in dispatch order (priority, round, then submit order), kept current by a
 * list-then-watch. Memory stays bounded however many tasks are queued: puts
 * that sort after the window's last key are ignored while the window is full
 * (`more` is set), and the window is re-listed when it runs dry.
 */
import { IKeyValue } from 'etcd3';
import { Kv } from '../etcd/client';
import { Keys } from './keys';
import { PrefixWatch } from '../etcd/prefix-watch';
import { Task } from '../gen/loom';
import { decodeTask } from './codec';
import { jobTaskIdRange } from '../core/ids';
import { QueuedEntry } from './transitions';

export interface WindowEntry extends QueuedEntry {
  priority: number;
  /** Local time this node first saw the entry (for the steal delay). */
  seenAtMs: number;
}

/**
 * An entry whose record is decoded when first read. Every node receives
 * every queued put, but reads the records only of the entries its passes
 * look at (a pass stops once its free slots are filled, and a full node
 * makes none): most puts leave the queue again without being decoded here.
 * A record that does not decode reads as a task that never comes due, so
 * no pass takes it, and is reported once.
 */
class LazyEntry implements WindowEntry {
  private task: Task | undefined;

  constructor(
    readonly id: string,
    readonly key: string,
    readonly modRevision: string,
    readonly priority: number,
    readonly seenAtMs: number,
    private value: Buffer | undefined,
    private readonly log?: (msg: string) => void,
  ) {}

  get snapshot(): Task {
    if (!this.task) {
      try {
        this.task = decodeTask(this.value!, this.id);
      } catch (err) {
        this.log?.(`skipping corrupt queued key ${this.key}: ${(err as Error).message}`);
        this.task = Task.fromPartial({ id: this.id, notBeforeMs: Infinity });
      }
      this.value = undefined;
    }
    return this.task;
  }
}

export class QueueWindow {
  private entries: WindowEntry[] = [];
  private more = false;
  private readonly watch: PrefixWatch;
  private listeners: (() => void)[] = [];

  constructor(
    kv: Kv,
    private readonly keys: Keys,
    private readonly size = 1000,
    private readonly log?: (msg: string) => void,
  ) {
    this.watch = new PrefixWatch(
      kv,
      keys.queuedPrefix,
      {
        reset: (kvs) => this.reset(kvs),
        put: (kv) => this.put(kv),
        delete: (kv) => this.remove(kv.key.toString()),
        batch: () => this.notify(),
      },
      { limit: size, log },
    );
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.watch.start(signal);
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  /** Entries in dispatch order (do not mutate). */
  view(): readonly WindowEntry[] {
    return this.entries;
  }

  get length(): number {
    return this.entries.length;
  }

  /** Whether the window holds a queued task of the job. */
  holdsJob(jobId: string): boolean {
    const [from, to] = jobTaskIdRange(jobId);
    return this.entries.some((e) => e.id >= from && e.id < to);
  }

  /**
   * The round at the head of a priority's band as this window sees it (0:
   * the band holds no key with a round), or undefined when the band's rounds
   * start beyond the window. Lets a submit skip reading the head from etcd
   * (TurnBook), which etcd 3.4 answers by walking the whole band.
   */
  headRound(priority: number): number | undefined {
    const [start, end] = this.keys.bandRounds(priority);
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.entries[mid].key < start) lo = mid + 1;
      else hi = mid;
    }
    const first = this.entries[lo];
    if (first) return first.key < end ? this.keys.parseQueued(first.key)?.round ?? 0 : 0;
    return this.more ? undefined : 0;
  }

  /** True when keys beyond the window may exist. */
  get hasMore(): boolean {
    return this.more;
  }

  onChange(fn: () => void): void {
    this.listeners.push(fn);
  }

  /** Forget an entry locally (a claim for it failed or succeeded). */
  drop(key: string): void {
    this.remove(key);
  }

  /** Re-list when the window ran dry but more keys exist. */
  async refill(): Promise<void> {
    await this.watch.refresh();
    this.notify();
  }

  private notify(): void {
    for (const fn of this.listeners) fn();
  }

  private toEntry(kv: IKeyValue, seenAtMs: number): WindowEntry | undefined {
    const key = kv.key.toString();
    const parsed = this.keys.parseQueued(key);
    if (!parsed) return undefined;
    return new LazyEntry(parsed.id, key, kv.mod_revision, parsed.priority, seenAtMs, kv.value, this.log);
  }

  private reset(kvs: IKeyValue[]): void {
    const now = Date.now();
    const previous = new Map(this.entries.map((e) => [e.key, e.seenAtMs]));
    this.entries = [];
    for (const kv of kvs) {
      const entry = this.toEntry(kv, previous.get(kv.key.toString()) ?? now);
      if (entry) this.entries.push(entry);
    }
    this.more = kvs.length >= this.size;
    this.notify();
  }

  private indexOf(key: string): { found: boolean; index: number } {
    let lo = 0;
    let hi = this.entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const k = this.entries[mid].key;
      if (k === key) return { found: true, index: mid };
      if (k < key) lo = mid + 1;
      else hi = mid;
    }
    return { found: false, index: lo };
  }

  private put(kv: IKeyValue): void {
    const key = kv.key.toString();
    const last = this.entries[this.entries.length - 1];
    if (this.more && last && key > last.key) return;
    const entry = this.toEntry(kv, Date.now());
    if (!entry) return;
    const { found, index } = this.indexOf(key);
    if (found) this.entries[index] = entry;
    else this.entries.splice(index, 0, entry);
    if (this.entries.length > this.size) {
      this.entries.pop();
      this.more = true;
    }
  }

  private remove(key: string): void {
    const { found, index } = this.indexOf(key);
    if (found) this.entries.splice(index, 1);
  }
}
