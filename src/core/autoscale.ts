/**
 * Queue-driven autoscaling, the pure part: the policy (`loom node --autoscale
 * FILE`) and, from what the cluster looks like, how many worker nodes the
 * scaled group should have.
 *
 * The group's nodes are the ones the provider starts (they carry the label
 * `autoscale=<group>`); nodes outside it count for capacity, not for the
 * group's size. The wanted slots are the tasks there are (running + queued)
 * over 1 + targetQueuedPerSlot (each slot busy, and that many waiting for it);
 * the nodes outside the group give theirs, and each group node brings
 * slotsPerNode. Like Kubernetes' HPA: scale up at once (but not twice within
 * upCooldownMs), scale down only to the largest size wanted over the last
 * downCooldownMs (a short lull does not shrink the group), and only when the
 * group would shrink by more than `hysteresis` nodes.
 */
import { invalid } from './errors';
import { parseScaleProvider, ScaleProviderSpec } from './scale-provider-spec';

export interface AutoscalePolicy {
  /** The label value new nodes get (`autoscale=<group>`), and how the group's nodes are known. */
  group: string;
  min: number;
  max: number;
  /** Slots each node of the group has (its --slots). */
  slotsPerNode: number;
  targetQueuedPerSlot: number;
  upCooldownMs: number;
  downCooldownMs: number;
  /** Shrink only when more than this many nodes fewer are wanted. */
  hysteresis: number;
  /** How long a node being removed may finish its tasks before they are requeued. */
  drainDeadlineMs: number;
  /** How often the policy is evaluated. */
  intervalMs: number;
  /** More labels for the group's nodes (given to the provider). */
  labels: Record<string, string>;
  provider: ScaleProviderSpec;
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

function whole(v: unknown, what: string, min: number, max: number, dflt?: number): number {
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw invalid(`autoscale policy: ${what} must be a whole number from ${min} to ${max} (got ${JSON.stringify(v)})`);
  return v;
}

/** Durations: a number of ms, or text such as "30s", "5m". */
function ms(v: unknown, what: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v === 'number') return whole(v, what, 0, 86_400_000);
  const m = typeof v === 'string' ? /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v.trim()) : null;
  if (!m) throw invalid(`autoscale policy: ${what} must be a duration such as 30s or 5m (got ${JSON.stringify(v)})`);
  return whole(Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms']), what, 0, 86_400_000);
}

const FIELDS = new Set(['group', 'min', 'max', 'slotsPerNode', 'targetQueuedPerSlot', 'upCooldown', 'downCooldown', 'hysteresis', 'drainDeadline', 'interval', 'labels', 'provider']);

/** A policy from its parsed file (YAML or JSON), every field checked; unknown fields refused by name. */
export function parseAutoscalePolicy(doc: unknown): AutoscalePolicy {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw invalid('autoscale policy: expected a mapping (min, max, provider, ...)');
  const d = doc as Record<string, unknown>;
  const unknown = Object.keys(d).filter((k) => !FIELDS.has(k));
  if (unknown.length) throw invalid(`autoscale policy: unknown field ${unknown.map((k) => `"${k.slice(0, 40)}"`).join(', ')} (it has ${[...FIELDS].join(', ')})`);
  const group = d.group === undefined ? 'workers' : String(d.group);
  if (!NAME.test(group)) throw invalid(`autoscale policy: group "${group.slice(0, 70)}" must be lowercase letters, digits, . _ - (at most 63)`);
  const min = whole(d.min, 'min', 0, 1000, 0);
  const max = whole(d.max, 'max', 1, 1000);
  if (min > max) throw invalid(`autoscale policy: min (${min}) is above max (${max})`);
  const target = d.targetQueuedPerSlot === undefined ? 1 : d.targetQueuedPerSlot;
  if (typeof target !== 'number' || !(target >= 0 && target <= 10_000)) throw invalid(`autoscale policy: targetQueuedPerSlot must be a number from 0 to 10000 (got ${JSON.stringify(target)})`);
  const provider = parseScaleProvider(d.provider);
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries((d.labels ?? {}) as Record<string, unknown>)) {
    if (!/^[A-Za-z0-9._/-]{1,63}$/.test(k) || k === 'autoscale') throw invalid(`autoscale policy: bad label name "${k.slice(0, 70)}"`);
    labels[k] = String(v);
  }
  return {
    group, min, max, labels,
    slotsPerNode: whole(d.slotsPerNode, 'slotsPerNode', 1, 10_000, 1),
    targetQueuedPerSlot: target,
    upCooldownMs: ms(d.upCooldown, 'upCooldown', 30_000),
    downCooldownMs: ms(d.downCooldown, 'downCooldown', 300_000),
    hysteresis: whole(d.hysteresis, 'hysteresis', 0, 1000, 0),
    drainDeadlineMs: ms(d.drainDeadline, 'drainDeadline', 600_000),
    intervalMs: Math.max(1000, ms(d.interval, 'interval', 5000)),
    provider,
  };
}

