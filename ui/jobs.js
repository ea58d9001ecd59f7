// Jobs: a page of jobs with a progress bar each, and one job's page with its
// counts, what it waits on (a small graph), cancel, and a link to its tasks.
import { useEffect, useState } from './vendor/hooks.mjs';
import { act, ago, Badge, Bar, html, stateOf } from './parts.js';
import { api } from './live.js';

const PAGE = 20;
const ORDER = ['completed', 'failed', 'lost', 'cancelled', 'running', 'queued', 'blocked'];
const ENDED = new Set(['completed', 'failed', 'cancelled']);

/** A job's counts as one bar, each state its colour. */
export function Progress({ counts, total }) {
  const c = counts ?? {};
  return html`<${Bar} total=${total} parts=${ORDER.map((k) => ({ cls: `b-${k}`, n: c[k] ?? 0, title: k }))} />`;
}

const done = (c) => (c ? (c.completed ?? 0) + (c.failed ?? 0) + (c.cancelled ?? 0) + (c.lost ?? 0) : 0);

/** The status of each job, re-read every 5 s while it is open (an ended job's counts no longer change). */
function useStatuses(jobs) {
  const [st, setSt] = useState({});
  useEffect(() => {
    let stop = false;
    const known = {};
    const run = async () => {
      for (const j of jobs) {
        if (known[j.id] && ENDED.has(stateOf(known[j.id].job?.state))) continue;
        try {
          known[j.id] = await api(`/jobs/${j.id}`);
        } catch (error) {
          known[j.id] = { error };
        }
      }
      if (!stop) setSt({ ...known });
    };
    run();
    const t = setInterval(run, 5000);
    return () => { stop = true; clearInterval(t); };
  }, [jobs.map((j) => j.id).join()]);
  return st;
}

export function Jobs() {
  const [tokens, setTokens] = useState(['']);
  const [page, setPage] = useState({});
  const token = tokens[tokens.length - 1];
  useEffect(() => {
    api(`/jobs?page_size=${PAGE}${token ? `&page_token=${encodeURIComponent(token)}` : ''}`).then((d) => setPage({ jobs: d.jobs ?? [], next: d.nextPageToken ?? '' }), (error) => setPage({ error }));
  }, [token]);
  const statuses = useStatuses(page.jobs ?? []);
  if (page.error) return html`<p><b>${page.error.code}</b> ${page.error.message}</p>`;
  return html`<div>
    <table data-table="jobs"><thead><tr><th>job</th><th>state</th><th>progress</th><th>tasks done</th><th>owner</th><th>submitted</th></tr></thead><tbody>
      ${(page.jobs ?? []).map((j) => {
        const s = statuses[j.id];
        return html`<tr data-job=${j.id}><td><a href=${`#/job/${j.id}`}>${j.spec?.name || j.id}</a></td>
          <td><${Badge} state=${s?.job?.state ?? j.state} /></td><td><${Progress} counts=${s?.counts} total=${j.spec?.count} /></td>
          <td class="num">${done(s?.counts)} / ${j.spec?.count ?? 0}</td><td>${j.spec?.owner}</td><td>${ago(j.submittedAtMs)}</td></tr>`;
      })}
    </tbody></table>
    <div class="pager">
      <button disabled=${tokens.length < 2} onClick=${() => setTokens(tokens.slice(0, -1))}>← Previous</button>
      <span>page ${tokens.length}</span>
      <button disabled=${!page.next} onClick=${() => setTokens([...tokens, page.next])}>Next →</button>
    </div>
  </div>`;
}

/** The jobs this one waits on (solid: must complete; dashed: must end) → this job. */
function Graph({ job, upstream }) {
  const ups = [...(job.afterIds ?? []).map((id) => ({ id, any: false })), ...(job.afterAnyIds ?? []).map((id) => ({ id, any: true }))];
  if (!ups.length) return html`<p class="muted">It waits on no other job.</p>`;
  const rowH = 34, H = Math.max(1, ups.length) * rowH + 10, W = 560;
  const selfY = H / 2 - 12;
  const label = (id) => upstream[id]?.job?.spec?.name || id.slice(0, 13);
  return html`<div class="graph panel"><svg viewBox=${`0 0 ${W} ${H}`} style=${`height:${H}px`}>
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" /></marker></defs>
    ${ups.map((u, i) => {
      const y = 5 + i * rowH;
      return html`<g><a href=${`#/job/${u.id}`}><rect x="4" y=${y} width="200" height="24" rx="4" /><text x="12" y=${y + 16}>${label(u.id)} · ${stateOf(upstream[u.id]?.job?.state)}</text></a>
        <path class=${u.any ? 'any' : ''} d=${`M 204 ${y + 12} C 280 ${y + 12}, 280 ${selfY + 12}, 346 ${selfY + 12}`} /></g>`;
    })}
    <rect class="self" x="350" y=${selfY} width="200" height="24" rx="4" /><text x="358" y=${selfY + 16}>${job.spec?.name || job.id.slice(0, 13)}</text>
  </svg></div>`;
}

export function JobPage({ id }) {
  const [st, setSt] = useState({});
  const [upstream, setUpstream] = useState({});
  useEffect(() => {
    let stop = false;
    const run = () => api(`/jobs/${encodeURIComponent(id)}`).then((s) => !stop && setSt({ s }), (error) => !stop && setSt({ error }));
    run();
    const t = setInterval(run, 3000);
    return () => { stop = true; clearInterval(t); };
  }, [id]);
  const job = st.s?.job;
  useEffect(() => {
    if (!job) return;
    const ids = [...(job.afterIds ?? []), ...(job.afterAnyIds ?? [])];
    Promise.all(ids.map((u) => api(`/jobs/${u}`).catch(() => undefined))).then((list) => setUpstream(Object.fromEntries(ids.map((u, i) => [u, list[i]]))));
  }, [job?.id]);
  if (st.error) return html`<p><b>${st.error.code}</b> ${st.error.message}</p>`;
  if (!job) return html`<p class="muted">…</p>`;
  const c = st.s.counts ?? {};
  const cancel = () => act(async () => setSt({ s: await api(`/jobs/${job.id}/cancel`, { method: 'POST' }) }));
  return html`<div>
    <h2>${job.spec?.name || job.id} <${Badge} state=${job.state} />
      ${!ENDED.has(stateOf(job.state)) && html` <button class="danger" onClick=${cancel}>Cancel job</button>`}</h2>
    <div class="panel">
      <${Progress} counts=${c} total=${job.spec?.count} />
      <p>${ORDER.map((k) => html`<span class=${`badge s-${k}`}>${k} ${c[k] ?? 0}</span> `)}</p>
      <p class="muted">${job.spec?.count} tasks · owner ${job.spec?.owner} · submitted ${ago(job.submittedAtMs)} ${job.reason ? `· ${job.reason}` : ''}</p>
      <p><a href=${`#/tasks?job=${job.id}`}>Its tasks →</a></p>
    </div>
    <h2>Waits on</h2>
    <${Graph} job=${job} upstream=${upstream} />
  </div>`;
}
