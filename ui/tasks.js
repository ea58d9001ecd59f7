// Tasks: a filtered list a page at a time (never the whole set), and one
// task's page with its attempts, its output as it is written, and cancel.
import { useEffect, useRef, useState } from './vendor/hooks.mjs';
import { act, ago, Badge, duration, html, stateOf } from './parts.js';
import { api, onTask, useLive } from './live.js';

const PAGE = 50;
const STATES = ['', 'queued', 'running', 'completed', 'failed', 'cancelled', 'lost'];
const OPEN = new Set(['queued', 'running']);

const command = (t) => (t.spec?.command ?? []).join(' ') || (t.spec?.container ? `container ${t.spec.container.image}` : t.spec?.http ? `http ${t.spec.http.url}` : '');

/** One page of tasks for the filters; reloads (debounced) when a task on it, or possibly new to it, changes. */
function usePage(filters, token) {
  const [page, setPage] = useState({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let stop = false;
    const q = new URLSearchParams({ page_size: String(PAGE) });
    for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
    if (token) q.set('page_token', token);
    api(`/tasks?${q}`).then((d) => !stop && setPage({ tasks: d.tasks ?? [], next: d.nextPageToken ?? '' }), (error) => !stop && setPage({ error }));
    return () => { stop = true; };
  }, [JSON.stringify(filters), token, tick]);
  useEffect(() => {
    let timer;
    const off = onTask((c) => {
      const shown = page.tasks?.some((t) => t.id === c.id);
      // A change not on this page can only add to it when it is the last page.
      if (!shown && page.next !== '') return;
      clearTimeout(timer);
      timer = setTimeout(() => setTick((n) => n + 1), 500);
    });
    return () => { off(); clearTimeout(timer); };
  }, [page]);
  return page;
}

export function Tasks({ query, go }) {
  const filters = { state: query.get('state') ?? '', node: query.get('node') ?? '', owner: query.get('owner') ?? '', job: query.get('job') ?? '' };
  const [tokens, setTokens] = useState(['']);
  const token = tokens[tokens.length - 1];
  const page = usePage(filters, token);
  const live = useLive();
  const set = (k, v) => {
    const q = new URLSearchParams(query);
    if (v) q.set(k, v); else q.delete(k);
    setTokens(['']);
    go(`#/tasks?${q}`);
  };
  return html`<div>
    <form class="filters" onSubmit=${(e) => e.preventDefault()}>
      <label>state<select name="state" value=${filters.state} onChange=${(e) => set('state', e.target.value)}>
        ${STATES.map((s) => html`<option value=${s}>${s || 'all'}</option>`)}</select></label>
      <label>node<select name="node" value=${filters.node} onChange=${(e) => set('node', e.target.value)}>
        <option value="">all</option>${live.nodes.map((n) => html`<option value=${n.name}>${n.name}</option>`)}</select></label>
      <label>owner<input name="owner" value=${filters.owner} onChange=${(e) => set('owner', e.target.value.trim())} placeholder="any" /></label>
      <label>job<input name="job" value=${filters.job} onChange=${(e) => set('job', e.target.value.trim())} placeholder="id or name" /></label>
    </form>
    ${page.error ? html`<p class="toast-inline"><b>${page.error.code}</b> ${page.error.message}</p>` : ''}
    <table data-table="tasks"><thead><tr><th>task</th><th>state</th><th>command</th><th>owner</th><th>node</th><th>submitted</th><th>ran</th></tr></thead><tbody>
      ${(page.tasks ?? []).map((t) => html`<tr data-task=${t.id}>
        <td class="mono"><a href=${`#/task/${t.id}`}>${t.id}</a></td><td><${Badge} state=${t.state} /></td>
        <td class="cmd" title=${command(t)}>${command(t)}</td><td>${t.owner}</td><td>${t.node}</td>
        <td>${ago(t.submittedAtMs)}</td><td>${duration(t.startedAtMs, t.finishedAtMs)}</td></tr>`)}
    </tbody></table>
    <div class="pager">
      <button disabled=${tokens.length < 2} onClick=${() => setTokens(tokens.slice(0, -1))}>← Previous</button>
      <span>page ${tokens.length}${page.tasks ? `, ${page.tasks.length} shown` : ''}</span>
      <button data-action="next" disabled=${!page.next} onClick=${() => setTokens([...tokens, page.next])}>Next →</button>
    </div>
  </div>`;
}

