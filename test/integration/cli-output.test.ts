/**
 * What the CLI shows of other people's input: control characters in task
 * names, argv, images and reasons reach the terminal escaped (`loom list`,
 * `loom status`); a job's env values, like a task's, only its owner and admins
 * see. Real node, real executable; TLS identities for the ownership part.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { JobSpec, TaskSpec } from '../../src/gen/loom';
import { LoomApi } from '../../src/client/client';
import { readTlsFiles, TlsFiles } from '../../src/wire/tls';
import { initCa, issueCert } from '../../src/bin/certs-command';
import { escapeControls, quoteArg } from '../../src/client/format';
import { uniqueRoot } from '../support/etcd';
import { startNode, stopNode, TestNode } from '../support/nodes';
import { cli } from '../support/cluster';

jest.setTimeout(60_000);

// ESC sequences that clear the screen, retitle the terminal and recolour; a bidi override; a C1 CSI; a backspace.
const NASTY_NAME = 'ok\x1b[2J\x1b]0;pwned\x07\u202etxt.exe';
const NASTY_ARG = 'a\x1b[31mred\x9b1m\bb';

describe('control characters in what the CLI shows', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'show');
  });
  afterAll(async () => {
    await stopNode(n);
  });

  it('loom list and loom status escape them; nothing reaches the terminal raw', async () => {
    const [id] = await n.api.submit([TaskSpec.fromPartial({ name: NASTY_NAME, command: ['sh', '-c', 'exit 3', NASTY_ARG] })]);
    await n.api.wait(id);
    const env = { LOOM_INSECURE: '', LOOM_TLS_CA: '', LOOM_TLS_CERT: '', LOOM_TLS_KEY: '' };
    const list = await cli(['-N', n.node.address, 'list'], env);
    const status = await cli(['-N', n.node.address, 'status', id], env);
    for (const r of [list, status]) {
      expect(r.code).toBe(0);
      expect(r.stdout).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/);
    }
    expect(list.stdout).toContain('ok\\x1b[2J\\x1b]0;pwned\\x07\\u202etxt.exe: sh -c ');
    expect(list.stdout).toContain(`$'a\\x1b[31mred\\u009b1m\\x08b'`);
    expect(status.stdout).toMatch(/^name: +ok\\x1b\[2J\\x1b\]0;pwned\\x07\\u202etxt\.exe$/m);
  });

  it('escapeControls and quoteArg (pure): the $\'...\' form is what bash reads back', () => {
    expect(escapeControls('tab\there\r\n\u0000\u007f\u0085\u2066x')).toBe('tab\\x09here\\x0d\\x0a\\x00\\x7f\\u0085\\u2066x');
    expect(escapeControls('plain ünïcödé ✓')).toBe('plain ünïcödé ✓');
    expect(quoteArg("it's")).toBe(`'it'\\''s'`);
    expect(quoteArg("a'\\\x1b")).toBe(`$'a\\'\\\\\\x1b'`);
    for (const word of [NASTY_NAME, NASTY_ARG, "it's", "a'\\\x1b\t\u0085"]) {
      expect(execFileSync('bash', ['-c', `printf %s ${quoteArg(word)}`]).toString()).toBe(word);
    }
  });
});

describe('a job\'s env, like a task\'s, is for its owner and admins', () => {
  let dir: string;
  let n: TestNode;
  const files: Record<string, TlsFiles> = {};
  const apis: LoomApi[] = [];
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-jobenv-'));
    await initCa({ dir });
    for (const [key, role] of [['n1', 'node'], ['alice', 'client'], ['bob', 'client'], ['ops', 'client']] as const) {
      const r = await issueCert({ dir, role, name: key, ...(role === 'node' ? { hosts: ['127.0.0.1'] } : {}) });
      files[key] = { caFile: path.join(dir, 'ca.crt'), certFile: r.cert, keyFile: r.key };
    }
    n = await startNode(uniqueRoot(), 'n1', { tls: files.n1, admins: ['ops'] });
  });
  afterAll(async () => {
    for (const a of apis) a.close();
    await stopNode(n);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const as = (who: string) => {
    const api = new LoomApi(n.node.address, { tls: readTlsFiles(files[who]) });
    apis.push(api);
    return api;
  };

  it('getJob and listJobs show the values to alice and ops, (hidden) to bob', async () => {
    const template = TaskSpec.fromPartial({ command: ['sleep', '30'], env: { TOKEN: 's3cret' } });
    const spec = JobSpec.fromPartial({ name: 'secretive', count: 2, template, overrides: { 1: { ...template, env: { TOKEN: 'other' } } } });
    const { job } = await as('alice').submitJob(spec);
    const envs = (j: { spec?: JobSpec }) => [j.spec!.template!.env.TOKEN, j.spec!.overrides[1].env.TOKEN];
    expect(envs((await as('alice').getJob('secretive')).job!)).toEqual(['s3cret', 'other']);
    expect(envs((await as('ops').getJob(job!.id)).job!)).toEqual(['s3cret', 'other']);
    expect(envs((await as('bob').getJob('secretive')).job!)).toEqual(['(hidden)', '(hidden)']);
    const listed = (await as('bob').listJobs(100, '')).jobs.find((j) => j.id === job!.id)!;
    expect(envs(listed)).toEqual(['(hidden)', '(hidden)']);
    expect(envs((await as('alice').listJobs(100, '')).jobs.find((j) => j.id === job!.id)!)).toEqual(['s3cret', 'other']);
    await as('alice').cancelJob('secretive');
  });
});
