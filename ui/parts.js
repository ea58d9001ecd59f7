// Small pieces every view uses: state badges, bars, sparklines, the queue
// chart, times, and the one place errors are shown.
import { h } from './vendor/preact.mjs';
import { useState } from './vendor/hooks.mjs';
import htm from './vendor/htm.mjs';

export const html = htm.bind(h);

/** A TaskState or JobState name ("RUNNING", "JOB_COMPLETED", "KILLED") → "running", "completed", "cancelled". */
export const stateOf = (s) => {
  const name = String(s ?? '').replace(/^(TASK_STATE_|JOB_STATE_|JOB_)/, '').toLowerCase();
  return name === 'killed' ? 'cancelled' : name;
};

export const Badge = ({ state }) => html`<span class=${`badge s-${stateOf(state)}`}>${stateOf(state)}</span>`;

export function ago(ms, now = Date.now()) {
  if (!ms) return '';
  const s = Math.max(0, Math.round((now - Number(ms)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return new Date(Number(ms)).toLocaleString();
}

export function duration(from, to) {
  if (!from) return '';
  const ms = Number(to || Date.now()) - Number(from);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)}m ${Math.round((ms % 60_000) / 1000)}s`;
}

export const bytes = (n) => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${Math.round(n / 2 ** 20)} MiB`);

/** Parts of a whole as one bar: [{cls, n, title}]. */
export function Bar({ parts, total }) {
  const sum = total || parts.reduce((a, p) => a + p.n, 0) || 1;
  return html`<div class="bar" title=${parts.filter((p) => p.n).map((p) => `${p.title}: ${p.n}`).join(', ')}>
    ${parts.map((p) => p.n > 0 && html`<span class=${p.cls} style=${`width:${(100 * p.n) / sum}%`}></span>`)}
  </div>`;
}

/** A sparkline of values in [0, 1]. */
export function Spark({ values, title }) {
  if (!values.length) return html`<span class="muted">–</span>`;
  if (values.length === 1) values = [values[0], values[0]];
  const w = 90, hgt = 22;
  const step = values.length > 1 ? w / (values.length - 1) : 0;
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 1 - Math.min(1, Math.max(0, v)) * (hgt - 2)).toFixed(1)}`);
  return html`<svg class="spark" viewBox=${`0 0 ${w} ${hgt}`} preserveAspectRatio="none"><title>${title}</title>
    <polyline points=${pts.join(' ')} /></svg>`;
}

/**
 * The queue over the last hour: depth as a line, tasks started per second
 * as bars (samples of /api/v1/queue, every 10 s).
 */
export function QueueChart({ samples, everyMs }) {
  const W = 1200, H = 170, pad = 30;
  const now = Date.now(), span = 3_600_000;
  const x = (t) => pad + ((t - (now - span)) / span) * (W - pad - 4);
  const maxQ = Math.max(1, ...samples.map((s) => s.queued));
  const rate = (s) => s.started / ((everyMs || 10_000) / 1000);
  const maxR = Math.max(1, ...samples.map(rate));
  const yq = (v) => H - 16 - (v / maxQ) * (H - 30);
  const line = samples.map((s) => `${x(s.atMs).toFixed(1)},${yq(s.queued).toFixed(1)}`).join(' ');
  const bw = Math.max(1, ((everyMs || 10_000) / span) * (W - pad - 4) - 0.5);
  return html`<div class="chart panel">
    <div class="legend">last hour<i style="background:var(--accent)"></i>queued (max ${maxQ})<i style="background:var(--ok)"></i>started/s (max ${maxR.toFixed(1)})</div>
    <svg viewBox=${`0 0 ${W} ${H}`} data-samples=${samples.length}>
      <line class="axis" x1=${pad} y1=${H - 16} x2=${W} y2=${H - 16} />
      ${[60, 45, 30, 15, 0].map((m) => html`<text x=${x(now - m * 60_000) - 8} y=${H - 3}>${m ? `-${m}m` : 'now'}</text>`)}
      ${samples.map((s) => {
        const hgt = (rate(s) / maxR) * (H - 30);
        return hgt > 0 && html`<rect class="t" x=${x(s.atMs) - bw} y=${H - 16 - hgt} width=${bw} height=${hgt} />`;
      })}
      ${samples.length > 1 && html`<polyline class="q" points=${line} />`}
      <text x="2" y="12">${maxQ}</text>
    </svg>
  </div>`;
}

/** The last failed action, shown until the next or a click. */
let showError = () => undefined;
export function Toast() {
  const [err, setErr] = useState(undefined);
  showError = setErr;
  return err && html`<div class="toast" role="alert" onClick=${() => setErr(undefined)}><b>${err.code ?? 'ERROR'}</b> ${err.message}</div>`;
}

/** Runs an action (a cancel, a drain); its error goes to the toast. */
export async function act(fn) {
  try {
    showError(undefined);
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  }
}