/** The task's output, followed while it runs (a streamed GET .../logs?follow=1); kept to its last 1 MB. */
function Log({ id }) {
  const [text, setText] = useState('');
  const [note, setNote] = useState('');
  const box = useRef();
  useEffect(() => {
    const ctl = new AbortController();
    let all = '';
    setText('');
    setNote('waiting for the node (a queued task has no output yet)');
    (async () => {
      const res = await fetch(`/api/v1/tasks/${id}/logs?follow=1`, { signal: ctl.signal });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        setNote(body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${res.status}`);
        return;
      }
      setNote('following');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        all = (all + value).slice(-1_000_000);
        setText(all);
      }
      setNote('ended');
    })().catch((err) => { if (!ctl.signal.aborted) setNote(String(err.message ?? err)); });
    return () => ctl.abort();
  }, [id]);
  useEffect(() => { if (box.current) box.current.scrollTop = box.current.scrollHeight; }, [text]);
  return html`<div><div class="muted" data-log-state=${note}>output: ${note}</div><pre class="log" ref=${box} data-log>${text}</pre></div>`;
}

export function TaskPage({ id }) {
  const [rec, setRec] = useState({});
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let stop = false;
    api(`/tasks/${id}`).then((task) => !stop && setRec({ task }), (error) => !stop && setRec({ error }));
    return () => { stop = true; };
  }, [id, tick]);
  useEffect(() => onTask((c) => c.id === id && setTick((n) => n + 1)), [id]);
  if (rec.error) return html`<p><b>${rec.error.code}</b> ${rec.error.message}</p>`;
  const t = rec.task;
  if (!t) return html`<p class="muted">…</p>`;
  const state = stateOf(t.state);
  const cancel = () => act(async () => setRec({ task: await api(`/tasks/${id}/cancel`, { method: 'POST' }) }));
  const field = (k, v) => (v === undefined || v === '' || v === null ? '' : html`<dt>${k}</dt><dd>${v}</dd>`);
  return html`<div>
    <h2><span class="mono">${t.id}</span> <${Badge} state=${t.state} />
      ${OPEN.has(state) && html` <button class="danger" data-action="cancel" disabled=${t.cancelRequested} onClick=${cancel}>${t.cancelRequested ? 'Cancelling…' : 'Cancel'}</button>`}</h2>
    <div class="grid2">
      <div class="panel"><dl class="record">
        ${field('command', html`<span class="mono">${command(t)}</span>`)}
        ${field('owner', t.owner)} ${field('node', t.node)} ${field('attempt', t.attempt)}
        ${field('job', t.jobId && html`<a href=${`#/job/${t.jobId}`}>${t.jobId}</a> #${t.index}`)}
        ${field('submitted', t.submittedAtMs && new Date(Number(t.submittedAtMs)).toLocaleString())}
        ${field('ran', duration(t.startedAtMs, t.finishedAtMs))}
        ${field('exit code', t.exitCode)} ${field('signal', t.signal)} ${field('reason', t.reason)}
        ${field('memory limit hit', t.oomKilled ? 'yes (OOM killed)' : '')}
      </dl></div>
      <div><table data-table="attempts"><thead><tr><th>attempt</th><th>node</th><th>ran</th><th>outcome</th></tr></thead><tbody>
        ${(t.history ?? []).map((a, i) => html`<tr><td>${a.number ?? i + 1}</td><td>${a.node}</td><td>${duration(a.startedAtMs, a.finishedAtMs)}</td>
          <td>${a.outcome ?? ''}</td></tr>`)}
      </tbody></table></div>
    </div>
    <h2>Output</h2>
    <${Log} id=${id} />
  </div>`;
}
