/** The HTTP task kind against real HTTP and HTTPS servers on loopback. */
import * as fs from 'fs';
import * as http from 'http';
import * as https from 'https';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { AddressInfo } from 'net';
import { HttpSpec } from '../../src/gen/loom';
import { readFrames, STREAM_STDERR, STREAM_STDOUT } from '../../src/runner/log-file';
import { HTTP_EXIT, HttpRunRequest, startHttp } from '../../src/runner/http-runner';
import { RESULT_MAX_BYTES } from '../../src/runner/result-file';
import { initCa, issueCert } from '../../src/bin/certs-command';

jest.setTimeout(30_000);

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void;

let dir: string;
let seen: Seen[];
let handler: Handler;
let server: http.Server;
let base: string;
/** A second origin (another port): redirects there are cross-origin. */
let other: http.Server;
let otherBase: string;

function listen(s: http.Server): Promise<string> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(s.address() as AddressInfo).port}`)));
}

function recording(s: http.Server): http.Server {
  s.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      seen.push({ method: req.method!, url: `${req.headers.host}${req.url}`, headers: req.headers, body });
      handler(req, res, body);
    });
  });
  return s;
}

function spec(extra: Partial<HttpSpec>): HttpSpec {
  return { method: 'GET', url: `http://${base}/`, headers: [], body: Buffer.alloc(0), expect: '', caPem: '', ...extra };
}

function run(h: HttpSpec, extra: Partial<HttpRunRequest> = {}) {
  const logPath = path.join(dir, 'logs', `${Math.random().toString(36).slice(2)}.log`);
  const handle = startHttp({ http: h, logPath, timeoutMs: 10_000, tailBytes: 64 * 1024, userAgent: 'loom/test', ...extra });
  return { handle, logPath };
}

async function streams(logPath: string): Promise<{ stdout: string; stderr: string }> {
  const out = { stdout: '', stderr: '' };
  if (!fs.existsSync(logPath)) return out;
  for await (const f of readFrames(logPath, {})) {
    if (f.stream === STREAM_STDOUT) out.stdout += f.data.toString();
    if (f.stream === STREAM_STDERR) out.stderr += f.data.toString();
  }
  return out;
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-http-'));
  server = recording(http.createServer());
  other = recording(http.createServer());
  base = await listen(server);
  otherBase = await listen(other);
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  await new Promise((r) => other.close(r));
  fs.rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  seen = [];
  handler = (_req, res) => res.end('hello');
});

