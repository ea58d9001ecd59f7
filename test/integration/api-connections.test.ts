/**
 * The API's connections against raw sockets: ones that never finish a
 * handshake (no TLS handshake, no HTTP/2 preface) are closed after the
 * handshake timeout and at most `pending` of them are held at once; ones
 * that do but then make no call are closed after the idle timeout; past
 * `open` connections new ones are closed at once. The node answers its real
 * clients throughout. Plaintext and TLS nodes, real etcd, real sockets.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { LoomClient } from '../../src/gen/loom';
import { LoomApi } from '../../src/client/client';
import { TcpProxy } from '../support/tcp-proxy';
import { readTlsFiles } from '../../src/wire/tls';
import { initCa, issueCert } from '../../src/bin/certs-command';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { uuidAt } from '../support/ids';
import { startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(60_000);

const HANDSHAKE_MS = 500;
const IDLE_MS = 1500;
const PENDING = 50;
const OPEN = 120;
const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';

interface Raw {
  socket: net.Socket;
  closed: Promise<number>;
}

/** A raw TCP client that sends `send` once connected and nothing after; `closed` resolves with when the node closed it. */
function raw(address: string, send = ''): Promise<Raw> {
  const [host, port] = [address.replace(/:\d+$/, ''), Number(address.replace(/^.*:/, ''))];
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    socket.on('error', () => undefined);
    const closed = new Promise<number>((done) => socket.once('close', () => done(Date.now())));
    socket.once('connect', () => {
      if (send) socket.write(send);
      // Reads whatever comes (an HTTP/2 SETTINGS, a GOAWAY), never answers.
      socket.resume();
      resolve({ socket, closed });
    });
    socket.once('error', reject);
  });
}

const many = (n: number, address: string, send = '') => Promise.all(Array.from({ length: n }, () => raw(address, send)));

describe('a plaintext node', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'conns', {}, {
      connectionLimits: { handshakeTimeoutMs: HANDSHAKE_MS, pending: PENDING, open: OPEN },
      apiLimits: { idleConnectionMs: IDLE_MS },
    });
  });
  afterAll(() => stopNode(n));

  it('closes connections that send nothing or half a preface, holds at most `pending`, and keeps answering', async () => {
    const t0 = Date.now();
    const silent = await many(200, n.node.address);
    const partial = await many(20, n.node.address, PREFACE.slice(0, 10));
    // All 220 connected; the node holds no more than its cap mid-handshake (the oldest were closed).
    expect(n.node.apiConnections.pending).toBeLessThanOrEqual(PENDING);
    // It answers a real client meanwhile.
    expect((await n.api.nodes()).map((x) => x.name)).toContain('conns');
    const closedAt = await Promise.all([...silent, ...partial].map((c) => c.closed));
    expect(Math.max(...closedAt) - t0).toBeLessThan(HANDSHAKE_MS + 3000);
    // (The node sees the close a moment after the client does.)
    await waitFor(() => n.node.apiConnections.pending === 0, { what: 'no connection left mid-handshake' });
    expect((await n.api.nodes()).map((x) => x.name)).toContain('conns');
    // Said in the log (rate-limited: the first lines are the evictions of the oldest).
    expect(n.logs.some((l) => /^closed connection from 127\.0\.0\.1:\d+: 50 connections mid-handshake, it was the oldest$/.test(l))).toBe(true);
  });

  it('closes a connection past its preface that makes no call, once idle; a client reconnects', async () => {
    const api = new LoomApi(n.node.address);
    try {
      const stalled = await raw(n.node.address, PREFACE);
      await api.nodes();
      // Idle (no call) for IDLE_MS: the stalled one and the clients' are all closed.
      await stalled.closed;
      await waitFor(() => n.node.apiConnections.open === 0, { what: 'idle connections to be closed' });
      // The client's next call opens a new connection.
      expect((await api.nodes()).length).toBeGreaterThan(0);
    } finally {
      api.close();
    }
  });

  it('closes new connections at once past `open`, and serves again once they are gone', async () => {
    // Each sends the preface: handed to the API, they count as open until idle.
    const t0 = Date.now();
    const conns = await many(OPEN + 30, n.node.address, PREFACE);
    await waitFor(() => n.node.apiConnections.open === OPEN, { what: `${OPEN} connections open` });
    const firstClosed = await Promise.race(conns.map((c) => c.closed));
    // The surplus was closed long before the idle timeout could have.
    expect(firstClosed - t0).toBeLessThan(IDLE_MS);
    await Promise.all(conns.map((c) => c.closed));
    expect((await n.api.nodes()).map((x) => x.name)).toContain('conns');
  });
});

