/**
 * HTTP tasks end to end: `loom run --http` against a real node and a real
 * HTTP server on loopback. The node claims the task (it publishes the http
 * kind), makes the request, streams the body as the task's output and keeps
 * it as the result; the CLI exits with curl's statuses.
 */
import * as http from 'http';
import { AddressInfo } from 'net';
import { TaskState } from '../../src/gen/loom';
import { uniqueRoot } from '../support/etcd';
import { startNode, stopNode, TestNode } from '../support/nodes';
import { cli } from '../support/cluster';

jest.setTimeout(60_000);

describe('HTTP tasks on a real node', () => {
  let n: TestNode;
  let server: http.Server;
  let base: string;
  let flaky = 0;
  const seen: { method: string; url: string; auth?: string; body: string }[] = [];
  const env = { LOOM_INSECURE: '', LOOM_TLS_CA: '', LOOM_TLS_CERT: '', LOOM_TLS_KEY: '' };
  const loom = (...args: string[]) => cli(['-N', n.node.address, ...args], env);

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, auth: req.headers.authorization, body });
        if (req.url === '/flaky' && (flaky++ % 2 === 0)) {
          res.statusCode = 500;
          return res.end('try again\n');
        }
        if (req.url === '/missing') {
          res.statusCode = 404;
          return res.end('not here\n');
        }
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ got: body || null }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    n = await startNode(uniqueRoot(), 'httpnode');
  });
  afterAll(async () => {
    await stopNode(n);
    await new Promise((r) => server.close(r));
  });

  it('the node publishes the http kind', async () => {
    const nodes = await n.api.nodes();
    expect(nodes.find((x) => x.name === 'httpnode')?.kinds).toContain('http');
    expect((await loom('nodes')).stdout).toMatch(/httpnode .*command,http/);
  });

  it('loom run --http streams the body and exits 0; the result is the body', async () => {
    const run = await loom('run', '--http', `${base}/hook`, '--header', 'Authorization: Bearer t0k', '--data', 'ping');
    expect(run.code).toBe(0);
    expect(run.stdout).toBe('{"got":"ping"}');
    expect(run.stderr).toContain(`> POST ${base}/hook`);
    expect(run.stderr).toContain('< HTTP/1.1 200 OK');
    expect(seen.at(-1)).toEqual({ method: 'POST', url: '/hook', auth: 'Bearer t0k', body: 'ping' });

    const detached = await loom('run', '-d', '--http', `${base}/get`);
    const id = detached.stdout.trim();
    expect((await loom('wait', id, '--result'))).toMatchObject({ code: 0, stdout: '{"got":null}' });
    const t = await n.api.get(id);
    expect(t).toMatchObject({ state: TaskState.COMPLETED, exitCode: 0, reason: 'HTTP 200 OK', spec: { restartOnNodeFailure: true } });
    expect((await loom('status', id)).stdout).toMatch(/^http: +GET http:\/\/127\.0\.0\.1:\d+\/get$/m);
  });

  it('an unexpected status fails the task with exit 22 and the status as its reason', async () => {
    const run = await loom('run', '--http', `${base}/missing`);
    expect(run.code).toBe(22);
    expect(run.stdout).toBe('not here\n');
    const id = (await loom('run', '-d', '--http', `${base}/missing`)).stdout.trim();
    expect(await n.api.wait(id)).toMatchObject({ state: TaskState.FAILED, exitCode: 22, reason: 'HTTP 404 Not Found (expected 200-299)' });
  });

  it('a 500 counts as a failure for --retries: the second attempt gets the 200', async () => {
    const run = await loom('run', '--http', `${base}/flaky`, '--retries', '1', '--json');
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ state: 'COMPLETED', attempt: 2, exitCode: 0 });
    expect(seen.filter((s) => s.url === '/flaky')).toHaveLength(2);
  });

  it('a POST is recorded as not restarting after a node death unless asked; a refused connection exits 7', async () => {
    const id = (await loom('run', '-d', '--http', `${base}/x`, '--method', 'POST')).stdout.trim();
    expect((await n.api.wait(id)).spec?.restartOnNodeFailure).toBe(false);
    const refused = await loom('run', '--http', 'http://127.0.0.1:9/');
    expect(refused.code).toBe(7);
    expect(refused.stderr).toMatch(/could not connect to 127\.0\.0\.1:9/);
  });

  it('bad flags are refused before anything is submitted, exit 2', async () => {
    const before = seen.length;
    const bad = await loom('run', '--http', 'ftp://127.0.0.1/');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/only http:\/\/ and https:\/\//);
    expect(seen.length).toBe(before);
  });
});
