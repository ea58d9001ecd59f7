// The loom dashboard: a header, the view the URL's hash names, live updates
// from the node's event stream. Served by every node (src/node/dashboard.ts).
import { render } from './vendor/preact.mjs';
import { useEffect, useState } from './vendor/hooks.mjs';
import { html, Toast } from './parts.js';
import { connect, useLive } from './live.js';
import { Overview } from './overview.js';
import { TaskPage, Tasks } from './tasks.js';
import { JobPage, Jobs } from './jobs.js';

/** "#/tasks?state=running" → {path: ['tasks'], query}. */
function route() {
  const [path, qs] = location.hash.replace(/^#\/?/, '').split('?');
  return { path: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(qs ?? '') };
}

function useRoute() {
  const [r, setR] = useState(route());
  useEffect(() => {
    const f = () => setR(route());
    addEventListener('hashchange', f);
    return () => removeEventListener('hashchange', f);
  }, []);
  return r;
}

function View({ r }) {
  const go = (hash) => { location.hash = hash; };
  const [top, id] = r.path;
  if (top === 'tasks') return html`<${Tasks} query=${r.query} go=${go} />`;
  if (top === 'task' && id) return html`<${TaskPage} key=${id} id=${id} />`;
  if (top === 'jobs') return html`<${Jobs} />`;
  if (top === 'job' && id) return html`<${JobPage} key=${id} id=${id} />`;
  return html`<${Overview} />`;
}

function App() {
  const r = useRoute();
  const live = useLive();
  const tab = (href, name, on) => html`<a href=${href} class=${on ? 'on' : ''}>${name}</a>`;
  const top = r.path[0] ?? '';
  return html`<div>
    <header>
      <span class="brand">loom</span>
      <nav>${tab('#/', 'Cluster', top === '')}${tab('#/tasks', 'Tasks', top === 'tasks' || top === 'task')}${tab('#/jobs', 'Jobs', top === 'jobs' || top === 'job')}</nav>
      <span class=${`live ${live.connected ? 'up' : 'down'}`} data-live=${live.connected ? 'up' : 'down'}>${live.connected ? 'live' : 'reconnecting…'}</span>
    </header>
    <main><${View} r=${r} /></main>
    <${Toast} />
  </div>`;
}

connect();
const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);
