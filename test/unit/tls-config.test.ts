/**
 * Transport configuration: the --insecure rule, TLS flags and env, label
 * limits, the client's TLS error messages and the server-identity check.
 */
import * as grpc from '@grpc/grpc-js';
import type { PeerCertificate } from 'tls';
import {
  defaultNodeConfig, isLoopbackHost, LABEL_LIMITS, NodeConfig, parseLabel, plaintextExposure, validateNodeConfig,
} from '../../src/core/config';
import { parseNodeArgs } from '../../src/bin/node-command';
import { checkNodeServer, tlsFilesFromEnv } from '../../src/wire/tls';
import { fromGrpcError } from '../../src/wire/grpc-errors';
import { identityOf } from '../../src/node/tls';
import { LoomError } from '../../src/core/errors';

const err = (fn: () => unknown): LoomError | undefined => {
  try {
    fn();
  } catch (e) {
    return e as LoomError;
  }
  return undefined;
};

const TLS = { caFile: 'ca.crt', certFile: 'n.crt', keyFile: 'n.key' };
const base = (over: Partial<NodeConfig> = {}): NodeConfig => ({ ...defaultNodeConfig(2), ...over });

describe('plaintext only on loopback unless --insecure', () => {
  it('knows loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.0.0.3', 'localhost', '::1', '[::1]']) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['0.0.0.0', '10.0.0.1', '::', '[::]', 'example.com', '128.0.0.1']) expect(isLoopbackHost(h)).toBe(false);
  });

  it('accepts the default (loopback) config: the quickstart needs no flag', () => {
    expect(validateNodeConfig(base())).toBeDefined();
    expect(() => parseNodeArgs([], {})).not.toThrow();
    expect(() => parseNodeArgs(['--listen', '127.0.0.2:8080'], {})).not.toThrow();
  });

  it('refuses a non-loopback listen address without TLS, in one line that names the way out', () => {
    const e = err(() => validateNodeConfig(base({ listen: '0.0.0.0:8080', peerListen: 'http://127.0.0.1:2380', clientListen: 'http://127.0.0.1:2379' })));
    expect(e?.code).toBe('INVALID_ARGUMENT');
    expect(e?.message).toMatch(/--listen 0\.0\.0\.0:8080 without TLS/);
    expect(e?.message).toMatch(/--tls-ca, --tls-cert and --tls-key/);
    expect(e?.message).toMatch(/--insecure/);
    expect(e?.message).not.toContain('\n');
    expect(err(() => parseNodeArgs(['--listen', '10.1.2.3:8080'], {}))?.message).toMatch(/--listen 10\.1\.2\.3:8080.*--peer-listen http:\/\/10\.1\.2\.3:2380.*--client-listen/);
  });

  it('an embedded member that listens on every address must be told what to advertise', () => {
    const e = err(() => parseNodeArgs(['--peer-listen', 'http://0.0.0.0:2380', '--insecure'], {}));
    expect(e?.code).toBe('INVALID_ARGUMENT');
    expect(e?.message).toMatch(/--peer-listen http:\/\/0\.0\.0\.0:2380 listens on every address: give --peer-advertise/);
    expect(err(() => parseNodeArgs(['--client-listen', 'http://[::]:2379', '--insecure'], {}))?.message).toMatch(/give --client-advertise/);
    const c = parseNodeArgs(
      ['--peer-listen', 'http://0.0.0.0:2380', '--peer-advertise', 'http://10.1.2.3:2380', '--client-listen', 'http://0.0.0.0:2379', '--client-advertise', 'http://10.1.2.3:2379', '--insecure'],
      {},
    );
    expect([c.peerAdvertise, c.clientAdvertise]).toEqual(['http://10.1.2.3:2380', 'http://10.1.2.3:2379']);
    expect(err(() => parseNodeArgs(['--peer-advertise', 'http://0.0.0.0:2380'], {}))?.message).toMatch(/--peer-advertise http:\/\/0\.0\.0\.0:2380 is not an address others can reach/);
    expect(err(() => parseNodeArgs(['--client-advertise', 'http://127.0.0.1:2379', '--tls-ca', 'a', '--tls-cert', 'b', '--tls-key', 'c'], {}))?.message).toMatch(
      /--client-advertise http:\/\/127\.0\.0\.1:2379 must be an https:\/\/ URL/,
    );
  });

  it('accepts it with --insecure, or with TLS', () => {
    const c = parseNodeArgs(['--listen', '10.1.2.3:8080', '--insecure'], {});
    expect(c.insecure).toBe(true);
    expect(plaintextExposure(c)).toEqual(['--listen 10.1.2.3:8080', '--peer-listen http://10.1.2.3:2380', '--client-listen http://10.1.2.3:2379']);
    const t = parseNodeArgs(['--listen', '10.1.2.3:8080', '--tls-ca', 'a', '--tls-cert', 'b', '--tls-key', 'c'], {});
    expect(t.tls).toEqual({ caFile: 'a', certFile: 'b', keyFile: 'c' });
    expect(t.peerListen).toBe('https://10.1.2.3:2380');
    expect(t.clientListen).toBe('https://10.1.2.3:2379');
    expect(plaintextExposure(t)).toEqual([]);
  });

  it('treats a plaintext --http-listen beyond loopback the same way', () => {
    const etcd = { etcdEndpoints: ['http://127.0.0.1:2379'] };
    expect(err(() => validateNodeConfig(base({ ...etcd, httpListen: '0.0.0.0:8081' })))?.message).toMatch(/refusing to use --http-listen 0\.0\.0\.0:8081 without TLS/);
    expect(validateNodeConfig(base({ ...etcd, httpListen: '0.0.0.0:8081', insecure: true }))).toBeDefined();
    expect(validateNodeConfig(base({ ...etcd, httpListen: '127.0.0.1:8081' }))).toBeDefined();
    expect(err(() => validateNodeConfig(base({ ...etcd, httpListen: 'nope' })))?.message).toMatch(/invalid --http-listen "nope"/);
    expect(parseNodeArgs(['--http-listen', '127.0.0.1:9090'], {}).httpListen).toBe('127.0.0.1:9090');
  });

  it('treats plaintext etcd beyond loopback the same way', () => {
    expect(err(() => validateNodeConfig(base({ etcdEndpoints: ['http://10.0.0.5:2379'] })))?.message).toMatch(/--etcd http:\/\/10\.0\.0\.5:2379/);
    expect(validateNodeConfig(base({ etcdEndpoints: ['http://10.0.0.5:2379'], insecure: true }))).toBeDefined();
    expect(validateNodeConfig(base({ etcdEndpoints: ['http://127.0.0.1:2379'] }))).toBeDefined();
    expect(err(() => validateNodeConfig(base({ etcdEndpoints: ['https://10.0.0.5:2379'] })))?.message).toMatch(/need --tls-ca/);
    expect(validateNodeConfig(base({ etcdEndpoints: ['https://10.0.0.5:2379'], tls: TLS }))).toBeDefined();
    expect(err(() => validateNodeConfig(base({ etcdEndpoints: ['https://a:1', 'http://b:1'], tls: TLS })))?.message).toMatch(/mix/);
  });

  it('wants https:// embedded etcd URLs with TLS, and http:// without', () => {
    expect(err(() => validateNodeConfig(base({ tls: TLS })))?.message).toMatch(/--peer-listen http:\/\/127\.0\.0\.1:2380 must be an https:\/\/ URL/);
    expect(validateNodeConfig(base({ tls: TLS, peerListen: 'https://127.0.0.1:2380', clientListen: 'https://127.0.0.1:2379' }))).toBeDefined();
    expect(
      err(() => validateNodeConfig(base({ tls: TLS, peerListen: 'https://127.0.0.1:2380', clientListen: 'https://127.0.0.1:2379', peers: [{ name: 'b', url: 'http://127.0.0.2:2380' }] })))?.message,
    ).toMatch(/--peer b/);
    expect(err(() => parseNodeArgs(['--tls-ca', 'a', '--tls-cert', 'b'], {}))?.message).toMatch(/--tls-key missing/);
  });

  it('validates --admin identities', () => {
    expect(parseNodeArgs(['--admin', 'alice,bob', '--admin', 'ops@example.com'], {}).admins).toEqual(['alice', 'bob', 'ops@example.com']);
    expect(err(() => parseNodeArgs(['--admin', 'bad name'], {}))?.code).toBe('INVALID_ARGUMENT');
  });
});

