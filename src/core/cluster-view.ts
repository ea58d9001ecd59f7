/**
 * What the whole cluster looks like from one node's directory of live nodes:
 * the free slots, and how many tasks the nodes started between two looks
 * (from each node's claim counters, which count from its start). Pure;
 * used by the HTTP API's events, the dashboard's chart and /metrics.
 */
import type { NodeInfo } from '../gen/loom';

/** Slots free on the live nodes that take work (a drained or paused node offers none). */
export function slotsFree(nodes: readonly NodeInfo[]): number {
  return nodes.reduce((n, x) => n + (x.draining ? 0 : Math.max(0, x.slots - x.running)), 0);
}

/** A node's counter as last seen: a restart (a new startedAtMs) starts it from 0 again. */
export interface ClaimCount {
  startedAtMs: number;
  claimed: number;
}

/**
 * Tasks the live nodes started since `before` (the counts of the last look),
 * and the counts to pass next time. A node seen for the first time counts
 * from its last look's absence: all it claimed since its start, unless it
 * started before the first look (`sinceMs`), whose past is not this interval's.
 */
export function startedSince(
  before: ReadonlyMap<string, ClaimCount>,
  nodes: readonly NodeInfo[],
  sinceMs: number,
): { started: number; counts: Map<string, ClaimCount> } {
  let started = 0;
  const counts = new Map<string, ClaimCount>();
  for (const n of nodes) {
    const now = { startedAtMs: n.startedAtMs, claimed: n.claimed + n.claimedAtSubmit };
    counts.set(n.name, now);
    const prev = before.get(n.name);
    if (prev && prev.startedAtMs === now.startedAtMs) started += Math.max(0, now.claimed - prev.claimed);
    else if (now.startedAtMs >= sinceMs) started += now.claimed;
  }
  return { started, counts };
}
