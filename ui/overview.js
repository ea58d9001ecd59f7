// The cluster at a glance: counts, the queue's last hour, the nodes (with
// drain and resume), the etcd members, and tasks changing right now.
import { useEffect, useState } from './vendor/hooks.mjs';
import { act, ago, Badge, Bar, bytes, html, QueueChart, Spark } from './parts.js';
import { api, finishRate, useLive } from './live.js';

/** Calls load() now and every `ms`, keeping its last answer (or error). */
export function usePoll(load, ms, deps = []) {
  const [state, setState] = useState({});
  useEffect(() => {
    let stop = false;
    const run = () => load().then((data) => !stop && setState({ data }), (error) => !stop && setState((s) => ({ ...s, error })));
    run();
    const t = setInterval(run, ms);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, deps);
  return state;
}

function Cards({ live }) {
  const running = live.nodes.reduce((n, x) => n + x.running, 0);
  const slots = live.nodes.reduce((n, x) => n + x.slots, 0);
  const card = (n, l, id) => html`<div class="card" data-card=${id}><div class="n">${n}</div><div class="l">${l}</div></div>`;
  return html`<div class="cards">
    ${card(live.queue ? live.queue.queued : '…', 'queued', 'queued')}
    ${card(`${running} / ${slots}`, 'running / slots', 'running')}
    ${card(live.queue ? live.queue.slotsFree : '…', 'slots free', 'free')}
    ${card(live.nodes.length, 'live nodes', 'nodes')}
    ${card(finishRate().toFixed(1), 'tasks finished/s (10 s)', 'rate')}
  </div>`;
}

/** Labels every node has (machine.ts automaticLabels): not worth a column's room. */
const AUTOMATIC = new Set(['arch', 'os', 'hostname', 'node']);

function NodeRow({ n, load }) {
  const state = n.pausedReason ? 'paused' : n.draining ? 'draining' : 'up';
  const drain = (on) => act(() => api(`/nodes/${encodeURIComponent(n.name)}/${on ? 'drain' : 'resume'}`, { method: 'POST' }));
  return html`<tr data-node=${n.name}>
    <td><b>${n.name}</b><div class="muted mono">${n.address}</div></td>
    <td><span class=${`badge s-${state === 'up' ? 'up' : 'draining'}`} title=${n.pausedReason || ''}>${state}</span></td>
    <td><${Bar} total=${n.slots} parts=${[{ cls: 'b-running', n: n.running, title: 'running' }]} /> <span class="muted">${n.running}/${n.slots}</span></td>
    <td><${Spark} values=${load.map((p) => p.cpu)} title="CPU busy" /> ${Math.round(n.cpu * 100)}%</td>
    <td><${Spark} values=${load.map((p) => p.mem)} title="memory used" /> ${n.memoryTotalBytes ? bytes(n.memoryTotalBytes - n.memoryAvailableBytes) : ''}</td>
    <td>${Object.entries(n.labels ?? {}).filter(([k]) => !AUTOMATIC.has(k)).map(([k, v]) => html`<span class="label">${k}=${v}</span>`)}</td>
    <td>${ago(n.startedAtMs)}</td>
    <td>${n.draining && !n.pausedReason
      ? html`<button data-action="resume" onClick=${() => drain(false)}>Resume</button>`
      : html`<button data-action="drain" onClick=${() => drain(true)}>Drain</button>`}</td>
  </tr>`;
}

function Members() {
  const { data, error } = usePoll(() => api('/members'), 10_000);
  if (error && !data) return html`<p class="muted">members: ${error.message}</p>`;
  if (!data) return html`<p class="muted">…</p>`;
  return html`<table data-table="members"><thead><tr><th>member</th><th>role</th><th>client URLs</th></tr></thead><tbody>
    ${(data.members ?? []).map((m) => html`<tr>
      <td><b>${m.name || '(not started)'}</b> <span class="muted mono">${m.id}</span></td>
      <td>${m.leader ? html`<span class="badge s-up">leader</span>` : m.learner ? 'learner' : 'follower'} ${m.answers === false ? html`<span class="badge s-failed" title=${m.error}>not answering</span>` : ''}</td>
      <td class="mono">${(m.clientUrls ?? []).join(', ')}</td>
    </tr>`)}
  </tbody></table>`;
}

function Recent({ live }) {
  const rows = [...live.recent.values()].reverse();
  if (!rows.length) return html`<p class="muted">No task changed since this page opened.</p>`;
  return html`<table data-table="recent"><thead><tr><th>task</th><th>state</th><th>node</th><th>seen</th></tr></thead><tbody>
    ${rows.map((r) => html`<tr data-task=${r.id}><td class="mono"><a href=${`#/task/${r.id}`}>${r.id}</a></td><td><${Badge} state=${r.state} /></td><td>${r.node ?? ''}</td><td>${ago(r.atMs)}</td></tr>`)}
  </tbody></table>`;
}

/** The group of this node's --autoscale policy, when it has one. */
function Autoscale() {
  const { data } = usePoll(() => api('/autoscale'), 5000);
  if (!data || data.configured === false) return '';
  const st = data.state;
  return html`<div><h2>Autoscaling</h2><div class="panel" data-autoscale=${data.group}>
    <p><b>${data.group}</b>: ${st ? html`<b data-autoscale-target>${st.target}</b> node(s) wanted (min ${data.min}, max ${data.max})${st.applied !== st.target ? `, provider asked for ${st.applied ?? 'none yet'}` : ''}` : 'no decision yet'}
      · evaluated by ${st?.leader ?? '…'}${data.leading ? ' (this node)' : ''}</p>
    ${st && html`<p class="muted">${st.reason} · ${ago(st.atMs)}</p>
      <p>up: ${(st.observed ?? []).join(', ') || 'none'}${st.removing?.length ? html` · <span class="s-draining">being removed: ${st.removing.join(', ')}</span>` : ''}</p>`}
  </div></div>`;
}

export function Overview() {
  const live = useLive();
  const history = usePoll(() => api('/queue'), 10_000);
  const nodes = [...live.nodes].sort((a, b) => a.name.localeCompare(b.name));
  return html`<div>
    <${Cards} live=${live} />
    <h2>Queue</h2>
    <${QueueChart} samples=${history.data?.samples ?? []} everyMs=${history.data?.everyMs} />
    <${Autoscale} />
    <h2>Nodes</h2>
    <table data-table="nodes"><thead><tr><th>node</th><th>state</th><th>slots</th><th>CPU</th><th>memory</th><th>labels</th><th>started</th><th></th></tr></thead>
      <tbody>${nodes.map((n) => html`<${NodeRow} key=${n.name} n=${n} load=${live.load.get(n.name) ?? []} />`)}</tbody></table>
    <div class="grid2">
      <div><h2>etcd members</h2><${Members} /></div>
      <div><h2>Task changes, live</h2><${Recent} live=${live} /></div>
    </div>
  </div>`;
}
