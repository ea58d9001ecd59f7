/**
 * The steal loop: looks at the head of the queue (QueueWindow), picks what
 * fits this node's free slots, waits the steal delay for tasks another node
 * is preferred for, and claims in one batched transaction. A lost race is
 * normal: the entry is dropped and the watch tells us what happened.
 *
 *   N1 and N2 both see task T queued at revision r.
 *   N1 (preferred) claims at once: compare queued key @r -> ok, T is N1's.
 *   N2 waits its steal delay, claims: compare queued key @r fails -> quiet.
 *
 * With a deep queue and short tasks, a node also claims some of its preferred
 * tasks ahead of its free slots (aheadRoom / chooseAhead); the executor
 * starts them as slots free. One claim-or-result transaction is out at a time
 * per node (WriteLane), so what piles up meanwhile goes in the next one.
 */
import { ContainerPolicy, NodeInfo, Resources, TaskSpec } from '../gen/loom';
import { nextCommitEstimate, stealAtAgeMs, stealHash, StealPolicy, thiefRank, turnScale } from '../core/steal-policy';
import { Placement, placementView, preferredFor } from '../core/placement';
import { addResources, refusal as refusal_ } from '../core/fit';
import { AHEAD_PER_SLOT, aheadRoom, Choice, chooseAhead, chooseClaims, freeSlots } from '../core/choose-claims';
import { Incarnation } from '../store/membership';
import { QueueWindow, WindowEntry } from '../store/queue-window';
import { BATCH_CHUNK, HeldTask, NodeIdentity, TaskTransitions } from '../store/transitions';
import { Executor } from './executor';
import { WriteLane } from './write-lane';
import { sleep } from '../core/sleep';

export interface SelfInfo {
  name: string;
  labels: Record<string, string>;
  capacity: Resources;
  docker: boolean;
  /** Fixed for the node's life (its flags), so a cached refusal stays true. */
  containerPolicy?: ContainerPolicy;
  /** The task kinds it runs (NodeInfo.kinds); command and container (if docker) when absent. */
  kinds?: string[];
}

const subtract = (a: Resources, b: Resources) => addResources(a, b, -1);

export interface StealDeps {
  self: () => SelfInfo;
  nodeInfos: () => NodeInfo[];
  inUse: () => Resources;
  starveAfterMs: number;
  window: QueueWindow;
  transitions: TaskTransitions;
  executor: Executor;
  slots: () => number;
  /** Extra slots (beyond slots()) only tasks of priority >= urgentPriority may take. */
  urgentSlots: number;
  urgentPriority: number;
  liveNodes: () => string[];
  nodesVersion: () => number;
  policy: StealPolicy;
  /** --placement: how the preferred node of a task is chosen (default spread). */
  placement?: Placement;
  /** With --max-load: the machine's measured CPU busy fraction, which lengthens steals. */
  cpuBusy?: () => number;
  log: (msg: string) => void;
  /** Shared with the executor's result writer: one claim-or-result transaction out at a time. */
  lane?: WriteLane;
}

/** A cached answer to "is this node preferred for the entry" (valid for one node-set version). */
interface Preference {
  version: number;
  preferred: boolean;
  /** This node's place among the entry's thieves (thiefRank; rank 0 of 1 when preferred). */
  thief: { rank: number; of: number };
  /** This node's steal hash for the entry, in [0, 1): its jitter and order among equals. */
  jitter: number;
}

export interface StealStats {
  claimed: number;
  lost: number;
  claimTxns: number;
  /** Results recorded in a claim's transaction instead of one of their own. */
  resultsInClaims: number;
}

export class StealLoop {
  private inc: Incarnation | undefined;
  private me: NodeIdentity | undefined;
  private claiming = false;
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private paused = false;
  private prefCache = new Map<string, Preference>();
  private refusals = new Map<string, { docker: boolean; refusal: string | undefined }>();
  private readonly lane: WriteLane;
  /** How long this node's claims take to commit (nextCommitEstimate): slow etcd stretches the thieves' turns. */
  private commitMs = 0;
  /** A pass once the lane is free (one function, so asking twice waits once). */
  private readonly retryClaim = () => this.wake();
  readonly stats: StealStats = { claimed: 0, lost: 0, claimTxns: 0, resultsInClaims: 0 };

  constructor(private readonly deps: StealDeps) {
    this.lane = deps.lane ?? new WriteLane();
    deps.window.onChange(() => this.wake());
    deps.executor.onSlotFree(() => this.wake());
  }

