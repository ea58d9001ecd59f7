/**
 * Task state changes as they happen, from the status index (/task/status/):
 * a put of a task's queued, running or terminal key is its new state, with
 * no task record read or decoded. Watched from now on (no list: the index
 * holds every finished task), only while someone listens: the HTTP API's
 * event stream starts it for its first client and stops it after its last.
 *
 * The queue's depth is counted on demand (a count of the queued keys; etcd
 * walks them, so it is asked once a second at most, and only while a client
 * listens).
 */
import type { Watcher } from 'etcd3';
import { Kv } from '../etcd/client';
import { Keys } from './keys';

export interface TaskChange {
  id: string;
  /** queued, running, completed, failed, cancelled or lost. */
  state: string;
  /** The node running it (running only). */
  node?: string;
  /** etcd revision of the change (a string, like every revision). */
  revision: string;
}

export class StatusFeed {
  private watcher: Watcher | undefined;
  private starting: Promise<void> | undefined;

  constructor(
    private readonly kv: Kv,
    private readonly keys: Keys,
    private readonly onChange: (c: TaskChange) => void,
    private readonly log: (m: string) => void,
  ) {}

  /** Parses a status key: which task, and the state it names. */
  changeOf(key: string, revision: string): TaskChange | undefined {
    const q = this.keys.parseQueued(key);
    if (q) return { id: q.id, state: 'queued', revision };
    const r = this.keys.parseRunning(key);
    if (r) return { id: r.id, state: 'running', node: r.node, revision };
    const s = this.keys.parseStatus(key);
    return s ? { id: s.id, state: s.state, revision } : undefined;
  }

  start(): Promise<void> {
    this.starting ??= (async () => {
      const w = await this.kv.client.watch().prefix(this.keys.statusPrefix).create();
      this.watcher = w;
      w.on('put', (kv) => {
        const c = this.changeOf(kv.key.toString(), kv.mod_revision);
        if (c) this.onChange(c);
      });
      w.on('error', (err) => this.log(`task event watch: ${(err as Error).message}`));
    })();
    return this.starting;
  }

  async stop(): Promise<void> {
    const starting = this.starting;
    this.starting = undefined;
    await starting?.catch(() => undefined);
    const w = this.watcher;
    this.watcher = undefined;
    await w?.cancel().catch(() => undefined);
  }

  /** Tasks queued in the whole cluster now. */
  queueDepth(): Promise<number> {
    return countQueued(this.kv, this.keys);
  }
}

/** Tasks queued in the whole cluster now: a count of the queued keys (etcd walks them; sent no values). */
export function countQueued(kv: Kv, keys: Keys): Promise<number> {
  return kv.client.getAll().prefix(keys.queuedPrefix).count();
}
