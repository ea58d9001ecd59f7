/**
 * A simulated loom node: its steal loop's decisions are loom's own pure
 * functions (core/choose-claims.ts chooseClaims and freeSlots,
 * core/steal-policy.ts preferredNode and stealAtAgeMs, with the same
 * per-node jitter), fed by a watch of the simulated queue. One claim
 * transaction is out at a time, as on a real node; a task's slot frees when
 * its process exits, and its result goes to the store after that.
 *
 * What it leaves out (say so when reading its figures): claims ahead, CPU
 * (every node has its own and passes cost nothing), resources and placement,
 * the result writer's batching (one result per transaction here).
 */
import { chooseClaims, freeSlots } from '../../src/core/choose-claims';
import { DEFAULT_STEAL_POLICY, nextCommitEstimate, preferredNode, stealAtAgeMs, stealHash, StealPolicy, turnScale } from '../../src/core/steal-policy';
import { Clock } from './clock';
import { Rng } from '../chaos/rng';
import { QueueEvent, SimStore } from './store';
import { SimLog } from './checker';

/** etcd and network delays, in virtual ms; `slow` multiplies the transaction time (a slow-etcd fault). */
export class Net {
  slow = 1;
  /** Chance that a claim's reply is lost after it committed (a lost-reply fault is on). */
  lostReply = 0;
  constructor(private readonly rng: Rng) {}
  txnMs(): number {
    return (1 + this.rng.float() * 3) * this.slow;
  }
  replyMs(): number {
    return 0.2 + this.rng.float() * 0.8;
  }
  watchMs(): number {
    return 0.5 + this.rng.float() * 2.5;
  }
  loses(): boolean {
    return this.lostReply > 0 && this.rng.chance(this.lostReply);
  }
}

/**
 * Each task's preferred node and order of thieves over a node set, computed
 * once for all simulated nodes (every real node computes the same, its own
 * part of it: preferredNode and thiefRank). The order is checked against
 * thiefRank in test/unit/sim.test.ts.
 */
export class StealOrders {
  private readonly cache = new Map<string, { members: string; preferred: string | undefined; rank: Map<string, number> }>();

  of(id: string, names: readonly string[], members: string): { preferred: string | undefined; rank: ReadonlyMap<string, number> } {
    const hit = this.cache.get(id);
    if (hit?.members === members) return hit;
    const preferred = preferredNode(id, names);
    const thieves = names.filter((n) => n !== preferred).map((n) => ({ n, h: stealHash(n, id) }));
    thieves.sort((a, b) => a.h - b.h || (a.n < b.n ? -1 : a.n > b.n ? 1 : 0));
    const entry = { members, preferred, rank: new Map(thieves.map((t, i) => [t.n, i])) };
    this.cache.set(id, entry);
    return entry;
  }
}

interface Entry {
  id: string;
  priority: number;
  round: number;
  seenAtMs: number;
  snapshot: { notBeforeMs: number };
  /** Unqueued or claimed: dropped lazily, so an event costs no scan of the queue. */
  gone?: boolean;
  /** Rendezvous choice, thief rank and steal hash, cached per node set as the real steal loop does. */
  pref?: { members: string; preferred: boolean; rank: number; jitter: number };
}

/** The head of the queue a node looks at in one pass (QueueWindow's size on a real node). */
const WINDOW = 1000;
const ENTRY_ORDER = (a: Entry, b: Entry) => b.priority - a.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

export class SimNode {
  alive = false;
  /** Its lease is live: what other nodes see in /node/ (a dead node stays listed until its lease lapses). */
  listed = false;
  lease = '';
  private incarnation = 0;
  /** The node's view of the queue, best first; `gone` entries are skipped and compacted away. */
  private window: Entry[] = [];
  private readonly byId = new Map<string, Entry>();
  private goneCount = 0;
  private readonly running = new Map<string, number>();
  private claiming = false;
  private passAt = Infinity;
  /** When the last watch batch reaches this node (none overtakes it). */
  private lastWatchAt = 0;
  private lastSeq = 0;
  /** How long its claims take to commit (nextCommitEstimate), which stretches its turns. */
  private commitMs = 0;
  claimTxns = 0;
  lostClaims = 0;

  constructor(
    readonly name: string,
    private readonly slots: number,
    private readonly clock: Clock,
    private readonly store: SimStore,
    private readonly net: Net,
    private readonly live: () => string[],
    private readonly durationOf: (id: string) => number,
    private readonly log: SimLog,
    private readonly orders: StealOrders,
    private readonly policy: StealPolicy = DEFAULT_STEAL_POLICY,
    private readonly thiefOrder = true,
    private readonly scaleTurns = true,
  ) {
    // One watch stream per node, in commit order as etcd sends it: a batch is
    // never delivered before the one committed ahead of it.
    store.watch((events, seq) => {
      const inc = this.incarnation;
      const at = Math.max(this.clock.now + this.net.watchMs(), this.lastWatchAt);
      this.lastWatchAt = at;
      this.clock.after(at - this.clock.now, () => {
        if (seq < this.lastSeq) this.log.outOfOrder(this.name, seq, this.lastSeq);
        this.lastSeq = seq;
        if (inc === this.incarnation && this.alive) this.onEvents(events);
      });
    });
  }

  /** Starts (or restarts, as a new incarnation with a new lease) and lists the queue. */
  join(): void {
    this.incarnation++;
    this.lease = `${this.name}#${this.incarnation}`;
    this.alive = true;
    this.listed = true;
    this.store.grant(this.lease);
    this.window = this.store.queued().map((t) => ({ id: t.id, priority: t.priority, round: t.round, seenAtMs: this.clock.now, snapshot: { notBeforeMs: 0 } }));
    this.window.sort(ENTRY_ORDER);
    this.byId.clear();
    for (const e of this.window) this.byId.set(e.id, e);
    this.goneCount = 0;
    this.schedulePass(0);
  }