describe('a TLS node', () => {
  let dir: string;
  let n: TestNode;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-conns-tls-'));
    await initCa({ dir });
    const node = await issueCert({ dir, role: 'node', name: 'tconns', hosts: ['127.0.0.1'] });
    const client = await issueCert({ dir, role: 'client', name: 'alice' });
    n = await startNode(uniqueRoot(), 'tconns', { tls: { caFile: path.join(dir, 'ca.crt'), certFile: node.cert, keyFile: node.key } }, {
      connectionLimits: { handshakeTimeoutMs: HANDSHAKE_MS, pending: PENDING, open: OPEN },
    });
    n.api.close();
    n.api = new LoomApi(n.node.address, { tls: readTlsFiles({ caFile: path.join(dir, 'ca.crt'), certFile: client.cert, keyFile: client.key }) });
  });
  afterAll(async () => {
    await stopNode(n);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('closes connections that never finish a TLS handshake; an authenticated one is not counted as pending', async () => {
    expect((await n.api.nodes()).map((x) => x.name)).toContain('tconns');
    // The client's connection finished its handshake: not held as pending.
    expect(n.node.apiConnections.pending).toBe(0);
    const silent = await many(150, n.node.address);
    // A record header of a TLS handshake, then nothing: the TLS server's own timeout.
    const started = await many(20, n.node.address, '\x16\x03\x01');
    expect(n.node.apiConnections.pending).toBeLessThanOrEqual(PENDING);
    expect((await n.api.nodes()).map((x) => x.name)).toContain('tconns');
    await Promise.all([...silent, ...started].map((c) => c.closed));
    await waitFor(() => n.node.apiConnections.pending === 0, { what: 'no connection left mid-handshake' });
    expect((await n.api.nodes()).map((x) => x.name)).toContain('tconns');
  });
});

describe('reads of callers that went away', () => {
  it('leave the queue of reads waiting for etcd at once', async () => {
    // The node reaches etcd through a proxy the test stalls: its reads hang,
    // 128 in flight, and the rest queue in the node.
    const proxy = TcpProxy.fromUrl(testEtcdEndpoint());
    await proxy.start();
    const n = await startNode(uniqueRoot(), 'reads', { etcdEndpoints: [proxy.url] });
    const client = new LoomClient(n.node.address, grpc.credentials.createInsecure());
    try {
      proxy.stall();
      const calls = 400;
      const deadline = Date.now() + 1000;
      const ended = Array.from({ length: calls }, (_, i) =>
        new Promise<grpc.status | undefined>((resolve) =>
          i % 2 === 0
            ? client.get({ id: uuidAt(Date.now(), i) }, new grpc.Metadata(), { deadline }, (err) => resolve(err?.code))
            : client.nodes({}, new grpc.Metadata(), { deadline }, (err) => resolve(err?.code)),
        ),
      );
      await waitFor(() => n.node.kv.queuedReads >= calls - 128, { what: 'reads queued in the node' });
      // Every caller gives up at its deadline...
      expect(new Set(await Promise.all(ended))).toEqual(new Set([grpc.status.DEADLINE_EXCEEDED]));
      // ...and their reads leave the queue then, not after the reads ahead of
      // them have timed out (5 s each) and taken their turn at etcd.
      await waitFor(() => n.node.kv.queuedReads === 0, { what: 'the queue to empty', timeoutMs: 1000 });
    } finally {
      proxy.heal();
      client.close();
      await stopNode(n);
      await proxy.stop();
    }
  });
});