  /** Start claiming under this incarnation; stops by itself when it aborts. */
  activate(inc: Incarnation, me: NodeIdentity): void {
    this.inc = inc;
    this.me = me;
    inc.signal.addEventListener('abort', () => {
      if (this.inc === inc) {
        this.inc = undefined;
        this.me = undefined;
      }
    });
    this.wake();
  }

  /** Draining / shutting down: stop claiming (running tasks are untouched). */
  setPaused(paused: boolean): void {
    this.paused = paused;
    if (!paused) this.wake();
  }

  wake(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.pass();
    });
  }

  private schedule(atMs: number): void {
    if (atMs >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = atMs;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.wake();
    }, Math.max(1, atMs - Date.now()));
  }

  /**
   * Whether the placement strategy (core/placement.ts) prefers this node for
   * task `id` among the live nodes that could run it.
   */
  prefersHere(id: string, spec: TaskSpec, byAdmin: boolean): boolean {
    const { preferred, able } = this.placement(id, spec, byAdmin);
    return able.length <= 1 || preferred === this.me?.node;
  }

  /** The live nodes that could run task `id`, and the one of them the placement strategy prefers. */
  private placement(id: string, spec: TaskSpec, byAdmin: boolean): { preferred: string | undefined; able: string[] } {
    const placed = spec.pinNode || spec.constraints.length || spec.container?.image || spec.http?.url || spec.resources?.cpu || spec.resources?.memoryBytes || spec.resources?.diskBytes;
    const able = this.deps.nodeInfos().filter((n) => !n.draining && (!placed || refusal_(spec, n, byAdmin) === undefined));
    return { preferred: preferredFor(this.deps.placement ?? 'spread', id, able.map(placementView)), able: able.map((n) => n.name) };
  }

  /** Why this node can never run the entry (cached: the spec and this node's labels are fixed). */
  private refusalFor(entry: WindowEntry, self: SelfInfo): string | undefined {
    const cached = this.refusals.get(entry.key);
    if (cached && cached.docker === self.docker) return cached.refusal;
    const refusal = refusal_(entry.snapshot.spec!, self, entry.snapshot.submittedByAdmin);
    if (this.refusals.size > 20_000) this.refusals.clear();
    this.refusals.set(entry.key, { docker: self.docker, refusal });
    return refusal;
  }

  /**
   * Is this node the placement's choice among the live nodes that could run
   * the entry (by default rendezvous weighted by slots, see preferredNode),
   * and if not, where does it stand among the entry's thieves (thiefRank)?
   * Cached per entry until the node set changes, with the entry's steal hash
   * (fixed per node and task), so a pass hashes nothing it has hashed before.
   */
  private preference(entry: WindowEntry, version: number): Preference {
    const cached = this.prefCache.get(entry.key);
    if (cached && cached.version === version) return cached;
    const me = this.me!.node;
    const { preferred: first, able } = this.placement(entry.id, entry.snapshot.spec!, entry.snapshot.submittedByAdmin);
    const preferred = able.length <= 1 || first === me;
    const thief = preferred ? { rank: 0, of: 1 } : thiefRank(entry.id, able, me, first);
    const jitter = cached?.jitter ?? stealHash(me, entry.id);
    const pref = { version, preferred, thief, jitter };
    if (this.prefCache.size > 20_000) this.prefCache.clear();
    this.prefCache.set(entry.key, pref);
    return pref;
  }

  /** What to claim now (see chooseClaims), and when to look again if nothing. */
  private choose(entries: readonly WindowEntry[], freeSlots: number, now: number): Choice<WindowEntry> {
    const self = this.deps.self();
    const version = this.deps.nodesVersion();
    const running = this.deps.executor.count;
    const slots = this.deps.slots();
    const cpuBusy = this.deps.cpuBusy?.();
    const scale = turnScale(this.commitMs, this.deps.policy);
    return chooseClaims(entries, {
      freeSlots,
      free: subtract(self.capacity, this.deps.inUse()),
      now,
      starveAfterMs: this.deps.starveAfterMs,
      refused: (e) => this.refusalFor(e, self) !== undefined,
      preferred: (e) => this.preference(e, version).preferred,
      stealAt: (e) => {
        const { thief } = this.preference(e, version);
        return e.seenAtMs + stealAtAgeMs({ ageMs: now - e.seenAtMs, running, slots, cpuBusy, thief, turnScale: scale }, this.deps.policy);
      },
      stealRank: (e) => this.preference(e, version).jitter,
    });
  }

  private async pass(): Promise<void> {
    const inc = this.inc;
    const me = this.me;
    if (!inc || !me || inc.signal.aborted || this.paused || this.claiming) return;
    const slots = this.deps.slots();
    const ex = this.deps.executor;
    const running = ex.count;
    const room = freeSlots({ slots, urgentSlots: this.deps.urgentSlots, running, backlog: ex.backlog });
    let free = room.free;
    const urgentFree = room.urgentFree;
    // A claim ahead must start before a busy peer's steal delay would let it take the task.
    const waitBudgetMs = this.deps.policy.stealDelayMs + this.deps.policy.loadDelayMs;
    // And only while the queue is deep: more than every live node could claim ahead at once
    // (or more than the window holds).
    const w = this.deps.window;
    const deep = w.hasMore || w.length >= this.deps.liveNodes().length * slots * AHEAD_PER_SLOT;
    const ahead = deep ? aheadRoom({ slots, backlog: ex.backlog, typicalRunMs: ex.typicalRunMs, waitBudgetMs }) : 0;
    if (urgentFree <= 0 && ahead <= 0) return;
    if (w.length === 0) {
      if (w.hasMore && (free > 0 || ahead > 0)) {
        this.claiming = true;
        await w.refill().finally(() => (this.claiming = false));
      }
      return;
    }
    let view = w.view();
    // Full: only urgent tasks (the front of the window, which is in priority order) may go on, at once.
    const urgent = free <= 0;
    if (urgent) {
      const end = urgentFree > 0 ? view.findIndex((e) => e.priority < this.deps.urgentPriority) : 0;
      view = end === 0 ? [] : end > 0 ? view.slice(0, end) : view;
      free = urgentFree;
    }
    const now = Date.now();
    const first = view.length > 0 ? this.choose(view, free, now) : { chosen: [], nextAt: Infinity };
    const nextAt = first.nextAt;
    let chosen = first.chosen;
    if (ahead > 0) {
      const version = this.deps.nodesVersion();
      const self = this.deps.self();
      chosen = chosen.concat(chooseAhead(w.view(), ahead, {
        now,
        taken: new Set(chosen),
        refused: (e) => this.refusalFor(e, self) !== undefined,
        preferred: (e) => this.preference(e, version).preferred,
      }));
    }
    if (chosen.length === 0) {
      if (nextAt < Infinity) this.schedule(nextAt);
      return;
    }
    // A result batch is out: claim when it is back (with what finished meanwhile).
    if (!this.lane.tryAcquire(this.retryClaim)) return;
    this.claiming = true;
    let failed = false;
    // Results waiting to be written ride along in the claim's transaction.
    const finishes = chosen.length < BATCH_CHUNK ? this.deps.executor.takeResults(me.lease, BATCH_CHUNK - chosen.length) : [];
    const sentAt = Date.now();
    try {
      let results: (HeldTask | undefined)[];
      if (finishes.length > 0) {
        const both = await this.deps.transitions.claimAndFinish(chosen, finishes, me, Date.now(), inc.signal).catch((err) => {
          finishes.forEach((f) => f.reject(err));
          throw err;
        });
        finishes.forEach((f, k) => f.resolve(both.finished[k]));
        this.stats.resultsInClaims += finishes.length;
        results = both.claimed;
      } else {
        results = await this.deps.transitions.claim(chosen, me, Date.now(), inc.signal);
      }
      this.stats.claimTxns++;
      this.commitMs = nextCommitEstimate(this.commitMs, Date.now() - sentAt);
      results.forEach((held, i) => {
        this.deps.window.drop(chosen[i].key);
        this.prefCache.delete(chosen[i].key);
        this.refusals.delete(chosen[i].key);
        if (held) {
          this.stats.claimed++;
          // Urgent claims take an urgent slot now; the rest start as slots free.
          if (urgent && i < first.chosen.length) this.deps.executor.start(held, me, inc);
          else this.deps.executor.startWhenFree(held, me, inc);
        } else {
          this.stats.lost++;
        }
      });
    } catch (err) {
      failed = !inc.signal.aborted;
      if (failed) this.deps.log(`claim failed: ${(err as Error).message}`);
    } finally {
      // The lane is free while a failed claim backs off (results may still go).
      if (!failed) this.claiming = false;
      // Woken before the lane is released, so the next pass runs ahead of a
      // result batch waiting for the lane, and takes those results along.
      this.wake();
      this.lane.release();
    }
    if (failed) {
      await sleep(250, inc.signal);
      this.claiming = false;
      this.wake();
    }
  }
}
