/**
 * Puts back the work of nodes whose incarnation is gone. Triggered by a
 * /node/<name> delete (seen by every survivor), plus a sweep at start-up
 * and every few seconds for anything nobody saw. The periodic sweep reads
 * every running key and node key of the cluster, so only SWEEPERS_PER_TURN
 * nodes make it per interval (takesTurn), not every node. A running key is orphaned
 * when its value (the owner's lease) is not the lease /node/<name> is under
 * now. Each survivor may try; the guarded transaction lets exactly one win.
 * On a delete, the survivor first in rendezvous order for the incarnation
 * acts at once and the second a moment later (if the first died too or
 * failed); the others leave it to the sweep: each would range the gone
 * node's running keys, N - 1 reads per loss.
 */
import { LoomError } from '../core/errors';
import { SWEEPERS_PER_TURN, takesTurn } from '../core/steal-policy';
import { TaskState } from '../gen/loom';
import { TaskQueries, RunningKey } from '../store/queries';
import { TaskTransitions } from '../store/transitions';

export interface RequeuerDeps {
  queries: TaskQueries;
  transitions: TaskTransitions;
  self: string;
  liveNodes: () => string[];
  log: (msg: string) => void;
  sweepIntervalMs?: number;
  backupDelayMs?: number;
}

/** What this node does when `turn` (a gone incarnation) is seen: requeue at once, after a delay, or leave it to the sweep. */
export function requeueRole(self: string, survivors: readonly string[], turn: string): 'first' | 'backup' | 'none' {
  if (takesTurn(self, survivors, turn, 1)) return 'first';
  return takesTurn(self, survivors, turn, 2) ? 'backup' : 'none';
}

export class Requeuer {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  /** Incarnations this node declared dead and requeued itself (their delete event needs no second pass). */
  private readonly declared = new Set<string>();
  requeued = 0;

  constructor(private readonly deps: RequeuerDeps) {}

  start(): void {
    void this.sweep();
    const every = this.deps.sweepIntervalMs ?? 3000;
    this.timer = setInterval(() => {
      if (takesTurn(this.deps.self, this.deps.liveNodes(), `orphan-sweep/${Math.floor(Date.now() / every)}`, SWEEPERS_PER_TURN)) void this.sweep();
    }, every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** A node's incarnation (lease) is gone: requeue what it was running. */
  nodeGone(name: string, lease: string): void {
    if (name === this.deps.self || this.declared.delete(`${name}/${lease}`)) return;
    const role = requeueRole(this.deps.self, this.deps.liveNodes().filter((n) => n !== name), `${name}/${lease}`);
    if (role === 'none') return;
    const delay = role === 'first' ? 0 : this.deps.backupDelayMs ?? 1000;
    setTimeout(() => void this.requeueNode(name, lease), delay).unref();
  }

  /**
   * This node just deleted the key of a silent node (Liveness): requeue at
   * once, and let the watch's delete event for that incarnation pass.
   */
  nodeDeclaredDead(name: string, lease: string): void {
    this.declared.add(`${name}/${lease}`);
    void this.requeueNode(name, lease);
  }

  private async requeueNode(name: string, lease: string): Promise<void> {
    try {
      const keys = await this.deps.queries.runningKeys(name);
      await Promise.all(keys.filter((k) => k.lease === lease).map((k) => this.requeueOne(k)));
    } catch (err) {
      this.deps.log(`requeue of ${name}'s tasks failed (${(err as Error).message}); the sweep will retry`);
    }
  }

  /** Finds running keys whose owner's lease is not live, and requeues them. */
  sweep(): Promise<void> {
    if (!this.sweeping) {
      this.sweeping = this.doSweep().finally(() => (this.sweeping = undefined));
    }
    return this.sweeping;
  }

  private async doSweep(): Promise<void> {
    try {
      const keys = await this.deps.queries.runningKeys();
      if (keys.length === 0) return;
      const live = await this.deps.queries.liveLeases();
      const orphans = keys.filter((k) => live.get(k.node) !== k.lease);
      await Promise.all(orphans.map((k) => this.requeueOne(k)));
    } catch (err) {
      this.deps.log(`orphan sweep failed: ${(err as Error).message}`);
    }
  }

  private async requeueOne(k: RunningKey): Promise<void> {
    let held;
    try {
      held = await this.deps.queries.get(k.id);
    } catch (err) {
      if (err instanceof LoomError && err.code === 'NOT_FOUND') {
        await this.deps.transitions.dropStaleRunningKey(k.node, k.id, k.lease);
        return;
      }
      throw err;
    }
    const t = held.task;
    if (t.state !== TaskState.RUNNING || t.node !== k.node || t.lease !== k.lease) {
      if (await this.deps.transitions.dropStaleRunningKey(k.node, k.id, k.lease)) {
        this.deps.log(`dropped stale running key of ${k.id} (record is elsewhere)`);
      }
      return;
    }
    const next = await this.deps.transitions.requeueLost(held, Date.now());
    if (next) {
      this.requeued++;
      this.deps.log(`task ${k.id}: node ${k.node} lost -> ${TaskState[next.state].toLowerCase()}`);
    }
  }
}
