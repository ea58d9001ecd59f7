/**
 * The HTTP/JSON API on a real node (real etcd, real processes, a real HTTP
 * server): tasks through their whole life with curl-shaped requests, every
 * error with its code and status, the OpenAPI document against the routes
 * the server answers, and mutual TLS with the same identities as gRPC.
 */
import * as fs from 'fs';
import * as https from 'https';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { uniqueRoot, waitFor } from '../support/etcd';
import { startNode, stopNode, TestNode } from '../support/nodes';
import { uuidAt } from '../support/ids';
import { initCa, issueCert } from '../../src/bin/certs-command';
import { readTlsFiles, TlsFiles, TlsMaterial } from '../../src/wire/tls';
import { ERROR_CODES } from '../../src/core/errors';

jest.setTimeout(60_000);

interface Reply {
  status: number;
  type: string;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

async function call(base: string, method: string, route: string, body?: unknown, raw?: string): Promise<Reply> {
  const res = await fetch(`${base}${route}`, {
    method,
    ...(body !== undefined || raw !== undefined ? { body: raw ?? JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  });
  const text = await res.text();
  const type = res.headers.get('content-type') ?? '';
  return { status: res.status, type, text, json: type.includes('json') ? JSON.parse(text) : undefined };
}

const NO_SUCH = uuidAt(Date.now() - 86_400_000, 4242);

describe('the HTTP/JSON API (plaintext, loopback)', () => {
  let n: TestNode;
  let base: string;
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'web', { slots: 2, httpListen: '127.0.0.1:0', metricsListen: '127.0.0.1:0' });
    base = `http://127.0.0.1:${n.node.httpPort}`;
  });
  afterAll(() => stopNode(n));

  it('submits a task, waits for it, and serves its record and output', async () => {
    const sub = await call(base, 'POST', '/api/v1/tasks', { command: ['sh', '-c', 'echo out; echo err >&2; exit 3'] });
    expect(sub.status).toBe(200);
    const [id] = sub.json.ids;
    const done = await call(base, 'GET', `/api/v1/tasks/${id}/wait?timeout=20000`);
    expect(done.status).toBe(200);
    expect(done.json).toMatchObject({ id, state: 'FAILED', exitCode: 3, owner: 'local' });
    expect((await call(base, 'GET', `/api/v1/tasks/${id}`)).json.state).toBe('FAILED');
    const logs = await call(base, 'GET', `/api/v1/tasks/${id}/logs`);
    expect(logs.status).toBe(200);
    expect(logs.type).toMatch(/^text\/plain/);
    expect(logs.text.split('\n').sort()).toEqual(['', 'err', 'out']);
  });

  it('submits several at once and lists them by state, a page at a time', async () => {
    const sub = await call(base, 'POST', '/api/v1/tasks', { tasks: [{ command: ['true'] }, { command: ['true'] }, { command: ['true'] }] });
    expect(sub.json.ids).toHaveLength(3);
    for (const id of sub.json.ids) expect((await call(base, 'GET', `/api/v1/tasks/${id}/wait`)).json.state).toBe('COMPLETED');
    const seen = new Set<string>();
    let token = '';
    do {
      const page = await call(base, 'GET', `/api/v1/tasks?state=completed&page_size=2${token ? `&page_token=${encodeURIComponent(token)}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.json.tasks.length).toBeLessThanOrEqual(2);
      for (const t of page.json.tasks) {
        expect(t.state).toBe('COMPLETED');
        seen.add(t.id);
      }
      token = page.json.nextPageToken ?? '';
    } while (token);
    for (const id of sub.json.ids) expect(seen.has(id)).toBe(true);
  });

  it('cancels a running task, and follows a live log to its end', async () => {
    const [id] = (await call(base, 'POST', '/api/v1/tasks', { command: ['sh', '-c', 'echo started; sleep 30'] })).json.ids;
    const follow = call(base, 'GET', `/api/v1/tasks/${id}/logs?follow=1`);
    // Running is not enough: on a loaded box the cancel could beat the shell's echo.
    await waitFor(async () => (await call(base, 'GET', `/api/v1/tasks/${id}/logs`)).text.includes('started\n'), { what: 'the task\'s first line' });
    const cancel = await call(base, 'POST', `/api/v1/tasks/${id}/cancel`);
    expect(cancel.status).toBe(200);
    expect((await call(base, 'GET', `/api/v1/tasks/${id}/wait`)).json.state).toBe('CANCELLED');
    expect((await follow).text).toContain('started\n');
    // Cancelled already: not in a state that allows it.
    const again = await call(base, 'POST', `/api/v1/tasks/${id}/cancel`);
    expect(again.status).toBe(409);
    expect(again.json.error).toMatchObject({ code: 'INVALID_STATE', subject: id });
  });

  it('answers a wait that runs out with 504 DEADLINE_EXCEEDED, and the task goes on', async () => {
    const [id] = (await call(base, 'POST', '/api/v1/tasks', { command: ['sleep', '2'] })).json.ids;
    const r = await call(base, 'GET', `/api/v1/tasks/${id}/wait?timeout=200`);
    expect(r.status).toBe(504);
    expect(r.json.error.code).toBe('DEADLINE_EXCEEDED');
    expect((await call(base, 'GET', `/api/v1/tasks/${id}/wait`)).json.state).toBe('COMPLETED');
  });

  it('refuses bad input with a stable code and the matching status, and stays up', async () => {
    const cases: [string, string, unknown, string | undefined, number, string, RegExp][] = [
      ['POST', '/api/v1/tasks', undefined, '{"command": [', 400, 'INVALID_ARGUMENT', /JSON/i],
      ['POST', '/api/v1/tasks', { cmd: ['ls'] }, undefined, 400, 'INVALID_ARGUMENT', /unknown field "cmd"/],
      ['POST', '/api/v1/tasks', { command: 'ls -l' }, undefined, 400, 'INVALID_ARGUMENT', /array of strings/],
      ['POST', '/api/v1/tasks', { command: [] }, undefined, 400, 'INVALID_ARGUMENT', /command/],
      ['POST', '/api/v1/tasks', { tasks: [] }, undefined, 400, 'INVALID_ARGUMENT', /non-empty/],
      ['POST', '/api/v1/tasks', [1, 2], undefined, 400, 'INVALID_ARGUMENT', /JSON object/],
      ['GET', '/api/v1/tasks?state=bogus', undefined, undefined, 400, 'INVALID_ARGUMENT', /unknown state "bogus"/],
      ['GET', '/api/v1/tasks?page_size=-1', undefined, undefined, 400, 'INVALID_ARGUMENT', /page_size/],
      ['GET', '/api/v1/tasks/not-a-task-id', undefined, undefined, 400, 'INVALID_ARGUMENT', /not a task id/],
      ['GET', `/api/v1/tasks/${NO_SUCH}`, undefined, undefined, 404, 'NOT_FOUND', /./],
      ['GET', `/api/v1/tasks/${NO_SUCH}/wait?timeout=0`, undefined, undefined, 400, 'INVALID_ARGUMENT', /timeout/],
      ['GET', `/api/v1/tasks/${NO_SUCH}/logs`, undefined, undefined, 404, 'NOT_FOUND', /./],
      ['POST', '/api/v1/nodes/no-such-node/drain', undefined, undefined, 404, 'NOT_FOUND', /no live node/],
      ['GET', '/api/v1/nope', undefined, undefined, 404, 'NOT_FOUND', /no such endpoint/],
      ['DELETE', '/api/v1/tasks', undefined, undefined, 404, 'NOT_FOUND', /no such endpoint/],
    ];
    for (const [method, route, body, raw, status, code, message] of cases) {
      const r = await call(base, method, route, body, raw);
      expect({ route, method, status: r.status, code: r.json?.error?.code }).toEqual({ route, method, status, code });
      expect(r.json.error.message).toMatch(message);
      expect(ERROR_CODES[code as keyof typeof ERROR_CODES].http).toBe(status);
    }
    expect((await call(base, 'GET', '/api/v1/nodes')).json.nodes.map((x: { name: string }) => x.name)).toContain('web');
    // Bad requests are the client's: none is logged as the node's own failure.
    expect(n.logs.filter((l) => /api error/.test(l))).toEqual([]);
  });

  it('submits a job from JSON, follows its counts, lists it, and cancels another', async () => {
    const name = `web-${Date.now().toString(36)}`;
    const sub = await call(base, 'POST', '/api/v1/jobs', {
      name, count: 3, template: { command: ['sh', '-c', 'exit 0'] }, overrides: { 2: { command: ['sh', '-c', 'exit 5'] } },
    });
    expect(sub.status).toBe(200);
    expect(sub.json.job.spec).toMatchObject({ name, count: 3, owner: 'local' });
    const done = await waitFor(async () => {
      const j = (await call(base, 'GET', `/api/v1/jobs/${name}`)).json;
      return ['JOB_COMPLETED', 'JOB_FAILED'].includes(j.job.state) ? j : undefined;
    }, { what: 'the job to end' });
    expect(done.job.state).toBe('JOB_FAILED');
    expect(done.counts).toMatchObject({ completed: 2, failed: 1 });
    expect((await call(base, 'GET', '/api/v1/jobs?page_size=1000')).json.jobs.map((j: { spec: { name: string } }) => j.spec.name)).toContain(name);

    const slow = `${name}-slow`;
    expect((await call(base, 'POST', '/api/v1/jobs', { name: slow, count: 4, template: { command: ['sleep', '30'] } })).status).toBe(200);
    const cancelled = await call(base, 'POST', `/api/v1/jobs/${slow}/cancel`);
    expect(cancelled.status).toBe(200);
    await waitFor(async () => (await call(base, 'GET', `/api/v1/jobs/${slow}`)).json.job.state === 'KILLED', { what: 'the job killed' });
    expect((await call(base, 'POST', `/api/v1/jobs/${slow}/cancel`)).status).toBe(409);

    const bad: [unknown, RegExp][] = [
      [{ name: 'x', count: 1, templ: {} }, /unknown field "templ"/],
      [{ name: 'x', count: 1 }, /"template" .* is missing/],
      [{ name: 'x', count: 1, template: { cmd: ['true'] } }, /template: unknown field "cmd"/],
      [{ name: 'x', count: 0, template: { command: ['true'] } }, /count must be/],
      [{ name: 'x', count: 2, template: { command: ['true'] }, overrides: { 7: { command: ['true'] } } }, /override index 7 out of range/],
    ];
    for (const [body, message] of bad) {
      const r = await call(base, 'POST', '/api/v1/jobs', body);
      expect({ status: r.status, code: r.json.error.code }).toEqual({ status: 400, code: 'INVALID_ARGUMENT' });
      expect(r.json.error.message).toMatch(message);
    }
    expect((await call(base, 'GET', '/api/v1/jobs/no-such-job')).json.error.code).toBe('NOT_FOUND');
  });

  it('lists the tasks of a job (by id or name) and of an owner', async () => {
    const name = `list-${Date.now().toString(36)}`;
    const job = (await call(base, 'POST', '/api/v1/jobs', { name, count: 3, template: { command: ['true'] } })).json.job;
    await waitFor(async () => (await call(base, 'GET', `/api/v1/jobs/${name}`)).json.job.state === 'JOB_COMPLETED', { what: 'the job to end' });
    for (const ref of [name, job.id]) {
      const page = (await call(base, 'GET', `/api/v1/tasks?job=${ref}`)).json;
      expect(page.tasks.map((t: { jobId: string; index?: number }) => [t.jobId, t.index ?? 0])).toEqual([[job.id, 0], [job.id, 1], [job.id, 2]]);
    }
    expect((await call(base, 'GET', `/api/v1/tasks?job=${name}&state=completed&page_size=1000`)).json.tasks).toHaveLength(3);
    expect((await call(base, 'GET', `/api/v1/tasks?job=${name}&state=queued`)).json.tasks ?? []).toHaveLength(0);
    const mine = (await call(base, 'GET', '/api/v1/tasks?owner=local&page_size=1000')).json.tasks;
    expect(mine.length).toBeGreaterThanOrEqual(3);
    expect(mine.every((t: { owner: string }) => t.owner === 'local')).toBe(true);
    expect((await call(base, 'GET', '/api/v1/tasks?owner=nobody-here&page_size=1000')).json.tasks ?? []).toHaveLength(0);
    expect((await call(base, 'GET', '/api/v1/tasks?job=no-such-job')).json.error.code).toBe('NOT_FOUND');
  });

  it('keeps the queue\'s recent past for the dashboard, and shows it in /metrics', async () => {
    const q = await waitFor(async () => {
      const r = (await call(base, 'GET', '/api/v1/queue')).json;
      return r.samples.length > 0 ? r : undefined;
    }, { what: 'a first queue sample' });
    expect(q.everyMs).toBe(10_000);
    expect(q.samples[0]).toEqual({ atMs: expect.any(Number), queued: expect.any(Number), slotsFree: expect.any(Number), started: expect.any(Number) });
    const text = await (await fetch(`http://127.0.0.1:${n.node.metricsPort}/metrics`)).text();
    expect(text).toMatch(/^loom_queue_depth \d+$/m);
    expect(text).toMatch(/^loom_slots_free \d+$/m);
  });

  it('serves the dashboard: its page, its modules (every import served), under a policy allowing scripts from the node only', async () => {
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self'/);
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await page.text();
    const seen = new Set<string>();
    const todo = [...html.matchAll(/(?:src|href)="(\/ui\/[^"]+)"/g)].map((m) => m[1]);
    expect(todo).toEqual(expect.arrayContaining(['/ui/app.js', '/ui/style.css']));
    while (todo.length) {
      const url = todo.pop()!;
      if (seen.has(url)) continue;
      seen.add(url);
      const res = await fetch(`${base}${url}`);
      expect({ url, status: res.status }).toEqual({ url, status: 200 });
      if (!url.endsWith('.css')) expect(res.headers.get('content-type')).toMatch(/^text\/javascript/);
      const text = await res.text();
      // A bare specifier ("preact") would need an import map: every import must be a served path.
      for (const m of text.matchAll(/(?:from|import)\s*["']([^"']+)["']/g)) {
        expect({ url, spec: m[1], relative: /^\.\.?\//.test(m[1]) }).toEqual({ url, spec: m[1], relative: true });
        todo.push(new URL(m[1], `http://x${url}`).pathname);
      }
    }
    expect([...seen]).toEqual(expect.arrayContaining(['/ui/vendor/preact.mjs', '/ui/vendor/hooks.mjs', '/ui/vendor/htm.mjs']));
  });

  it('streams live events: the nodes at once, each task state change, the queue every second', async () => {
    const controller = new AbortController();
    const res = await fetch(`${base}/api/v1/events`, { signal: controller.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events: { event: string; data: any }[] = []; // eslint-disable-line @typescript-eslint/no-explicit-any
    const reading = (async () => {
      let text = '';
      const decoder = new TextDecoder();
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = text.indexOf('\n\n')) >= 0) {
          const block = text.slice(0, end);
          text = text.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) events.push({ event, data: JSON.parse(data) });
        }
      }
    })().catch(() => undefined);
    try {
      await waitFor(() => events.some((e) => e.event === 'nodes'), { what: 'the nodes event' });
      expect(events.find((e) => e.event === 'nodes')!.data.nodes.map((x: { name: string }) => x.name)).toContain('web');
      const [id] = (await call(base, 'POST', '/api/v1/tasks', { command: ['sh', '-c', 'exit 2'] })).json.ids;
      await waitFor(() => events.some((e) => e.event === 'task' && e.data.id === id && e.data.state === 'failed'), { what: 'the task failed event' });
      const mine = events.filter((e) => e.event === 'task' && e.data.id === id).map((e) => e.data.state);
      expect(mine).toContain('running');
      expect(mine.indexOf('running')).toBeLessThan(mine.indexOf('failed'));
      expect(events.find((e) => e.event === 'task' && e.data.state === 'running')!.data.node).toBe('web');
      await waitFor(() => events.some((e) => e.event === 'queue'), { what: 'the queue event' });
      expect(events.find((e) => e.event === 'queue')!.data).toMatchObject({ queued: expect.any(Number), slotsFree: expect.any(Number) });
    } finally {
      controller.abort();
      await reading;
    }
  });

  it('closes event streams that are still open when the node stops', async () => {
    const other = await startNode(uniqueRoot(), 'web2', { httpListen: '127.0.0.1:0' });
    const res = await fetch(`http://127.0.0.1:${other.node.httpPort}/api/v1/events`);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read(); // the stream is open and being served
    const started = Date.now();
    await stopNode(other);
    // The client sees its stream end (or break) instead of the stop waiting for it.
    await reader.read().then(() => undefined, () => undefined);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('frees a log stream whose client stopped reading and then went away', async () => {
    // One log stream per node: a stream left waiting on a gone client would refuse every later one.
    const small = await startNode(uniqueRoot(), 'web3', { httpListen: '127.0.0.1:0' }, { apiLimits: { logStreamsPerNode: 1 } });
    const at = `http://127.0.0.1:${small.node.httpPort}`;
    try {
      // 120 MB of output: more than the loopback socket buffers hold (up to 32 + 4 MB here), so the server's writes back up.
      const [id] = (await call(at, 'POST', '/api/v1/tasks', { command: ['head', '-c', '120000000', '/dev/zero'] })).json.ids;
      expect((await call(at, 'GET', `/api/v1/tasks/${id}/wait`)).json.state).toBe('COMPLETED');
      const stuck = net.connect(small.node.httpPort, '127.0.0.1');
      await new Promise((resolve) => stuck.once('connect', resolve));
      stuck.write(`GET /api/v1/tasks/${id}/logs HTTP/1.1\r\nHost: x\r\n\r\n`);
      // Its answer began (so it holds the slot); then it reads nothing more.
      await new Promise((resolve) => stuck.once('readable', resolve));
      expect(String(stuck.read())).toMatch(/^HTTP\/1\.1 200/);
      await waitFor(async () => (await call(at, 'GET', `/api/v1/tasks/${id}/logs`)).status === 429, { what: 'the first stream holding the only slot' });
      stuck.destroy();
      const r = await waitFor(async () => {
        const res = await fetch(`${at}/api/v1/tasks/${id}/logs`);
        const size = (await res.arrayBuffer()).byteLength;
        return res.status === 200 ? size : undefined;
      }, { what: 'the slot freed', timeoutMs: 20_000 });
      expect(r).toBe(120_000_000);
    } finally {
      await stopNode(small);
    }
  });

  it('drains and resumes a node', async () => {
    const d = await call(base, 'POST', '/api/v1/nodes/web/drain');
    expect(d.json.control.drain).toBe(true);
    await waitFor(async () => (await call(base, 'GET', '/api/v1/nodes')).json.nodes.find((x: { name: string }) => x.name === 'web')?.draining === true, { what: 'the node record' });
    const r = await call(base, 'POST', '/api/v1/nodes/web/resume');
    expect(r.json.control.drain ?? false).toBe(false);
    await waitFor(async () => !(await call(base, 'GET', '/api/v1/nodes')).json.nodes.find((x: { name: string }) => x.name === 'web')?.draining, { what: 'the node record' });
  });

  it('serves an OpenAPI document whose every route the server answers, with a documented status', async () => {
    const doc = (await call(base, 'GET', '/api/v1/openapi.json')).json;
    expect(doc.openapi).toMatch(/^3\./);
    const routes = Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, unknown> }>>);
    expect(routes.length).toBeGreaterThanOrEqual(10);
    for (const [template, methods] of routes) {
      for (const [method, op] of Object.entries(methods)) {
        const route = template.replace('{id}', NO_SUCH).replace('{name}', 'no-such-node').replace('{job}', 'no-such-job');
        if (route === '/api/v1/events') {
          const controller = new AbortController();
          const res = await fetch(`${base}${route}`, { signal: controller.signal });
          expect(Object.keys(op.responses)).toContain(String(res.status));
          controller.abort();
          continue;
        }
        const r = await call(base, method.toUpperCase(), route.endsWith('/wait') ? `${route}?timeout=100` : route, method === 'post' && template === '/api/v1/tasks' ? { command: ['true'] } : method === 'post' && template === '/api/v1/jobs' ? { name: 'doc-job', count: 1, template: { command: ['true'] } } : undefined);
        expect({ route, method, endpoint: /no such endpoint/.test(r.json?.error?.message ?? '') }).toEqual({ route, method, endpoint: false });
        expect({ route, method, documented: Object.keys(op.responses).includes(String(r.status)) }).toEqual({ route, method, documented: true });
      }
    }
  });
});

