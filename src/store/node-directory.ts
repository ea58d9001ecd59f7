/** The live nodes, mirrored from /node/ by list-then-watch. */
import { NodeInfo } from '../gen/loom';
import { decodeNode } from './codec';
import { Kv } from './etcd';
import { Keys } from './keys';
import { PrefixWatch } from './prefix-watch';

export class NodeDirectory {
  private readonly nodes = new Map<string, NodeInfo>();
  private readonly watch: PrefixWatch;
  private goneListeners: ((name: string, lease: string) => void)[] = [];
  private changeListeners: (() => void)[] = [];
  /** Bumped whenever the set of live names changes. */
  version = 0;

  constructor(kv: Kv, private readonly keys: Keys, log?: (m: string) => void) {
    this.watch = new PrefixWatch(
      kv,
      keys.nodePrefix,
      {
        reset: (kvs) => {
          const before = new Map(this.nodes);
          this.nodes.clear();
          for (const kv of kvs) this.upsert(kv.key.toString(), kv.value, String(kv.lease));
          for (const [name, info] of before) {
            const now = this.nodes.get(name);
            if (!now || now.lease !== info.lease) this.emitGone(name, info.lease);
          }
          this.changed();
        },
        put: (kv) => {
          const name = keys.parseNode(kv.key.toString());
          const old = name ? this.nodes.get(name) : undefined;
          this.upsert(kv.key.toString(), kv.value, String(kv.lease));
          if (name && old && old.lease !== String(kv.lease)) this.emitGone(name, old.lease);
          this.changed();
        },
        delete: (kv) => {
          const name = keys.parseNode(kv.key.toString());
          const old = name ? this.nodes.get(name) : undefined;
          if (name && old) {
            this.nodes.delete(name);
            this.emitGone(name, old.lease);
            this.changed();
          }
        },
      },
      { log },
    );
  }

  start(signal?: AbortSignal): Promise<void> {
    return this.watch.start(signal);
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  get(name: string): NodeInfo | undefined {
    return this.nodes.get(name);
  }

  all(): NodeInfo[] {
    return [...this.nodes.values()];
  }

  /** Names of live nodes that take new work (not draining). */
  names(): string[] {
    return [...this.nodes.values()].filter((n) => !n.draining).map((n) => n.name);
  }

  onGone(fn: (name: string, lease: string) => void): void {
    this.goneListeners.push(fn);
  }

  onChange(fn: () => void): void {
    this.changeListeners.push(fn);
  }

  private upsert(key: string, value: Buffer, lease: string): void {
    const name = this.keys.parseNode(key);
    if (!name) return;
    try {
      this.nodes.set(name, { ...decodeNode(value, name), lease });
    } catch {
      // corrupt record: ignore this node's details
    }
  }

  private changed(): void {
    this.version++;
    for (const fn of this.changeListeners) fn();
  }

  private emitGone(name: string, lease: string): void {
    for (const fn of this.goneListeners) fn(name, lease);
  }
}
