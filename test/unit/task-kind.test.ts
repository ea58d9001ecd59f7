/** Task kinds: the HTTP spec's checks, restart defaults, placement by NodeInfo.kinds, the registry, the CLI flags, redaction. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { HttpSpec, NodeInfo, Task, TaskSpec } from '../../src/gen/loom';
import { kindOf, nodeKinds, parseExpect, restartDefault, statusExpected, validateHttp } from '../../src/core/task-kind';
import { validateSpec } from '../../src/core/spec';
import { explainUnplaceable, refusal } from '../../src/core/fit';
import { secretsHidden } from '../../src/core/redact';
import { KindRegistry, TaskKind } from '../../src/runner/kind';
import { parseRunArgs } from '../../src/client/args';
import { thrownBy } from '../support/errors';

const http = (extra: Partial<HttpSpec>): HttpSpec => ({ method: 'GET', url: 'https://example.test/x', headers: [], body: Buffer.alloc(0), expect: '', caPem: '', ...extra });
const messageOf = (fn: () => unknown) => thrownBy(fn).message;

describe('validateHttp', () => {
  it('normalises the method and keeps a valid request', () => {
    expect(validateHttp(http({ method: 'post', body: Buffer.from('x') }))).toMatchObject({ method: 'POST', url: 'https://example.test/x' });
  });

  it.each([
    [{ url: 'ftp://example.test/' }, /only http:\/\/ and https:\/\//],
    [{ url: 'not a url' }, /invalid URL/],
    [{ url: 'https://user:pw@example.test/' }, /carries credentials/],
    [{ method: 'CONNECT' }, /CONNECT is not supported/],
    [{ method: 'GE T' }, /invalid HTTP method/],
    [{ headers: [{ name: 'Host', value: 'evil' }] }, /set by loom/],
    [{ headers: [{ name: 'Content-Length', value: '1' }] }, /set by loom/],
    [{ headers: [{ name: 'X-A', value: 'a\r\nX-B: b' }] }, /CR, LF or NUL/],
    [{ headers: [{ name: 'bad name', value: 'v' }] }, /invalid header name/],
    [{ body: Buffer.from('x') }, /GET request carries no body/],
    [{ body: Buffer.alloc(1024 * 1024 + 1), method: 'POST' }, /request body is 1048577 bytes > limit/],
    [{ caPem: 'not pem' }, /not a PEM certificate/],
    [{ url: 'http://example.test/', caPem: '-----BEGIN CERTIFICATE-----\n' }, /needs an https/],
    [{ maxRedirects: 51 }, /max redirects must be/],
    [{ expect: '200-199' }, /low first/],
    [{ expect: 'ok' }, /invalid --expect/],
  ])('refuses %j', (extra, pattern) => {
    const err = thrownBy(() => validateHttp(http(extra as Partial<HttpSpec>)));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(pattern);
  });

  it('parses status lists', () => {
    const r = parseExpect('200-299, 304');
    expect([200, 299, 304].map((s) => statusExpected(s, r))).toEqual([true, true, true]);
    expect([199, 300, 404].map((s) => statusExpected(s, r))).toEqual([false, false, false]);
    expect(parseExpect('')).toEqual([[200, 299]]);
  });
});

describe('the kind of a task', () => {
  it('is http with a URL, container with an image, else command', () => {
    expect(kindOf({ http: http({}) })).toBe('http');
    expect(kindOf({ container: { image: 'a', pull: '', mounts: [], network: '', user: '' } })).toBe('container');
    expect(kindOf({})).toBe('command');
  });

  it('restarts after a node death by default only where repeating is harmless', () => {
    expect(restartDefault({})).toBe(true);
    expect(restartDefault({ http: http({ method: 'GET' }) })).toBe(true);
    expect(restartDefault({ http: http({ method: 'PUT' }) })).toBe(true);
    expect(restartDefault({ http: http({ method: 'POST' }) })).toBe(false);
    expect(restartDefault({ http: http({ method: 'PATCH' }) })).toBe(false);
    expect(validateSpec({ http: http({ method: 'POST' }) }).restartOnNodeFailure).toBe(false);
    expect(validateSpec({ http: http({ method: 'POST' }), restartOnNodeFailure: true }).restartOnNodeFailure).toBe(true);
    expect(validateSpec({ command: ['true'] }).restartOnNodeFailure).toBe(true);
  });

  it('a spec has one kind: http with a command or an image is refused', () => {
    expect(messageOf(() => validateSpec({ http: http({}), command: ['ls'] }))).toMatch(/runs no command and no container/);
    expect(messageOf(() => validateSpec({ http: http({}), container: { image: 'a', pull: '', mounts: [], network: '', user: '' } }))).toMatch(/runs no command/);
  });
});

describe('placement by kind', () => {
  const node = (name: string, extra: Partial<NodeInfo>) => NodeInfo.fromPartial({ name, labels: {}, ...extra });
  const httpTask = validateSpec({ http: http({}) });

  it('an http task goes only to nodes that list the kind; old records (no kinds) run commands only', () => {
    expect(nodeKinds({})).toEqual(['command']);
    expect(nodeKinds({ docker: true })).toEqual(['command', 'container']);
    expect(refusal(httpTask, node('old', {}))).toBe('runs no http tasks');
    expect(refusal(httpTask, node('new', { kinds: ['command', 'http'] }))).toBeUndefined();
    expect(refusal(validateSpec({ command: ['ls'] }), node('old', {}))).toBeUndefined();
  });

  it('says why when no live node runs the kind', () => {
    expect(explainUnplaceable(httpTask, [node('old', {})])).toMatch(/no live node runs http tasks/);
    expect(explainUnplaceable(httpTask, [node('old', {}), node('new', { kinds: ['http'] })])).toBeUndefined();
  });
});

describe('the kind registry', () => {
  const fake = (name: TaskKind['name'], up: boolean, started: string[]): TaskKind => ({
    name,
    available: () => up,
    start: () => {
      started.push(name);
      throw new Error('boom');
    },
  });
  const task = (spec: Partial<TaskSpec>) => Task.fromPartial({ id: 't', spec: validateSpec({ command: ['x'], ...spec }) });
  const attempt = (t: Task) => ({ task: t, env: {}, logPath: '/nonexistent/x.log', killGraceMs: 0, tailBytes: 10, notAfterMs: Infinity });

  it('publishes the kinds available now, starts by kind, and turns a throw or a missing kind into a failed attempt', async () => {
    const started: string[] = [];
    const reg = new KindRegistry().register(fake('command', true, started)).register(fake('container', false, started));
    expect(reg.available()).toEqual(['command']);
    const thrown = await reg.start(attempt(task({}))).done;
    expect(started).toEqual(['command']);
    expect(thrown).toMatchObject({ error: 'command task could not start: boom', errorExitCode: 125 });
    const missing = await reg.start(attempt(Task.fromPartial({ id: 't', spec: validateSpec({ http: http({}) }) }))).done;
    expect(missing).toMatchObject({ error: 'this node runs no http tasks', errorExitCode: 125 });
    expect(() => reg.register(fake('command', true, started))).toThrow(/registered twice/);
  });
});

describe('loom run --http', () => {
  let dir: string;
  beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-http-args-'))));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('builds the request from curl-like flags; --data makes it a POST that does not restart by default', () => {
    const r = parseRunArgs(['run', '--http', 'https://example.test/hook', '--header', 'Authorization: Bearer t', '--header', 'X-A:1', '--data', '{"a":1}', '--expect', '200,201']);
    expect(r.spec.command).toEqual([]);
    expect(r.spec.http).toMatchObject({ method: 'POST', url: 'https://example.test/hook', expect: '200,201' });
    expect(r.spec.http!.headers).toEqual([{ name: 'Authorization', value: 'Bearer t' }, { name: 'X-A', value: '1' }]);
    expect(r.spec.http!.body.toString()).toBe('{"a":1}');
    expect(r.spec.restartOnNodeFailure).toBe(false);
    expect(parseRunArgs(['run', '--restart', '--http', 'https://example.test/', '--data', 'x']).spec.restartOnNodeFailure).toBe(true);
    expect(parseRunArgs(['run', '--http', 'https://example.test/']).spec).toMatchObject({ restartOnNodeFailure: true, http: { method: 'GET' } });
  });

  it('reads --data @FILE and --http-ca FILE on the client', () => {
    const body = path.join(dir, 'body.json');
    const ca = path.join(dir, 'ca.pem');
    fs.writeFileSync(body, 'file body');
    fs.writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const r = parseRunArgs(['run', '--http', 'https://example.test/', '--method', 'PUT', '--data', `@${body}`, '--http-ca', ca, '--max-redirects', '0']);
    expect(r.spec.http).toMatchObject({ method: 'PUT', maxRedirects: 0 });
    expect(r.spec.http!.body.toString()).toBe('file body');
    expect(r.spec.http!.caPem).toContain('BEGIN CERTIFICATE');
  });

  it.each([
    [['--http', 'https://example.test/', 'ls'], /runs no command: drop "ls"/],
    [['--header', 'X: 1', 'ls'], /--header is for HTTP tasks/],
    [['--http', 'https://example.test/', '--header', 'novalue'], /expected 'Name: value'/],
    [['--http', 'https://example.test/', '--data', '@/nonexistent/file'], /cannot read --data file/],
    [['--http', 'https://example.test/', '--max-redirects', 'lots'], /invalid --max-redirects/],
    [['--http', 'gopher://example.test/'], /only http/],
  ])('refuses %j with exit 2', (args, pattern) => {
    const err = thrownBy(() => parseRunArgs(['run', ...(args as string[])]));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(pattern);
  });
});

describe('secrets of a spec', () => {
  it('hides env values, header values and the body; keeps names, URL and CA', () => {
    const spec = validateSpec({ env: { TOKEN: 't' }, http: http({ method: 'POST', headers: [{ name: 'Authorization', value: 'Bearer t' }], body: Buffer.from('secret') }) });
    const seen = secretsHidden(spec);
    expect(seen.env).toEqual({ TOKEN: '(hidden)' });
    expect(seen.http!.headers).toEqual([{ name: 'Authorization', value: '(hidden)' }]);
    expect(seen.http!.body.toString()).toBe('(hidden)');
    expect(seen.http!.url).toBe('https://example.test/x');
    expect(JSON.stringify(TaskSpec.toJSON(seen))).not.toMatch(/Bearer t|secret/);
  });
});