  /** The process dies: its tasks die with it (the reaper's job); the lease lapses after ttlMs. */
  die(ttlMs: number): void {
    if (!this.alive) return;
    this.alive = false;
    for (const id of this.running.keys()) this.log.killed(id, this.name, this.clock.now);
    this.running.clear();
    this.claiming = false;
    this.passAt = Infinity;
    const lease = this.lease;
    this.incarnation++;
    const inc = this.incarnation;
    this.clock.after(ttlMs, () => {
      if (inc === this.incarnation) this.listed = false;
      this.store.expire(lease);
    });
  }

  get busy(): number {
    return this.running.size;
  }

  private onEvents(events: QueueEvent[]): void {
    for (const e of events) {
      const old = this.byId.get(e.id);
      if (old) this.drop(old);
      if (e.type !== 'queued') continue;
      const entry: Entry = { id: e.id, priority: e.priority, round: e.round, seenAtMs: this.clock.now, snapshot: { notBeforeMs: 0 } };
      let at = this.window.length;
      while (at > 0 && ENTRY_ORDER(this.window[at - 1], entry) > 0) at--;
      this.window.splice(at, 0, entry);
      this.byId.set(e.id, entry);
    }
    this.schedulePass(0);
  }

  private drop(e: Entry): void {
    if (e.gone) return;
    e.gone = true;
    this.byId.delete(e.id);
    this.goneCount++;
    if (this.goneCount > 256) {
      this.window = this.window.filter((x) => !x.gone);
      this.goneCount = 0;
    }
  }

  /** The first WINDOW entries still queued (QueueWindow's size on a real node). */
  private head(): Entry[] {
    const out: Entry[] = [];
    for (const e of this.window) {
      if (out.length >= WINDOW) break;
      if (!e.gone) out.push(e);
    }
    return out;
  }

  private schedulePass(delayMs: number): void {
    const at = this.clock.now + delayMs;
    if (at >= this.passAt) return;
    this.passAt = at;
    const inc = this.incarnation;
    this.clock.after(delayMs, () => {
      if (inc !== this.incarnation || this.passAt !== at) return;
      this.passAt = Infinity;
      this.pass();
    });
  }

  private pass(): void {
    if (!this.alive || this.claiming) return;
    const { free } = freeSlots({ slots: this.slots, urgentSlots: 0, running: this.running.size, backlog: 0 });
    const head = this.head();
    if (free <= 0 || head.length === 0) return;
    const names = this.live();
    const members = names.join(',');
    const running = this.running.size;
    const now = this.clock.now;
    const scale = this.scaleTurns ? turnScale(this.commitMs, this.policy) : 1;
    const pref = (e: Entry) => {
      if (e.pref?.members !== members) {
        const order = this.orders.of(e.id, names, members);
        const preferred = names.length <= 1 || order.preferred === this.name;
        const rank = preferred ? 0 : order.rank.get(this.name) ?? names.length;
        e.pref = { members, preferred, rank, jitter: e.pref?.jitter ?? stealHash(this.name, e.id) };
      }
      return e.pref;
    };
    const choice = chooseClaims(head, {
      freeSlots: free,
      free: { cpu: 0, memoryBytes: 0, diskBytes: 0 },
      now,
      starveAfterMs: 10_000,
      refused: () => false,
      preferred: (e) => pref(e).preferred,
      stealAt: (e) => {
        const thief = this.thiefOrder ? { rank: pref(e).rank, of: names.length - 1 } : undefined;
        return e.seenAtMs + stealAtAgeMs({ ageMs: now - e.seenAtMs, running, slots: this.slots, thief, turnScale: scale }, this.policy, () => pref(e).jitter);
      },
      stealRank: (e) => pref(e).jitter,
    });
    if (choice.chosen.length === 0) {
      if (choice.nextAt < Infinity) this.schedulePass(choice.nextAt - now);
      return;
    }
    this.claim(choice.chosen);
  }

  private claim(chosen: Entry[]): void {
    this.claiming = true;
    this.claimTxns++;
    const inc = this.incarnation;
    const lease = this.lease;
    const items = chosen.map((e) => ({ id: e.id, round: e.round }));
    for (const e of chosen) this.drop(e);
    const sentAt = this.clock.now;
    this.clock.after(this.net.txnMs(), () => {
      const won = this.store.claim(items, lease);
      const lost = this.net.loses();
      this.clock.after(this.net.replyMs() + (lost ? 200 : 0), () => {
        if (inc !== this.incarnation) return;
        this.claiming = false;
        if (!lost) this.commitMs = nextCommitEstimate(this.commitMs, this.clock.now - sentAt);
        items.forEach((item, k) => {
          const attempt = won[k];
          if (attempt === undefined) this.lostClaims++;
          // A lost reply: the node re-reads and hands back what it turns out to hold, unstarted.
          else if (lost) this.clock.after(this.net.txnMs(), () => this.store.handBack(item.id, lease, attempt));
          else this.start(item.id, attempt);
        });
        this.schedulePass(0);
      });
    });
  }

  private start(id: string, attempt: number): void {
    const inc = this.incarnation;
    const lease = this.lease;
    this.running.set(id, attempt);
    this.log.started(id, this.name, attempt, this.clock.now);
    this.clock.after(this.durationOf(id), () => {
      if (inc !== this.incarnation) return;
      this.running.delete(id);
      this.log.exited(id, this.name, this.clock.now);
      this.schedulePass(0);
      this.clock.after(this.net.txnMs(), () => {
        if (this.store.finish(id, lease, attempt)) this.log.recorded(id, this.name, attempt);
      });
    });
  }
}
