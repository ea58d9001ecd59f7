/**
 * The live nodes, mirrored from /node/ by list-then-watch, with when this
 * node last saw each one's key change (its heartbeat: see membership.ts).
 */
import { NodeInfo } from '../gen/loom';
import { decodeNode } from './codec';
import { Kv } from '../etcd/client';
import { Keys } from './keys';
import { PrefixWatch } from '../etcd/prefix-watch';

/** A node key's revision and the local time (Date.now) it was first seen. */
export interface Sighting {
  name: string;
  lease: string;
  modRevision: string;
  seenAtMs: number;
}

/** What placement and preference depend on: a change bumps `version`. */
function placementOf(n: NodeInfo): string {
  return JSON.stringify([n.lease, n.draining, n.docker, n.slots, n.labels, n.capacity, n.kinds]);
}

export class NodeDirectory {
  private readonly nodes = new Map<string, NodeInfo>();
  /** Each node's record as last decoded: a heartbeat that rewrites the same bytes is not decoded again. */
  private readonly raw = new Map<string, Buffer>();
  private readonly sightings = new Map<string, Sighting>();
  private readonly watch: PrefixWatch;
  private goneListeners: ((name: string, lease: string) => void)[] = [];
  private changeListeners: (() => void)[] = [];
  /** Bumped whenever the live nodes change in a way placement can see (not on heartbeats). */
  version = 0;
  /**
   * Bumped like `version`, and by heartbeats (load figures) at most once a
   * second: what placement strategies that read load key their caches by
   * (core/placement.ts), so a busy cluster's heartbeats do not recompute
   * every queued task's preference on each one.
   */
  loadVersion = 0;
  private loadBumpedAtMs = 0;

  constructor(kv: Kv, private readonly keys: Keys, log?: (m: string) => void) {
    this.watch = new PrefixWatch(
      kv,
      keys.nodePrefix,
      {
        reset: (kvs) => {
          const before = new Map(this.nodes);
          const seen = new Map(this.sightings);
          this.nodes.clear();
          this.raw.clear();
          this.sightings.clear();
          for (const kv of kvs) {
            this.upsert(kv.key.toString(), kv.value, String(kv.lease));
            // A revision seen before keeps its first sighting (any sighting
            // is after the write committed; the earliest is the most useful).
            const name = keys.parseNode(kv.key.toString());
            const was = name ? seen.get(name) : undefined;
            if (name) this.sight(name, String(kv.lease), kv.mod_revision, was?.modRevision === kv.mod_revision ? was.seenAtMs : Date.now());
          }
          for (const [name, info] of before) {
            const now = this.nodes.get(name);
            if (!now || now.lease !== info.lease) this.emitGone(name, info.lease);
          }
          this.changed();
        },
        put: (kv) => {
          const name = keys.parseNode(kv.key.toString());
          const old = name ? this.nodes.get(name) : undefined;
          // Most puts are heartbeats repeating the record last published (node.ts):
          // every node receives every node's, so they cost a revision, no decode.
          if (name && old && old.lease === String(kv.lease) && this.raw.get(name)?.equals(kv.value)) {
            this.observe(name, old.lease, kv.mod_revision);
            return;
          }
          this.upsert(kv.key.toString(), kv.value, String(kv.lease));
          if (name) this.observe(name, String(kv.lease), kv.mod_revision);
          if (name && old && old.lease !== String(kv.lease)) this.emitGone(name, old.lease);
          // Load figures only: placement did not change.
          const now = name ? this.nodes.get(name) : undefined;
          if (!old || !now || placementOf(old) !== placementOf(now)) this.changed();
          else if (Date.now() - this.loadBumpedAtMs >= 1000) this.bumpLoad();
        },
        delete: (kv) => {
          const name = keys.parseNode(kv.key.toString());
          const old = name ? this.nodes.get(name) : undefined;
          if (name) this.sightings.delete(name);
          if (name) this.raw.delete(name);
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

  /** Nodes other than `self` whose key has not changed for `silentMs` of local time. */
  silent(self: string, silentMs: number, nowMs = Date.now()): Sighting[] {
    return [...this.sightings.values()].filter((s) => s.name !== self && nowMs - s.seenAtMs >= silentMs);
  }

  /**
   * Records a revision of a node's key seen now (from the watch, or read
   * back by a failed declareDead). Older revisions than the one held are
   * ignored, so a lagging watch never moves a sighting back.
   */
  observe(name: string, lease: string, modRevision: string): void {
    const held = this.sightings.get(name);
    if (held && BigInt(modRevision) <= BigInt(held.modRevision)) return;
    this.sight(name, lease, modRevision, Date.now());
  }

  private sight(name: string, lease: string, modRevision: string, seenAtMs: number): void {
    this.sightings.set(name, { name, lease, modRevision, seenAtMs });
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
      this.raw.set(name, value);
    } catch {
      // corrupt record: ignore this node's details
    }
  }

  private bumpLoad(): void {
    this.loadVersion++;
    this.loadBumpedAtMs = Date.now();
  }

  private changed(): void {
    this.version++;
    this.bumpLoad();
    for (const fn of this.changeListeners) fn();
  }

  private emitGone(name: string, lease: string): void {
    for (const fn of this.goneListeners) fn(name, lease);
  }
}
