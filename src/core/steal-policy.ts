/**
 * Who should claim a queued task, and how long a node waits before trying.
 *
 * Every live node sees every queued task. To keep them from racing on each
 * one, each task has a *preferred* node chosen by rendezvous hashing over the
 * live node names: the preferred node claims at once, the others wait a
 * little (and longer the busier they are), so they only steal what the
 * preferred node cannot take. The thieves of a task come in a per-task order
 * (thiefRank): the first few get a turn each, one step apart, so a task the
 * preferred node cannot take is tried by one thief at a time instead of by
 * every idle node at once; after them everyone may steal, with a jitter.
 */
import { invalid } from './errors';

export interface StealPolicy {
  /** Wait of a non-preferred node before stealing, when idle. */
  stealDelayMs: number;
  /** Extra wait at full load (scaled by running/slots). */
  loadDelayMs: number;
  /** Uniform random jitter added to every non-immediate wait. */
  jitterMs: number;
  /**
   * A task claimed ahead of a free slot (see aheadRoom) that waited this long
   * for one is handed back: the tasks holding the slots turned out long.
   */
  aheadStaleMs: number;
  /** Thieves of a task that get a turn of their own (thiefRank below this), before everyone. */
  thiefTurns: number;
  /**
   * Time between two thieves' turns: long enough for a claim to commit and
   * reach the next thief's watch, so the next one sees the task gone instead
   * of racing for it.
   */
  thiefStepMs: number;
  /**
   * After the turns, thieves of rank T + r wait crowdStepMs x log2(1 + r)
   * more: the crowd comes in over time, not all at once, so when a few
   * tasks are left for many idle nodes the earliest in each task's order win
   * (npm run sim -- --nodes 500 shows the lost claims).
   */
  crowdStepMs: number;
}

export const DEFAULT_STEAL_POLICY: StealPolicy = {
  stealDelayMs: 15,
  loadDelayMs: 40,
  jitterMs: 10,
  aheadStaleMs: 250,
  thiefTurns: 4,
  thiefStepMs: 10,
  crowdStepMs: 20,
};

/** 32-bit FNV-1a of a string: cheap, stable across processes. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/**
 * Rendezvous (highest random weight) choice of a node for a task, weighted:
 * each node scores weight / -ln(u), u its hash of the task mapped into (0, 1),
 * so a node is chosen for a share of the tasks proportional to its weight
 * (the steal loop passes slots: a 6-slot node prefers 3x the tasks of a
 * 2-slot one). With equal weights the order is the hashes' own order. Adding
 * or removing a node moves only the tasks it gains or had. Nodes with no
 * positive weight are chosen only when none has one.
 */
export function preferredNode(taskId: string, nodes: readonly string[], weightOf?: (node: string) => number): string | undefined {
  let best: string | undefined;
  let bestScore = -Infinity;
  for (const node of nodes) {
    const hash = fnv1a(`${node}\u0000${taskId}`);
    const weight = weightOf ? weightOf(node) : 1;
    const score = weight > 0 ? weight / -Math.log((hash + 0.5) / 0x1_0000_0000) : hash - 0x1_0000_0000;
    if (score > bestScore || (score === bestScore && best !== undefined && node < best)) {
      best = node;
      bestScore = score;
    }
  }
  return best;
}

/**
 * FNV-1a of node and turn, its bits mixed (murmur3's finalizer): turn keys
 * differ only in their last characters, which plain FNV-1a spreads poorly
 * over the high bits that decide the order.
 */
