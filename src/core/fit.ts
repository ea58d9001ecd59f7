/**
 * Placement, pure: does a task fit what a node has free, may it run on that
 * node at all (constraints, pin, capacity, container support), and why can
 * no node run it. Every resource dimension is checked on its own.
 */
import { NodeInfo, Resources, TaskSpec } from '../gen/loom';
import { containerRefusal } from './container-policy';
import { kindOf, nodeKinds } from './task-kind';

export const NO_RESOURCES: Resources = { cpu: 0, memoryBytes: 0, diskBytes: 0 };

/** Float tolerance for fractional CPUs (0.1 + 0.2 must fit 0.3). */
const EPS = 1e-9;

export function addResources(a: Resources, b: Resources, sign = 1): Resources {
  return {
    cpu: a.cpu + sign * b.cpu,
    memoryBytes: a.memoryBytes + sign * b.memoryBytes,
    diskBytes: a.diskBytes + sign * b.diskBytes,
  };
}

/** The first dimension in which `want` exceeds `have`, or undefined if it fits. */
export function shortfall(want: Resources, have: Resources): string | undefined {
  if (want.cpu > have.cpu + EPS) return `cpu ${want.cpu} > ${round(have.cpu)}`;
  if (want.memoryBytes > have.memoryBytes) return `memory ${formatBytes(want.memoryBytes)} > ${formatBytes(have.memoryBytes)}`;
  if (want.diskBytes > have.diskBytes) return `disk ${formatBytes(want.diskBytes)} > ${formatBytes(have.diskBytes)}`;
  return undefined;
}

export function fits(want: Resources, have: Resources): boolean {
  return shortfall(want, have) === undefined;
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Math.round(v * 10) / 10}${units[u]}`;
}

type Placeable = Pick<NodeInfo, 'name' | 'labels' | 'capacity' | 'docker'> & Partial<Pick<NodeInfo, 'containerPolicy' | 'kinds'>>;

/**
 * Why `spec` can never run on `node` (ignoring what is busy now), or
 * undefined if it could. A node without capacity figures accepts any request.
 * `byAdmin`: the task's Task.submitted_by_admin (host networks).
 */
export function refusal(spec: TaskSpec, node: Placeable, byAdmin = false): string | undefined {
  if (spec.pinNode && spec.pinNode !== node.name) return `pinned to node ${spec.pinNode}`;
  for (const c of spec.constraints) {
    const have = node.labels[c.key];
    if (c.op === '=' && have !== c.value) return `needs ${c.key}=${c.value}`;
    if (c.op === '!=' && have === c.value) return `refuses ${c.key}=${c.value}`;
  }
  if (spec.container?.image) {
    if (!node.docker) return 'needs a Docker engine';
    const refused = containerRefusal(spec.container, node.containerPolicy, byAdmin);
    if (refused) return refused;
  }
  const kind = kindOf(spec);
  if (!nodeKinds(node).includes(kind)) return `runs no ${kind} tasks`;
  const want = spec.resources ?? NO_RESOURCES;
  if (node.capacity) {
    const short = shortfall(want, node.capacity);
    if (short) return `too big: ${short}`;
  }
  return undefined;
}

/**
 * A one-line reason no live node can run the task ("no node has arch=arm64"),
 * or undefined when at least one can.
 */
export function explainUnplaceable(spec: TaskSpec, nodes: (Placeable & Pick<NodeInfo, 'draining'> & Partial<Pick<NodeInfo, 'pausedReason'>>)[], byAdmin = false): string | undefined {
  const live = nodes.filter((n) => !n.draining);
  if (live.length === 0) {
    // Drained by an operator says nothing more; a pause (disk, --max-load) says why.
    const paused = nodes.filter((n) => n.pausedReason).map((n) => `${n.name}: ${n.pausedReason}`);
    return paused.length ? `no live node takes work (${paused.slice(0, 3).join('; ')})` : 'no live node takes work';
  }
  const reasons = live.map((n) => refusal(spec, n, byAdmin));
  if (reasons.some((r) => r === undefined)) return undefined;
  if (spec.pinNode && !live.some((n) => n.name === spec.pinNode)) return `node ${spec.pinNode} is not live`;
  const needs = spec.constraints.filter((c) => c.op === '=' && !live.some((n) => n.labels[c.key] === c.value));
  if (needs.length) return `no node has ${needs.map((c) => `${c.key}=${c.value}`).join(', ')}`;
  if (spec.container?.image && !live.some((n) => n.docker)) return 'no live node has a Docker engine';
  const kind = kindOf(spec);
  if (!live.some((n) => nodeKinds(n).includes(kind))) return `no live node runs ${kind} tasks (nodes older than the ${kind} kind: upgrade them)`;
  const distinct = [...new Set(reasons)];
  return `no node can run it: ${distinct.slice(0, 3).map((r) => `${live[reasons.indexOf(r)].name}: ${r}`).join('; ')}`;
}

/** Parses "256M", "1.5G", "512Ki", "1000" (bytes) into bytes. */
export function parseBytes(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$/i.exec(text.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? 'B').toUpperCase().replace(/B$/, '').replace('I', '');
  const pow = { '': 0, K: 1, M: 2, G: 3, T: 4 }[unit];
  if (pow === undefined) return undefined;
  return Math.round(Number(m[1]) * 1024 ** pow);
}