describe('HTTP tasks', () => {
  it('a 200 exits 0 with the body on stdout and as the result, the exchange on stderr', async () => {
    handler = (_req, res) => {
      res.setHeader('X-Answer', '42');
      res.end('{"ok":true}');
    };
    const { handle, logPath } = run(spec({ headers: [{ name: 'X-Token', value: 's3cret' }] }));
    const r = await handle.done;
    expect(r).toMatchObject({ exitCode: 0, reason: 'HTTP 200 OK', timedOut: false });
    expect(r.result?.toString()).toBe('{"ok":true}');
    expect(seen[0].headers['x-token']).toBe('s3cret');
    expect(seen[0].headers['user-agent']).toBe('loom/test');
    const { stdout, stderr } = await streams(logPath);
    expect(stdout).toBe('{"ok":true}');
    expect(stderr).toContain(`> GET http://${base}/`);
    expect(stderr).toContain('< HTTP/1.1 200 OK');
    expect(stderr).toContain('< X-Answer: 42');
    // Request header values are not echoed into the log.
    expect(stderr).not.toContain('s3cret');
  });

  it('a POST sends its body and headers; an unexpected status exits 22 with the status as the reason', async () => {
    handler = (_req, res) => {
      res.statusCode = 404;
      res.end('no such thing');
    };
    const { handle } = run(spec({ method: 'POST', body: Buffer.from('a=1'), headers: [{ name: 'Content-Type', value: 'text/plain' }] }));
    const r = await handle.done;
    expect(r.exitCode).toBe(HTTP_EXIT.status);
    expect(r.reason).toBe('HTTP 404 Not Found (expected 200-299)');
    expect(seen[0]).toMatchObject({ method: 'POST', body: 'a=1' });
    expect(seen[0].headers['content-length']).toBe('3');
  });

  it('--expect widens what counts as success', async () => {
    handler = (_req, res) => {
      res.statusCode = 404;
      res.end();
    };
    const r = await run(spec({ expect: '200-299,404' })).handle.done;
    expect(r).toMatchObject({ exitCode: 0, reason: 'HTTP 404 Not Found' });
  });

  it('a 303 turns a POST into a GET without its body or Content-Type', async () => {
    handler = (req, res) => {
      if (req.url === '/form') {
        res.writeHead(303, { Location: '/done' });
        return res.end();
      }
      res.end('thanks');
    };
    const r = await run(spec({ url: `http://${base}/form`, method: 'POST', body: Buffer.from('x'), headers: [{ name: 'Content-Type', value: 'text/plain' }] })).handle.done;
    expect(r.exitCode).toBe(0);
    expect(seen.map((s) => `${s.method} ${s.url} ${s.body}`)).toEqual([`POST ${base}/form x`, `GET ${base}/done `]);
    expect(seen[1].headers['content-type']).toBeUndefined();
  });

  it('a 307 keeps the method and body', async () => {
    handler = (req, res) => {
      if (req.url === '/a') {
        res.writeHead(307, { Location: '/b' });
        return res.end();
      }
      res.end();
    };
    await run(spec({ url: `http://${base}/a`, method: 'PUT', body: Buffer.from('v') })).handle.done;
    expect(seen.map((s) => `${s.method} ${s.body}`)).toEqual(['PUT v', 'PUT v']);
  });

  it('credentials are not sent on to another origin by a redirect', async () => {
    handler = (req, res) => {
      if (req.url === '/landing') return res.end('landed');
      res.writeHead(302, { Location: `http://${otherBase}/landing` });
      res.end();
    };
    const r = await run(spec({ headers: [{ name: 'Authorization', value: 'Bearer t' }, { name: 'Cookie', value: 'c=1' }, { name: 'X-Keep', value: 'k' }] })).handle.done;
    expect(r.exitCode).toBe(0);
    expect(seen).toHaveLength(2);
    expect(seen[0].headers.authorization).toBe('Bearer t');
    expect(seen[1].url).toBe(`${otherBase}/landing`);
    expect(seen[1].headers.authorization).toBeUndefined();
    expect(seen[1].headers.cookie).toBeUndefined();
    expect(seen[1].headers['x-keep']).toBe('k');
  });

  it('a redirect loop stops at max redirects with exit 47; max redirects 0 judges the 3xx itself', async () => {
    handler = (_req, res) => {
      res.writeHead(302, { Location: '/' });
      res.end();
    };
    const looped = await run(spec({ maxRedirects: 3 })).handle.done;
    expect(looped.exitCode).toBeUndefined();
    expect(looped.errorExitCode).toBe(HTTP_EXIT.redirects);
    expect(looped.error).toMatch(/more than 3 redirects/);
    expect(seen).toHaveLength(4);
    seen = [];
    const once = await run(spec({ maxRedirects: 0, expect: '302' })).handle.done;
    expect(once).toMatchObject({ exitCode: 0, reason: 'HTTP 302 Found' });
    expect(seen).toHaveLength(1);
  });

  it('a refused connection exits 7, an unknown host 6', async () => {
    const closed = net.createServer();
    const port = await new Promise<number>((r) => closed.listen(0, '127.0.0.1', () => r((closed.address() as AddressInfo).port)));
    await new Promise((r) => closed.close(r));
    const refused = await run(spec({ url: `http://127.0.0.1:${port}/` })).handle.done;
    expect(refused).toMatchObject({ errorExitCode: HTTP_EXIT.connect });
    expect(refused.error).toMatch(/could not connect to 127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
    const unknown = await run(spec({ url: 'http://no-such-host.invalid/' })).handle.done;
    expect(unknown.errorExitCode).toBe(HTTP_EXIT.resolve);
  });

  it('the timeout aborts a request that hangs: exit 28, timedOut', async () => {
    handler = () => undefined; // never answers
    const r = await run(spec({}), { timeoutMs: 200 }).handle.done;
    expect(r).toMatchObject({ timedOut: true, errorExitCode: HTTP_EXIT.timeout, error: 'timeout after 200 ms' });
  });

  it('stop() mid-request ends it at once with stoppedFor', async () => {
    handler = () => undefined;
    const { handle } = run(spec({}), { timeoutMs: 0 });
    while (seen.length === 0) await new Promise((r) => setTimeout(r, 5));
    handle.stop('cancel', 5000);
    const r = await handle.done;
    expect(r.stoppedFor).toBe('cancel');
  });

  it('past the fence deadline nothing is sent', async () => {
    const r = await run(spec({}), { notAfterMs: Date.now() - 1 }).handle.done;
    expect(r.stoppedFor).toBe('fence');
    expect(seen).toHaveLength(0);
  });

  it('a body over the result limit is logged in full and refused as the result', async () => {
    const big = 'x'.repeat(RESULT_MAX_BYTES + 10);
    handler = (_req, res) => res.end(big);
    const { handle, logPath } = run(spec({}));
    const r = await handle.done;
    expect(r.exitCode).toBe(0);
    expect(r.result).toBeUndefined();
    expect(r.resultError).toMatch(/result limit/);
    expect(r.stdoutBytes).toBe(big.length);
    expect((await streams(logPath)).stdout.length).toBe(big.length);
  });

  it('a 10 MiB body keeps the log under --max-log-bytes and the node\'s memory to the tails', async () => {
    const chunk = Buffer.alloc(64 * 1024, 'y');
    handler = (_req, res) => {
      let left = 160; // 10 MiB
      const more = () => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      more();
    };
    const { handle, logPath } = run(spec({}), { maxLogBytes: 1024 * 1024 });
    const r = await handle.done;
    expect(r).toMatchObject({ exitCode: 0, stdoutBytes: 10 * 1024 * 1024, stdoutTruncated: true });
    expect(r.stdoutTail.length).toBe(64 * 1024);
    expect(r.resultError).toMatch(/10485760 bytes > the 65536-byte result limit/);
    // Head up to the cap, the cut note and the retained tail: never the whole body.
    expect(fs.statSync(logPath).size).toBeLessThan(1024 * 1024 + 3 * 64 * 1024);
  });

  it('a reply cut off mid-body exits 56', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'Content-Length': '100' });
      res.write('only some');
      setTimeout(() => res.socket?.destroy(), 20);
    };
    const r = await run(spec({})).handle.done;
    expect(r.errorExitCode).toBe(HTTP_EXIT.receive);
  });

  describe('HTTPS', () => {
    let tls: https.Server;
    let caPem: string;
    let url: string;
    beforeAll(async () => {
      const pki = path.join(dir, 'pki');
      await initCa({ dir: pki });
      const node = await issueCert({ dir: pki, role: 'node', name: 'web', hosts: ['127.0.0.1'] });
      caPem = fs.readFileSync(path.join(pki, 'ca.crt'), 'utf8');
      tls = recording(https.createServer({ cert: fs.readFileSync(node.cert), key: fs.readFileSync(node.key) }) as unknown as http.Server) as unknown as https.Server;
      url = `https://${await listen(tls as unknown as http.Server)}/`;
    });
    afterAll(() => new Promise((r) => tls.close(r)));

    it('with the server\'s CA given the request verifies and succeeds', async () => {
      const r = await run(spec({ url, caPem })).handle.done;
      expect(r).toMatchObject({ exitCode: 0 });
      expect(r.result?.toString()).toBe('hello');
    });

    it('without it the certificate is refused: exit 60, nothing sent', async () => {
      const r = await run(spec({ url })).handle.done;
      expect(r.errorExitCode).toBe(HTTP_EXIT.certificate);
      expect(r.error).toMatch(/certificate of 127\.0\.0\.1:\d+ not accepted/);
      expect(seen).toHaveLength(0);
    });
  });
});
