// What the dashboard knows of the cluster: calls to /api/v1, and the live
// state kept from the node's event stream (/api/v1/events), which every view
// reads and re-renders on.
import { useEffect, useState } from './vendor/hooks.mjs';

/** An API call; a loom error (its JSON body) is thrown as an Error with .code. */
export async function api(path, { method = 'GET', body } = {}) {
  const res = await fetch(`/api/v1${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { error: { code: 'INTERNAL', message: text.slice(0, 300) } };
  }
  if (!res.ok) {
    const e = new Error(data.error?.message ?? `HTTP ${res.status}`);
    e.code = data.error?.code ?? String(res.status);
    throw e;
  }
  return data;
}

/** Kept per node: this many load samples for its sparklines. */
const SPARK_POINTS = 60;
/** Kept for the activity list. */
const RECENT = 15;
const FINISHED = new Set(['completed', 'failed', 'cancelled', 'lost']);

export const live = {
  connected: false,
  /** Live nodes as the node last published them. */
  nodes: [],
  /** The last "queue" event: {queued, slotsFree, atMs}. */
  queue: undefined,
  /** name → [{cpu, mem}] oldest first. */
  load: new Map(),
  /** id → {id, state, node, atMs}, newest last. */
  recent: new Map(),
  /** Times (ms) tasks were seen finishing, for the rate card. */
  finishedAt: [],
  dropped: 0,
};

const viewers = new Set();
const taskListeners = new Set();
let pending = false;

/** Views re-render at most once a frame, however many events arrive. */
function changed() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => {
    pending = false;
    for (const f of viewers) f((n) => n + 1);
  });
}

/** Re-renders the calling component whenever the live state changes. */
export function useLive() {
  const [, bump] = useState(0);
  useEffect(() => {
    viewers.add(bump);
    return () => viewers.delete(bump);
  }, []);
  return live;
}

/** Calls fn(change) for each task state change; returns its removal. */
export function onTask(fn) {
  taskListeners.add(fn);
  return () => taskListeners.delete(fn);
}

/** Tasks seen finishing per second over the last 10 s. */
export function finishRate(now = Date.now()) {
  while (live.finishedAt.length && live.finishedAt[0] < now - 10_000) live.finishedAt.shift();
  return live.finishedAt.length / 10;
}

function onNodes(nodes) {
  live.nodes = nodes;
  for (const n of nodes) {
    const pts = live.load.get(n.name) ?? [];
    const last = pts[pts.length - 1];
    if (!last || last.atMs !== n.sampledAtMs) {
      const mem = n.memoryTotalBytes ? 1 - n.memoryAvailableBytes / n.memoryTotalBytes : 0;
      pts.push({ atMs: n.sampledAtMs, cpu: n.cpu, mem });
      if (pts.length > SPARK_POINTS) pts.shift();
    }
    live.load.set(n.name, pts);
  }
  for (const name of live.load.keys()) if (!nodes.some((n) => n.name === name)) live.load.delete(name);
}

function onTaskChange(c) {
  const now = Date.now();
  live.recent.delete(c.id);
  live.recent.set(c.id, { ...c, atMs: now });
  while (live.recent.size > RECENT) live.recent.delete(live.recent.keys().next().value);
  if (FINISHED.has(c.state)) live.finishedAt.push(now);
  for (const f of taskListeners) f(c);
}

/** Opens the event stream, and opens it again when it ends (a dropped client reconnects). */
export function connect() {
  const es = new EventSource('/api/v1/events');
  const on = (name, fn) => es.addEventListener(name, (e) => {
    fn(JSON.parse(e.data));
    changed();
  });
  es.onopen = () => {
    live.connected = true;
    changed();
  };
  es.onerror = () => {
    live.connected = false;
    changed();
  };
  on('nodes', (d) => onNodes(d.nodes));
  on('queue', (d) => { live.queue = d; });
  on('task', onTaskChange);
  on('dropped', () => {
    live.dropped++;
    es.close();
    live.connected = false;
    setTimeout(connect, 1000);
  });
}
