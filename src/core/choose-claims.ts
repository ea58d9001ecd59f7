/**
 * Which queued tasks a node claims in one pass of its steal loop, pure: the
 * entries (the head of the queue in dispatch order), this node's free slots
 * and resources, and three questions the caller answers (and caches): may
 * this node run the entry at all, is it the entry's preferred node, and when
 * may it steal the entry otherwise.
 *
 * Band by band (a band = one priority, in FIFO order): first the band's
 * entries this node is preferred for, from the front; then, if room remains,
 * entries of other nodes that are in this node's turn (stealAt, see
 * stealAtAgeMs), in this node's own order (stealRank, a hash of node and
 * task), so that it does not always take the entry the preferred node takes
 * next. A lower band is only looked at once nothing in the higher bands is
 * waiting, so priority holds across the cluster. An entry must fit what is
 * free in every dimension. A preferred entry that has waited longer than
 * starveAfterMs and does not fit is a barrier: nothing behind it is taken
 * until it fits, so big tasks are not starved by a stream of small ones.
 *
 * The scan ends as soon as the free slots are filled: the entries after that
 * point cannot change the choice (nextAt only matters when nothing was
 * chosen), and a pass runs after every change of the queue's head, so a scan
 * of the whole window each time is the steal loop's largest cost.
 */
import { Resources, TaskSpec } from '../gen/loom';
import { addResources, fits, NO_RESOURCES } from './fit';

export interface ClaimCandidate {
  priority: number;
  /** Local time the node first saw the entry. */
  seenAtMs: number;
  snapshot: { notBeforeMs: number; spec?: TaskSpec };
}

export interface ChooseInput<E extends ClaimCandidate> {
  freeSlots: number;
  /** Resources free on this node (capacity minus what running tasks asked for). */
  free: Resources;
  now: number;
  starveAfterMs: number;
  /** True when this node can never run the entry (placement, labels, Docker). */
  refused: (e: E) => boolean;
  /** True when this node is the entry's preferred node. */
  preferred: (e: E) => boolean;
  /** When this node, not preferred, may next steal the entry (local ms; at most `now`: now). */
  stealAt: (e: E) => number;
  /**
   * This node's own order over entries it may steal (lower first), fixed per
   * node and task (a hash of both): the preferred nodes take theirs from the
   * front, a thief from its own place.
   */
  stealRank: (e: E) => number;
}

export interface Choice<E> {
  chosen: E[];
  /** Earliest time something not chosen becomes claimable (Infinity: none). */
  nextAt: number;
}

export function chooseClaims<E extends ClaimCandidate>(entries: readonly E[], input: ChooseInput<E>): Choice<E> {
  const { freeSlots, now } = input;
  let free = input.free;
  const chosen: E[] = [];
  let nextAt = Infinity;
  const take = (e: E): boolean => {
    const want = e.snapshot.spec?.resources ?? NO_RESOURCES;
    if (chosen.length >= freeSlots || !fits(want, free)) return false;
    chosen.push(e);
    free = addResources(free, want, -1);
    return true;
  };
  let i = 0;
  while (i < entries.length && chosen.length < freeSlots) {
    const priority = entries[i].priority;
    const stealable: E[] = [];
    let waiting = false;
    let barrier = false;
    for (; i < entries.length && entries[i].priority === priority && chosen.length < freeSlots; i++) {
      const entry = entries[i];
      if (entry.snapshot.notBeforeMs > now) {
        nextAt = Math.min(nextAt, entry.snapshot.notBeforeMs);
        continue;
      }
      if (input.refused(entry)) continue;
      if (input.preferred(entry)) {
        if (!take(entry) && now - entry.seenAtMs > input.starveAfterMs && chosen.length < freeSlots) {
          barrier = true;
          break;
        }
        continue;
      }
      const at = input.stealAt(entry);
      if (at <= now) stealable.push(entry);
      else {
        waiting = true;
        nextAt = Math.min(nextAt, at);
      }
    }
    if (barrier) break;
    if (stealable.length > freeSlots - chosen.length) stealable.sort((a, b) => input.stealRank(a) - input.stealRank(b));
    for (let k = 0; k < stealable.length && chosen.length < freeSlots; k++) take(stealable[k]);
    if (waiting) break;
  }
  return { chosen, nextAt };
}

