/** `loom certs`: the CA and node/client certificates made with the system's openssl. */
import { execFileSync } from 'child_process';
import { X509Certificate } from 'crypto';
import { createSecureContext } from 'tls';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initCa, issueCert, main, nodeSans } from '../../src/bin/certs-command';
import { readTlsFiles, subjectFields } from '../../src/wire/tls';
import { loadNodeTls } from '../../src/node/tls';
import { LoomError } from '../../src/core/errors';

jest.setTimeout(60_000);

const mode = (file: string) => fs.statSync(file).mode & 0o777;
const cert = (file: string) => new X509Certificate(fs.readFileSync(file));

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as LoomError).code;
  }
  return 'no error';
}

describe('loom certs', () => {
  let dir: string;
  beforeEach(() => {
    dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'loom-certs-')), 'pki');
  });
  afterEach(() => fs.rmSync(path.dirname(dir), { recursive: true, force: true }));

  it('init creates a CA: key 0600, dir 0700, CN=loom-ca, a CA certificate', async () => {
    const r = await initCa({ dir });
    expect(r.cert).toBe(path.join(dir, 'ca.crt'));
    expect(mode(dir)).toBe(0o700);
    expect(mode(r.key)).toBe(0o600);
    expect(mode(r.cert)).toBe(0o644);
    const ca = cert(r.cert);
    expect(subjectFields(ca.subject).CN).toBe('loom-ca');
    expect(ca.ca).toBe(true);
    expect(ca.checkIssued(ca)).toBe(true);
    // Nothing left behind but the two files.
    expect(fs.readdirSync(dir).sort()).toEqual(['ca.crt', 'ca.key']);
  });

  it('issues node certificates: OU=node, server+client auth, SANs from --host plus the name and loom-node', async () => {
    await initCa({ dir });
    const r = await issueCert({ dir, role: 'node', name: 'node1', hosts: ['10.0.0.1', 'node1.example.com,[::1]'] });
    expect(r.cert).toBe(path.join(dir, 'node-node1.crt'));
    expect(mode(r.key)).toBe(0o600);
    const c = cert(r.cert);
    expect(subjectFields(c.subject)).toMatchObject({ O: 'loom', OU: 'node', CN: 'node1' });
    expect(c.subjectAltName).toBe('DNS:node1, DNS:loom-node, IP Address:10.0.0.1, DNS:node1.example.com, IP Address:0:0:0:0:0:0:0:1');
    expect(c.keyUsage?.sort()).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(c.ca).toBe(false);
    expect(c.checkIssued(cert(path.join(dir, 'ca.crt')))).toBe(true);
    const files = { caFile: path.join(dir, 'ca.crt'), certFile: r.cert, keyFile: r.key };
    expect(loadNodeTls(files, 'node1')).toMatchObject({ name: 'node1', role: 'node' });
  });

  it('issues client certificates: OU=client, client auth only, no SANs', async () => {
    await initCa({ dir });
    const r = await issueCert({ dir, role: 'client', name: 'alice@example.com' });
    expect(r.cert).toBe(path.join(dir, 'client-alice@example.com.crt'));
    expect(mode(r.key)).toBe(0o600);
    const c = cert(r.cert);
    expect(subjectFields(c.subject)).toMatchObject({ OU: 'client', CN: 'alice@example.com' });
    expect(c.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(c.subjectAltName).toBeUndefined();
    const m = readTlsFiles({ caFile: path.join(dir, 'ca.crt'), certFile: r.cert, keyFile: r.key });
    expect(m).toMatchObject({ name: 'alice@example.com', role: 'client' });
    // A client certificate cannot serve as a node.
    expect(() => loadNodeTls({ caFile: path.join(dir, 'ca.crt'), certFile: r.cert, keyFile: r.key }, 'alice')).toThrow(/client certificate/);
  });

  it('--p12 bundles a client\'s key, certificate and the CA for a browser, under a password', async () => {
    await initCa({ dir });
    const r = await issueCert({ dir, role: 'client', name: 'dave', p12: {} });
    expect(r.p12).toBe(path.join(dir, 'client-dave.p12'));
    expect(mode(r.p12!)).toBe(0o600);
    expect(mode(r.p12PasswordFile!)).toBe(0o600);
    const password = fs.readFileSync(r.p12PasswordFile!, 'utf8');
    expect(password.length).toBeGreaterThanOrEqual(16);
    const pfx = fs.readFileSync(r.p12!);
    // Node's TLS opens it with the password (key and certificate match), and not without.
    expect(() => createSecureContext({ pfx, passphrase: password })).not.toThrow();
    expect(() => createSecureContext({ pfx, passphrase: 'wrong' })).toThrow();
    // It holds the client's certificate and the CA's.
    const certs = execFileSync('openssl', ['pkcs12', '-in', r.p12!, '-nokeys', '-passin', `file:${r.p12PasswordFile}`], { encoding: 'utf8' });
    expect(certs).toMatch(/subject=.*CN ?= ?dave/);
    expect(certs).toMatch(/subject=.*CN ?= ?loom-ca/);
    // A given password is used, and no password file written.
    const e = await issueCert({ dir, role: 'client', name: 'erin', p12: { password: 'erin-secret' } });
    expect(e.p12PasswordFile).toBeUndefined();
    expect(fs.existsSync(`${e.p12}.pass`)).toBe(false);
    expect(() => createSecureContext({ pfx: fs.readFileSync(e.p12!), passphrase: 'erin-secret' })).not.toThrow();
    expect(await codeOf(issueCert({ dir, role: 'node', name: 'n9', p12: {} }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(issueCert({ dir, role: 'client', name: 'frank', p12: { password: 'abc' } }))).toBe('INVALID_ARGUMENT');
  });

  it('honours --days', async () => {
    await initCa({ dir, days: 10 });
    const r = await issueCert({ dir, role: 'client', name: 'bob', days: 2 });
    const days = (r.notAfter.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(1.9);
    expect(days).toBeLessThan(2.1);
  });

  it('refuses to overwrite unless --force', async () => {
    const first = await initCa({ dir });
    const key = fs.readFileSync(first.key);
    expect(await codeOf(initCa({ dir }))).toBe('INVALID_STATE');
    expect(fs.readFileSync(first.key)).toEqual(key);
    await issueCert({ dir, role: 'client', name: 'carol' });
    await expect(issueCert({ dir, role: 'client', name: 'carol' })).rejects.toThrow(/already exist.*--force/);
    const again = await issueCert({ dir, role: 'client', name: 'carol', force: true });
    expect(mode(again.key)).toBe(0o600);
    await initCa({ dir, force: true });
    expect(fs.readFileSync(first.key)).not.toEqual(key);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('rejects bad input with clear codes', async () => {
    expect(await codeOf(issueCert({ dir, role: 'client', name: 'x' }))).toBe('NOT_FOUND'); // no CA yet
    await initCa({ dir });
    expect(await codeOf(issueCert({ dir, role: 'node', name: 'bad/name' }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(issueCert({ dir, role: 'client', name: 'x', hosts: ['1.2.3.4'] }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(issueCert({ dir, role: 'client', name: '-x' }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(initCa({ dir: dir + '2', days: 0 }))).toBe('INVALID_ARGUMENT');
    expect(() => nodeSans('n', ['bad host!'])).toThrow(/invalid --host/);
  });

  it('runs as `loom certs init` / `issue` and prints what to do next', async () => {
    const out: string[] = [];
    expect(await main(['init', '--dir', dir], (s) => out.push(s))).toBe(0);
    expect(await main(['issue', '--dir', dir, 'node', 'n1', '--host', '127.0.0.1'], (s) => out.push(s))).toBe(0);
    expect(await main(['issue', '--dir', dir, 'client', 'ann'], (s) => out.push(s))).toBe(0);
    expect(out.join('')).toMatch(/--tls-ca .*ca\.crt --tls-cert .*node-n1\.crt --tls-key .*node-n1\.key/);
    expect(out.join('')).toMatch(/LOOM_TLS_CERT=.*client-ann\.crt/);
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['issue', '--dir', dir, 'client', 'ann'], () => undefined)).toBe(4);
      expect(await main(['issue', '--dir', dir, 'robot', 'r'], () => undefined)).toBe(2);
    } finally {
      stderr.mockRestore();
    }
  });
});
