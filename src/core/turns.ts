/**
 * Owners take turns within a priority (pure). Each queued task carries a
 * *round* in its queue key (Keys.queued): the queue sorts by priority, then
 * round, then submit order. An owner's next task gets the round after its
 * last one still queued, but never one before the band's head: so each
 * owner's k-th waiting task sorts with every other owner's k-th, and one
 * owner's 100,000 queued tasks hold back a newcomer's first by at most one
 * task per owner ahead of it in the current round.
 *
 * The head is the virtual clock of start-time fair queueing: a newcomer
 * starts at the round being served now, not at round 1 (which would put
 * a burst of its tasks ahead of everyone who waited). An owner whose last
 * task is no longer queued starts at the head too, however far ahead its
 * old rounds went: that history is stale (its tasks ran, or the band
 * emptied and the head went back to nothing).
 */

/** Rounds are uint32 (Task.queue_round): 10 digits in a key. */
export const ROUND_DIGITS = 10;
export const ROUND_MAX = 4_294_967_295;

/** The last round an owner took in a band, and whether that task is still queued. */
export interface LastTurn {
  round: number;
  queued: boolean;
}

/**
 * The first round of an owner's next tasks in a band, given the round at
 * the band's head (0: the band holds no task with a round) and the owner's
 * last turn there. Rounds start at 1: 0 is "no round" (an older node's key).
 */
export function firstRound(head: number, last: LastTurn | undefined): number {
  const after = last?.queued ? last.round + 1 : 0;
  return Math.min(ROUND_MAX, Math.max(1, head, after));
}

/**
 * Whether firstRound depends on the owner's last task still being queued
 * (so the caller need only look that up when it can matter).
 */
export function lastTurnMatters(head: number, lastRound: number | undefined): boolean {
  return lastRound !== undefined && lastRound + 1 > Math.max(1, head);
}

/** The stored form of an owner's last turn in a band: "<round> <task id>". */
export function formatTurn(round: number, taskId: string): string {
  return `${round} ${taskId}`;
}

/** Parses formatTurn's text; undefined for anything else (a corrupt value counts as no history). */
export function parseTurn(text: string): { round: number; taskId: string } | undefined {
  const m = /^(\d{1,10}) ([0-9a-f-]{36})$/.exec(text);
  if (!m) return undefined;
  const round = Number(m[1]);
  return round >= 1 && round <= ROUND_MAX ? { round, taskId: m[2] } : undefined;
}