/** Claims ahead of free slots: at most this many per slot (see aheadRoom). */
export const AHEAD_PER_SLOT = 8;

/**
 * Slots a node may fill now, the one rule for the steal loop and for a
 * submit claimed on the spot. Tasks claimed ahead wait for a slot, so for
 * ordinary tasks they count as running (free); urgent tasks start at once in
 * a slot of their own, up to urgentSlots beyond slots, and tasks waiting
 * ahead hold none of those (urgentFree).
 */
export function freeSlots(s: { slots: number; urgentSlots: number; running: number; backlog: number }): { free: number; urgentFree: number } {
  return { free: s.slots - s.running - s.backlog, urgentFree: s.slots + s.urgentSlots - s.running };
}

/**
 * How many tasks a node may claim beyond its free slots, to start as its
 * running ones end (Executor.startWhenFree): none unless its tasks are short.
 * The last one claimed ahead waits about (ahead / slots) x the typical run
 * time for a slot; that wait is kept under waitBudgetMs (the steal loop
 * gives a busy peer's steal delay), so a task taken ahead starts about when
 * another busy node would first have been allowed to steal it.
 *
 * Refills happen only once the backlog is below `slots` (a low-water mark),
 * and then fill it up to AHEAD_PER_SLOT x slots: each claim transaction takes
 * more than `slots` tasks (and records the results that piled up meanwhile,
 * see Executor.resultsMayWait) instead of one task per transaction. Fewer,
 * fuller transactions are the point: etcd's cost is mostly per transaction
 * (a raft entry, a WAL fsync on every member), and a node whose tasks take
 * 2 ms otherwise sends one per task.
 */
export function aheadRoom(opts: { slots: number; backlog: number; typicalRunMs: number; waitBudgetMs: number }): number {
  const { slots, backlog, typicalRunMs, waitBudgetMs } = opts;
  if (!(typicalRunMs >= 0) || typicalRunMs >= waitBudgetMs || slots <= 0 || backlog >= slots) return 0;
  const byWait = Math.floor((slots * waitBudgetMs) / Math.max(1, typicalRunMs));
  return Math.max(0, Math.min(slots * AHEAD_PER_SLOT, byWait) - backlog);
}

/**
 * Which entries to claim ahead (see aheadRoom): from the front of the window,
 * in dispatch order, up to `room` entries that are not already chosen, are due
 * (notBeforeMs passed), that this node may run and is the preferred node for,
 * and that ask for no resources and no container (plain tasks: what waits for
 * a slot must need nothing but the slot), nor for no restart after a node
 * failure (a task claimed ahead on a node that dies would be LOST without
 * having run; one that may restart is simply queued again). Never an entry
 * of another node: a claim ahead takes nothing a peer with a free slot was
 * about to take.
 */
export function chooseAhead<E extends ClaimCandidate>(
  entries: readonly E[],
  room: number,
  input: Pick<ChooseInput<E>, 'now' | 'refused' | 'preferred'> & { taken: ReadonlySet<E> },
): E[] {
  const out: E[] = [];
  for (let i = 0; i < entries.length && out.length < room; i++) {
    const e = entries[i];
    const spec = e.snapshot.spec;
    const r = spec?.resources;
    if (input.taken.has(e) || e.snapshot.notBeforeMs > input.now) continue;
    if (spec?.container?.image || r?.cpu || r?.memoryBytes || r?.diskBytes) continue;
    // Not restarted if its node dies (LOST): it must not be lost unstarted.
    if (spec?.restartOnNodeFailure === false) continue;
    if (!input.preferred(e) || input.refused(e)) continue;
    out.push(e);
  }
  return out;
}