describe('label limits', () => {
  it('bounds label values and counts, and says the limit', () => {
    expect(parseLabel('zone=eu-1')).toEqual(['zone', 'eu-1']);
    expect(err(() => parseLabel(`k=${'v'.repeat(LABEL_LIMITS.valueChars + 1)}`))?.message).toMatch(String(LABEL_LIMITS.valueChars));
    expect(err(() => parseLabel(`${'k'.repeat(64)}=v`))?.code).toBe('INVALID_ARGUMENT');
    expect(err(() => parseLabel('k=a\nb'))?.code).toBe('INVALID_ARGUMENT');
    const labels = Object.fromEntries(Array.from({ length: LABEL_LIMITS.count + 1 }, (_, i) => [`l${i}`, 'x']));
    expect(err(() => validateNodeConfig(base({ labels })))?.message).toMatch(`limit ${LABEL_LIMITS.count}`);
  });
});

describe('client TLS settings and messages', () => {
  it('reads LOOM_TLS_* all or none', () => {
    expect(tlsFilesFromEnv({})).toBeUndefined();
    expect(tlsFilesFromEnv({ LOOM_TLS_CA: 'a', LOOM_TLS_CERT: 'b', LOOM_TLS_KEY: 'c' })).toEqual({ caFile: 'a', certFile: 'b', keyFile: 'c' });
    expect(err(() => tlsFilesFromEnv({ LOOM_TLS_CA: 'a' }))?.message).toMatch(/LOOM_TLS_CERT and LOOM_TLS_KEY not set/);
  });

  const unavailable = (details: string) =>
    Object.assign(new Error(`14 UNAVAILABLE: ${details}`), { code: grpc.status.UNAVAILABLE, details, metadata: new grpc.Metadata() });

  it('explains TLS failures seen by the client', () => {
    const msg = (d: string) => fromGrpcError(unavailable(`No connection established. Last error: Error: ${d}. Resolution note: `), '10.0.0.1:8080', true).message;
    expect(msg('self-signed certificate in certificate chain')).toMatch(/not signed by the CA in LOOM_TLS_CA/);
    expect(msg('certificate has expired')).toMatch(/expired/);
    expect(msg("Hostname/IP does not match certificate's altnames: IP: 10.0.0.1 is not in the cert's list: 127.0.0.1")).toMatch(/--host/);
    expect(msg('write EPROTO 40C7:error:0A00010B:SSL routines:ssl3_get_record:wrong version number')).toMatch(/does not speak TLS/);
    expect(fromGrpcError(unavailable('No connection established. Last error: connect ECONNREFUSED 10.0.0.1:8080'), '10.0.0.1:8080', true).message).toBe(
      'cannot reach loom node at 10.0.0.1:8080: connection refused',
    );
  });

  const peer = (subject: Record<string, string>, san = 'IP Address:127.0.0.1') =>
    ({ subject, subjectaltname: san, issuer: {}, valid_from: '', valid_to: '', raw: Buffer.alloc(1) }) as unknown as PeerCertificate;

  it('talks only to servers holding a node certificate', () => {
    expect(checkNodeServer('127.0.0.1', peer({ OU: 'node', CN: 'n1' }))).toBeUndefined();
    expect(checkNodeServer('127.0.0.1', peer({ OU: 'client', CN: 'mallory' }))?.message).toMatch(/presented a client certificate \(CN=mallory\), not a loom node certificate/);
    expect(checkNodeServer('10.9.9.9', peer({ OU: 'node', CN: 'n1' }))?.message).toMatch(/10.9.9.9/);
  });

  it('derives identities from verified peer certificates', () => {
    expect(identityOf(peer({ OU: 'client', CN: 'alice' }))).toEqual({ name: 'alice', role: 'client' });
    expect(identityOf(peer({ OU: 'node', CN: 'n1' }))).toEqual({ name: 'n1', role: 'node' });
    expect(identityOf(peer({ CN: 'x' }))).toMatch(/neither a loom node nor a loom client/);
    expect(identityOf(peer({ OU: 'client', CN: 'bad name' }))).toMatch(/invalid certificate CN/);
    expect(identityOf(undefined)).toBe('no client certificate');
  });
});
