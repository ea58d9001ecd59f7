/**
 * Who should claim a queued task, and when a node that is not its first
 * choice may try.
 *
 * Every live node sees every queued task. To keep them from racing on each
 * one, each task has a *preferred* node chosen by rendezvous hashing over the
 * live node names: the preferred node claims whenever it has a free slot. The
 * others are the task's thieves, in a per-task order (thiefRank), and after
 * stealDelayMs time is cut into turns of thiefStepMs: turn j belongs to the
 * thief of rank j mod (number of thieves) alone, so the thieves go round one
 * at a time, for as long as the task stays queued. A turn's owner claims only
 * in its first thiefStepMs - turnGuardMs, so its claim has committed and
 * reached the next owner's watch before that turn begins. Two idle thieves
 * never go for one task at once, however many nodes there are and however old
 * the task (npm run sim -- --nodes 500 shows the lost claims).
 */
import { invalid } from './errors';

export interface StealPolicy {
  /** Age of a task (since a node saw it queued) at which the thieves' turns begin. */
  stealDelayMs: number;
  /** A busy thief skips the turns that begin within this x its load (0..1) of stealDelayMs. */
  loadDelayMs: number;
  /** Without a thief order (thief undefined, the simulation's comparison): a uniform random wait this long. */
  jitterMs: number;
  /**
   * A task claimed ahead of a free slot (see aheadRoom) that waited this long
   * for one is handed back: the tasks holding the slots turned out long.
   */
  aheadStaleMs: number;
  /** Length of one thief's turn. */
  thiefStepMs: number;
  /**
   * The end of each turn in which its owner no longer claims: a claim made
   * before it commits and reaches the next owner's watch (a transaction and a
   * watch event, a few ms) before the next turn begins.
   */
  turnGuardMs: number;
}

export const DEFAULT_STEAL_POLICY: StealPolicy = {
  stealDelayMs: 15,
  loadDelayMs: 40,
  jitterMs: 10,
  aheadStaleMs: 250,
  thiefStepMs: 10,
  turnGuardMs: 5,
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
 * name). rank 0 = the first thief; `of` = how many thieves there are (self
 * counted, so rank < of). Every node computes the same order from the same
 * node list, so the thieves of one task take turns without talking, and each
 * task has its own order, so one node's overflow spreads over all.
 */
export function thiefRank(taskId: string, nodes: readonly string[], self: string, preferred: string | undefined): { rank: number; of: number } {
  const mine = stealHash(self, taskId);
  let rank = 0;
  let of = 1;
  for (const node of new Set(nodes)) {
    if (node === self || node === preferred) continue;
    of++;
    const h = stealHash(node, taskId);
    if (h < mine || (h === mine && node < self)) rank++;
  }
  return { rank, of };
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
 * The age of a task (ms since this node saw it queued) at which this node, one
 * of its thieves, may claim it: at most `ageMs` means now. The thief of rank r
 * among `of` owns the turns j = r, r + of, r + 2of, ..., turn j beginning at
 * stealDelayMs + j x thiefStepMs; it claims in a turn's first thiefStepMs -
 * turnGuardMs. A busy thief (load: running/slots, or the busy share of its
 * CPUs given with --max-load, the larger) skips the turns that begin before
 * stealDelayMs + loadDelayMs x load, so an idle node of the same rank order
 * comes first. `turnScale` (see turnScale) stretches the turns and their
 * guard while etcd commits slowly. Without `thief` (the simulation's
 * --no-thief-order) every thief may claim from stealDelayMs + load delay +
 * jitter on. `random` is injectable so tests are deterministic.
 */
export function stealAtAgeMs(
  opts: { ageMs: number; running: number; slots: number; cpuBusy?: number; thief?: { rank: number; of: number }; turnScale?: number },
  policy: StealPolicy = DEFAULT_STEAL_POLICY,
  random: () => number = Math.random,
): number {
  const slotLoad = opts.slots > 0 ? Math.min(1, opts.running / opts.slots) : 1;
  const load = Math.max(slotLoad, Math.min(1, opts.cpuBusy ?? 0));
  const earliest = policy.stealDelayMs + policy.loadDelayMs * load;
  if (!opts.thief) return earliest + policy.jitterMs * random();
  const scale = opts.turnScale ?? 1;
  const step = policy.thiefStepMs * scale;
  const of = Math.max(1, opts.thief.of);
  // The first turn of this thief that begins at or after `earliest`.
  const skipped = Math.max(0, Math.ceil((earliest - policy.stealDelayMs) / step));
  const first = policy.stealDelayMs + (skipped + mod(opts.thief.rank - skipped, of)) * step;
  // A lone thief has no next owner to leave room for.
  if (opts.ageMs < first || of === 1) return first;
  const cycle = of * step;
  const turn = first + Math.floor((opts.ageMs - first) / cycle) * cycle;
  return opts.ageMs < turn + step - policy.turnGuardMs * scale ? turn : turn + cycle;
}

/** The remainder of a / b in [0, b). */
function mod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

/** The largest turnScale: turns of 16 x thiefStepMs (160 ms by default) however slow etcd gets. */
export const MAX_TURN_SCALE = 16;

/**
 * How much longer than the policy's the thieves' turns must be for a claim
 * to commit within a turn's guard: the smallest power of two k with
 * turnGuardMs x k >= commitMs (the node's estimate of how long a claim
 * takes to commit, see nextCommitEstimate), at most MAX_TURN_SCALE. Powers
 * of two, so nodes whose estimates differ a little still cut time into the
 * same turns.
 */
export function turnScale(commitMs: number, policy: StealPolicy = DEFAULT_STEAL_POLICY): number {
  let k = 1;
  while (k < MAX_TURN_SCALE && policy.turnGuardMs * k < commitMs) k *= 2;
  return k;
}

/**
 * The estimate of a claim's commit time after one more measured claim:
 * up at once to a slower sample (etcd slowed: stretch the turns before the
 * next collision), down a tenth of the way to a faster one (one quick reply
 * does not mean etcd recovered).
 */
export function nextCommitEstimate(estimateMs: number, sampleMs: number): number {
  return sampleMs >= estimateMs ? sampleMs : estimateMs + (sampleMs - estimateMs) * 0.1;
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
