/**
 * Which queued tasks a node claims in one pass of its steal loop, pure: the
 * entries (the head of the queue in dispatch order), this node's free slots
 * and resources, and three questions the caller answers (and caches): may
 * this node run the entry at all, is it the entry's preferred node, and when
 * may it steal the entry otherwise.
 *
 * Band by band (a band = one priority, in FIFO order): first the band's
 * entries this node is preferred for, from the front; then, if room remains,
 * entries of other nodes whose steal time has passed, from the BACK of the
 * band (the preferred nodes work from the front, so a thief rarely races
 * them). A lower band is only looked at once nothing in the higher bands is
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
  /** When this node, not preferred, may steal the entry (local ms). */
  stealAt: (e: E) => number;
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
    for (let k = stealable.length - 1; k >= 0 && chosen.length < freeSlots; k--) take(stealable[k]);
    if (waiting) break;
  }
  return { chosen, nextAt };
}