describe('the HTTP/JSON API over mutual TLS', () => {
  let dir: string;
  let n: TestNode;
  const files: Record<string, TlsFiles> = {};
  const ids: Record<string, TlsMaterial> = {};
  let port = 0;

  /** One request with `who`'s client certificate (none: no certificate). */
  function tlsCall(who: string | undefined, method: string, route: string, body?: unknown): Promise<Reply> {
    const id = who ? ids[who] : undefined;
    return new Promise((resolve, reject) => {
      const req = https.request({
        host: '127.0.0.1', port, path: route, method, ca: ids.ca.ca, ...(id ? { cert: id.cert, key: id.key } : {}),
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
      }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          const type = String(res.headers['content-type'] ?? '');
          resolve({ status: res.statusCode ?? 0, type, text, json: type.includes('json') ? JSON.parse(text) : undefined });
        });
      });
      req.on('error', reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-http-tls-'));
    const pki = path.join(dir, 'pki');
    const other = path.join(dir, 'other');
    await initCa({ dir: pki });
    await initCa({ dir: other });
    const add = async (key: string, d: string, role: 'node' | 'client', name: string) => {
      const r = await issueCert({ dir: d, role, name, hosts: role === 'node' ? ['127.0.0.1'] : undefined });
      files[key] = { caFile: path.join(d, 'ca.crt'), certFile: r.cert, keyFile: r.key };
      ids[key] = readTlsFiles(files[key]);
    };
    await add('h1', pki, 'node', 'h1');
    await add('alice', pki, 'client', 'alice');
    await add('bob', pki, 'client', 'bob');
    await add('foreign', other, 'client', 'alice');
    ids.ca = ids.alice;
    n = await startNode(uniqueRoot(), 'h1', { tls: files.h1, httpListen: '127.0.0.1:0' });
    port = n.node.httpPort;
  });
  afterAll(async () => {
    await stopNode(n);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('names the caller by its certificate: the owner may cancel, another client may not', async () => {
    const sub = await tlsCall('alice', 'POST', '/api/v1/tasks', { command: ['sleep', '30'] });
    expect(sub.status).toBe(200);
    const [id] = sub.json.ids;
    expect((await tlsCall('alice', 'GET', `/api/v1/tasks/${id}`)).json.owner).toBe('alice');
    const denied = await tlsCall('bob', 'POST', `/api/v1/tasks/${id}/cancel`);
    expect(denied.status).toBe(403);
    expect(denied.json.error).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(denied.json.error.message).toMatch(/bob may not cancel task .* belongs to alice/);
    expect((await tlsCall('bob', 'GET', `/api/v1/tasks/${id}/logs`)).status).toBe(403);
    expect((await tlsCall('bob', 'POST', '/api/v1/nodes/h1/drain')).status).toBe(403);
    expect((await tlsCall('alice', 'POST', `/api/v1/tasks/${id}/cancel`)).status).toBe(200);
    expect((await tlsCall('alice', 'GET', `/api/v1/tasks/${id}/wait`)).json.state).toBe('CANCELLED');
  });

  it('takes a browser\'s PKCS#12 bundle (loom certs issue client NAME --p12) as its holder, and serves the dashboard over TLS', async () => {
    const r = await issueCert({ dir: path.join(dir, 'pki'), role: 'client', name: 'carol', p12: {} });
    const pfx = fs.readFileSync(r.p12!);
    const passphrase = fs.readFileSync(r.p12PasswordFile!, 'utf8');
    const get = (route: string, method = 'GET', body?: unknown) => new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port, path: route, method, ca: ids.ca.ca, pfx, passphrase, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end(body ? JSON.stringify(body) : undefined);
    });
    const sub = await get('/api/v1/tasks', 'POST', { command: ['true'] });
    expect(sub.status).toBe(200);
    const [id] = JSON.parse(sub.text).ids;
    expect(JSON.parse((await get(`/api/v1/tasks/${id}`)).text).owner).toBe('carol');
    const page = await get('/');
    expect(page.status).toBe(200);
    expect(page.text).toMatch(/\/ui\/app\.js/);
  });

  it('refuses a request without a certificate, or with one of another CA, saying why', async () => {
    const none = await tlsCall(undefined, 'GET', '/api/v1/nodes');
    expect(none.status).toBe(403);
    expect(none.json.error.message).toMatch(/requires a client certificate/);
    const foreign = await tlsCall('foreign', 'GET', '/api/v1/nodes');
    expect(foreign.status).toBe(403);
    expect(foreign.json.error.message).toMatch(/refused the client certificate CN=alice/);
    expect(n.logs.join('\n')).toMatch(/denied|refused/);
  });
});