/** What the cluster looks like to the policy. */
export interface ScaleView {
  queued: number;
  running: number;
  /** Slots of live nodes outside the group that take work. */
  otherSlots: number;
}

/** Remembered between evaluations (stored in etcd, so a new leader goes on from it). */
export interface ScaleMemory {
  /** The group's size last asked of the provider. */
  target: number;
  lastUpMs: number;
  lastDownMs: number;
  /** Sizes wanted at recent evaluations: [atMs, size], oldest first, within downCooldownMs. */
  wanted: [number, number][];
}

export interface ScaleDecision {
  target: number;
  reason: string;
  memory: ScaleMemory;
}

/** The group's size wanted right now, before cooldowns: within [min, max]. */
export function wantedSize(p: AutoscalePolicy, v: ScaleView): number {
  const slots = Math.ceil((v.queued + v.running) / (1 + p.targetQueuedPerSlot));
  const nodes = Math.ceil(Math.max(0, slots - v.otherSlots) / p.slotsPerNode);
  return Math.min(p.max, Math.max(p.min, nodes));
}

/** The group's next size, and why. */
export function decideScale(p: AutoscalePolicy, v: ScaleView, m: ScaleMemory, nowMs: number): ScaleDecision {
  const want = wantedSize(p, v);
  const wanted = [...m.wanted.filter(([at]) => at > nowMs - p.downCooldownMs), [nowMs, want] as [number, number]];
  const memory = { ...m, wanted };
  const current = Math.min(p.max, Math.max(p.min, m.target));
  const load = `${v.queued} queued, ${v.running} running, ${v.otherSlots} slots outside the group`;
  if (current !== m.target) return { target: current, reason: `${m.target} is outside min ${p.min} / max ${p.max}`, memory: { ...memory, lastUpMs: nowMs, lastDownMs: nowMs } };
  if (want > current) {
    if (nowMs - m.lastUpMs < p.upCooldownMs) return { target: current, reason: `${want} wanted (${load}), waiting out the scale-up cooldown`, memory };
    return { target: want, reason: `scale up ${current} → ${want}: ${load}`, memory: { ...memory, lastUpMs: nowMs } };
  }
  // The largest size wanted over the window: a lull shorter than downCooldownMs shrinks nothing.
  const recent = Math.max(...wanted.map(([, n]) => n));
  if (recent < current - p.hysteresis && nowMs - Math.max(m.lastUpMs, m.lastDownMs) >= p.downCooldownMs) {
    return { target: recent, reason: `scale down ${current} → ${recent}: at most ${recent} wanted for ${Math.round(p.downCooldownMs / 1000)} s (${load})`, memory: { ...memory, lastDownMs: nowMs } };
  }
  return { target: current, reason: `steady at ${current} (${load})`, memory };
}
