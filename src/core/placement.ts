/**
 * Placement strategies (`loom node --placement`): which live node is a
 * queued task's *preferred* node, the one that claims it at once while the
 * others wait (steal-policy.ts). Pure, and computed by every node from the
 * same published node records, so the nodes agree without talking; where
 * records lag (they are published every few seconds), a node that turns out
 * full simply does not claim, and a peer steals after its delay.
 *
 * - spread (default): rendezvous hashing weighted by slots: each node is
 *   preferred for a share of the tasks proportional to its slots, and a node
 *   joining or leaving moves only its own share.
 * - random: rendezvous hashing with equal weights: every node alike,
 *   whatever its size (a per-task coin all nodes flip the same way).
 * - pack: the busiest node that still has a free slot (ties: more slots,
 *   then name): work piles onto few nodes and the rest stay idle, to be
 *   scaled down.
 * - least-loaded: rendezvous weighted by what is free as measured: free
 *   slots x idle CPU share x available memory share (from /proc): a node
 *   busy with work outside loom gets fewer tasks.
 */
import type { NodeInfo } from '../gen/loom';
import { invalid } from './errors';
import { preferredNode } from './steal-policy';

export type Placement = 'spread' | 'random' | 'pack' | 'least-loaded';

export const PLACEMENTS: readonly Placement[] = ['spread', 'random', 'pack', 'least-loaded'];

export function parsePlacement(text: string): Placement {
  const p = text.trim().toLowerCase();
  if ((PLACEMENTS as readonly string[]).includes(p)) return p as Placement;
  throw invalid(`invalid --placement "${text.slice(0, 40)}": expected one of ${PLACEMENTS.join(', ')}`);
}

/** What a strategy reads of a live node that could run the task (its published record). */
export interface PlacementView {
  name: string;
  slots: number;
  /** Tasks running, as last published. */
  running: number;
  /** Busy share of the machine's CPUs, 0..1 (undefined: not measured). */
  cpuBusy?: number;
  /** Available share of the machine's memory, 0..1 (undefined: not measured). */
  memoryFree?: number;
}

/** The view of a published node record. */
export function placementView(n: Pick<NodeInfo, 'name' | 'slots' | 'running' | 'metrics'>): PlacementView {
  const m = n.metrics;
  return {
    name: n.name, slots: n.slots, running: n.running,
    ...(m ? { cpuBusy: m.cpuUtilization, ...(m.memoryTotalBytes > 0 ? { memoryFree: m.memoryAvailableBytes / m.memoryTotalBytes } : {}) } : {}),
  };
}

/** Whether a strategy reads load (running, CPU, memory), which changes between node-set changes. */
export function readsLoad(p: Placement): boolean {
  return p === 'pack' || p === 'least-loaded';
}

const clamp01 = (x: number | undefined, fallback: number) => (x === undefined || !Number.isFinite(x) ? fallback : Math.min(1, Math.max(0, x)));

/** The measured free capacity least-loaded weighs a node by (0 when it has no free slot). */
export function freeWeight(n: PlacementView): number {
  const freeSlots = Math.max(0, n.slots - n.running);
  // A floor keeps a saturated but slot-free machine in the draw: it is slow, not gone.
  return freeSlots * Math.max(0.05, 1 - clamp01(n.cpuBusy, 0)) * Math.max(0.05, clamp01(n.memoryFree, 1));
}

/** The preferred node for `taskId` among `nodes` (those that could run it), or undefined if none. */
export function preferredFor(p: Placement, taskId: string, nodes: readonly PlacementView[]): string | undefined {
  if (nodes.length === 0) return undefined;
  const names = nodes.map((n) => n.name);
  const by = new Map(nodes.map((n) => [n.name, n]));
  switch (p) {
    case 'random':
      return preferredNode(taskId, names);
    case 'least-loaded':
      return preferredNode(taskId, names, (name) => freeWeight(by.get(name)!));
    case 'pack': {
      const open = nodes.filter((n) => n.running < n.slots);
      if (open.length === 0) return preferredNode(taskId, names, (name) => by.get(name)!.slots);
      return [...open].sort((a, b) => b.running - a.running || b.slots - a.slots || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))[0].name;
    }
    default:
      return preferredNode(taskId, names, (name) => by.get(name)!.slots);
  }
}