function turnScore(node: string, turn: string): number {
  let h = fnv1a(`${node}\u0000${turn}`);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * A node's steal hash for a task in [0, 1), fixed per node and task: the
 * order of thieves (thiefRank), and the jitter of a steal after their turns.
 */
export function stealHash(node: string, taskId: string): number {
  return turnScore(node, `/${taskId}`) / 0x1_0000_0000;
}

/**
 * Where `self` stands among the thieves of task `taskId`: the nodes that could
 * run it (`nodes`) other than its preferred node, in stealHash order (ties:
 * name). 0 = the first thief. Every node computes the same order from the
 * same node list, so the thieves of one task take turns without talking, and
 * each task has its own order, so one node's overflow spreads over all.
 */
export function thiefRank(taskId: string, nodes: readonly string[], self: string, preferred: string | undefined): number {
  const mine = stealHash(self, taskId);
  let rank = 0;
  for (const node of new Set(nodes)) {
    if (node === self || node === preferred) continue;
    const h = stealHash(node, taskId);
    if (h < mine || (h === mine && node < self)) rank++;
  }
  return rank;
}

/** Nodes that make each periodic cluster-wide sweep (orphans, open jobs) per interval. */
export const SWEEPERS_PER_TURN = 2;

/**
 * Whether `self` is one of the `k` nodes whose turn `turn` is (rendezvous
 * order of the turn's key over the live nodes and self). Cluster-wide sweeps
 * that every node could do (orphaned running keys, open jobs) use it with a
 * key naming the sweep and its time slot: k nodes sweep per slot, not all N,
 * and a different k the next slot, so a node that stopped sweeping (dead,
 * stuck) is covered by the others within a slot or two.
 */
export function takesTurn(self: string, nodes: readonly string[], turn: string, k: number): boolean {
  const all = [...new Set([...nodes, self])];
  if (all.length <= k) return true;
  const mine = turnScore(self, turn);
  let ahead = 0;
  for (const node of all) {
    const h = turnScore(node, turn);
    if (node !== self && (h > mine || (h === mine && node < self))) ahead++;
  }
  return ahead < k;
}

/**
 * How long this node waits before claiming a task. 0 = claim now. `cpuBusy`
 * (the measured busy fraction of the machine's CPUs, 0..1; given with
 * --max-load) lengthens a steal, never the preferred node's own claim.
 * `thiefRank` (see thiefRank) places a steal in its turn: the first
 * policy.thiefTurns thieves wait one thiefStepMs more each, without jitter
 * (a turn is one node's), and the rest wait past every turn, in waves
 * (crowdStepMs), with jitter. Without it every thief steals at once, with
 * jitter. `random` is injectable so tests are deterministic.
 */
export function claimDelayMs(
  opts: { preferred: boolean; running: number; slots: number; cpuBusy?: number; thiefRank?: number },
  policy: StealPolicy = DEFAULT_STEAL_POLICY,
  random: () => number = Math.random,
): number {
  const slotLoad = opts.slots > 0 ? Math.min(1, opts.running / opts.slots) : 1;
  if (opts.preferred && slotLoad < 1) return 0;
  // A steal waits by the busier of its slots and its measured CPUs (work outside loom counts too).
  const load = Math.max(slotLoad, Math.min(1, opts.cpuBusy ?? 0));
  const base = opts.preferred ? 0 : policy.stealDelayMs;
  const wait = base + policy.loadDelayMs * load;
  const rank = opts.preferred ? undefined : opts.thiefRank;
  if (rank !== undefined && rank < policy.thiefTurns) return wait + policy.thiefStepMs * rank;
  // Past the turns the crowd comes in over time: rank T + r waits crowdStepMs x log2(1 + r) more.
  const crowd = rank === undefined ? 0 : policy.thiefTurns * policy.thiefStepMs + policy.crowdStepMs * Math.log2(1 + rank - policy.thiefTurns);
  return wait + crowd + policy.jitterMs * random();
}

/**
 * The order in which a thief looks at tasks it may steal (lower first): its
 * own turns first, earliest turn first, then the rest by its steal hash, so
 * two thieves looking at the same stealable tasks start at different ones.
 */
export function stealOrder(thiefRank: number, hash: number, policy: StealPolicy = DEFAULT_STEAL_POLICY): number {
  return Math.min(thiefRank, policy.thiefTurns) + hash;
}

/** How far below --max-load the measured CPU must fall before a node that held back claims again. */
export const MAX_LOAD_HYSTERESIS = 0.1;

/**
 * --max-load: why a node whose CPUs are this busy (the measured busy
 * fraction of all CPUs, its own tasks and everything else on the machine)
 * takes no new tasks; undefined when it may. `holding` says whether it holds
 * back now: it resumes only below maxLoad - MAX_LOAD_HYSTERESIS, so a load
 * that hovers at the threshold does not flap. maxLoad 0 = never.
 */
export function loadHoldReason(cpuBusy: number, maxLoad: number, holding: boolean): string | undefined {
  if (maxLoad <= 0) return undefined;
  const limit = holding ? maxLoad - MAX_LOAD_HYSTERESIS : maxLoad;
  if (cpuBusy < limit) return undefined;
  const pct = (f: number) => `${Math.round(f * 100)}%`;
  return `CPUs ${pct(cpuBusy)} busy (--max-load ${pct(maxLoad)}; takes tasks again below ${pct(maxLoad - MAX_LOAD_HYSTERESIS)})`;
}

/** --max-load text: "90%" or "0.9" (a share of the CPUs), "0" = off. */
export function parseMaxLoad(text: string): number {
  const t = text.trim();
  const n = t === '' ? NaN : t.endsWith('%') ? Number(t.slice(0, -1)) / 100 : Number(t);
  checkMaxLoad(n, text);
  return n;
}

export function checkMaxLoad(maxLoad: number, given: string = String(maxLoad)): void {
  if (Number.isFinite(maxLoad) && (maxLoad === 0 || (maxLoad >= 0.2 && maxLoad <= 1))) return;
  throw invalid(`--max-load must be a share of the CPUs from 20% to 100% (e.g. 90% or 0.9), or 0 for none (got "${given}")`);
}
