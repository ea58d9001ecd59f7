/**
 * The node side of loom's mutual TLS.
 *
 *  - loadNodeTls: reads --tls-ca/--tls-cert/--tls-key and refuses what cannot
 *    work (a client certificate used as a node, an expired one, a CN that is
 *    not the node's name, a key that is not the certificate's).
 *  - identityOf: who a verified peer certificate says the caller is. The one
 *    place identities are derived; the API gets them through grpc-adapter.
 *  - SecureListener: the API's TCP listener. With TLS it terminates TLS
 *    itself so that every refusal is explained on both sides: a connection
 *    whose client certificate is missing, expired or not from the cluster CA,
 *    and a plaintext gRPC client, get one line in the node's log and a gRPC
 *    error (PERMISSION_DENIED) that says why; only verified connections reach
 *    the real API (through grpc-js' connection injector). Without TLS it
 *    hands over connections that open with the HTTP/2 preface. Either way it
 *    bounds connections: grpc-js has no such option (its server takes every
 *    connection, and one that never sends a byte stays forever).
 */
import * as http2 from 'http2';
import * as net from 'net';
import * as tls from 'tls';
import * as grpc from '@grpc/grpc-js';
import { TlsFiles, validateIdentityName } from '../core/config';
import { LoomError } from '../core/errors';
import { readTlsFiles, roleOf, TlsMaterial, type CertRole } from '../wire/tls';

/** Who is calling. Without TLS everyone is the same local user. */
export interface Identity {
  /** The certificate's CN, or 'local'. Recorded as a task's owner. */
  name: string;
  role: CertRole | 'local';
}

export const LOCAL_IDENTITY: Identity = Object.freeze({ name: 'local', role: 'local' });

export const NODE_TLS_FLAGS = { ca: '--tls-ca', cert: '--tls-cert', key: '--tls-key' };

/** Reads the node's identity; throws INVALID_ARGUMENT with the fix when it cannot serve as node `name`. */
export function loadNodeTls(files: TlsFiles, name: string, now = Date.now()): TlsMaterial {
  const m = readTlsFiles(files, NODE_TLS_FLAGS);
  if (m.role !== 'node') {
    throw new LoomError(
      'INVALID_ARGUMENT',
      `--tls-cert ${files.certFile} is ${m.role === 'client' ? `a client certificate (CN=${m.name}, OU=client)` : `not a loom node certificate (CN=${m.name})`}; ` +
        `a node needs a node certificate: loom certs issue --dir DIR node ${name} --host ADDRESS`,
    );
  }
  if (m.name !== name) {
    throw new LoomError('INVALID_ARGUMENT', `--tls-cert ${files.certFile} is node ${m.name}'s certificate, not ${name}'s (--name ${name})`);
  }
  if (m.notAfter.getTime() <= now) {
    throw new LoomError('INVALID_ARGUMENT', `--tls-cert ${files.certFile} expired on ${m.notAfter.toISOString()}; issue a new one with loom certs issue`);
  }
  return m;
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The identity a verified peer certificate stands for, or a refusal reason.
 * The certificate must carry a usable CN and OU=node or OU=client.
 */
export function identityOf(cert: tls.PeerCertificate | undefined): Identity | string {
  if (!cert || !cert.subject) return 'no client certificate';
  const cn = first(cert.subject.CN) ?? '';
  const role = roleOf(first(cert.subject.OU));
  if (!role) return `certificate CN=${cn.slice(0, 64)} is neither a loom node nor a loom client certificate (no OU=node or OU=client)`;
  try {
    validateIdentityName(cn, 'certificate CN');
  } catch (err) {
    return (err as Error).message;
  }
  return { name: cn, role };
}

/** Identity of a call on the TLS API server (grpc-js' auth context). */
export function identityOfCall(call: { getAuthContext?: () => { sslPeerCertificate?: tls.PeerCertificate } | null }): Identity {
  const id = identityOf(call.getAuthContext?.()?.sslPeerCertificate);
  if (typeof id === 'string') throw new LoomError('PERMISSION_DENIED', `not authenticated: ${id}`);
  return id;
}

/** A TLS client after its handshake: refused (and why, in words for the client), or who it is. */
function refusalOf(socket: tls.TLSSocket, nodeName: string): { reason: string } | { identity: Identity } {
  const cert = socket.getPeerCertificate();
  const hasCert = Boolean(cert && cert.raw);
  const cn = hasCert ? first(cert.subject?.CN) ?? '?' : '';
  if (!hasCert) {
    return { reason: `node ${nodeName} requires a client certificate: set LOOM_TLS_CERT and LOOM_TLS_KEY (see \`loom certs issue\`)` };
  }
  if (!socket.authorized) {
    const code = String(socket.authorizationError ?? 'unknown');
    switch (code) {
      case 'CERT_HAS_EXPIRED':
        return { reason: `node ${nodeName} refused client certificate CN=${cn}: it expired on ${new Date(cert.valid_to).toISOString()}; issue a new one with \`loom certs issue\`` };
      case 'CERT_NOT_YET_VALID':
        return { reason: `node ${nodeName} refused client certificate CN=${cn}: it is not valid before ${new Date(cert.valid_from).toISOString()} (check the clocks)` };
      case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
      case 'UNABLE_TO_GET_ISSUER_CERT':
      case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      case 'SELF_SIGNED_CERT_IN_CHAIN':
      case 'DEPTH_ZERO_SELF_SIGNED_CERT':
      case 'CERT_SIGNATURE_FAILURE':
        return { reason: `node ${nodeName} refused client certificate CN=${cn}: it is not signed by this cluster's CA (issuer: ${first(cert.issuer?.CN) ?? '?'})` };
      default:
        return { reason: `node ${nodeName} refused client certificate CN=${cn}: ${code}` };
    }
  }
  const id = identityOf(cert);
  if (typeof id === 'string') return { reason: `node ${nodeName} refused the client: ${id}` };
  return { identity: id };
}

/** Why a TLS handshake failed, from the node's point of view. */
function describeHandshakeError(err: NodeJS.ErrnoException): string {
  const m = err.message ?? String(err);
  if (/alert (unknown ca|bad certificate|certificate unknown|decrypt error)/i.test(m)) {
    return `the client does not trust this node's certificate (${m.replace(/^.*?alert /, 'alert ').replace(/:.*$/, '')}): is its LOOM_TLS_CA the cluster CA, and does the node's certificate name the address it dialled (--host)?`;
  }
  if (/alert certificate expired/i.test(m)) return "the client says this node's certificate expired: issue it again";
  if (err.code === 'ECONNRESET' || /socket hang up|disconnected/i.test(m)) {
    return 'the client closed the connection during the TLS handshake (it may not trust this node\'s certificate)';
  }
  if (/wrong version number|unsupported protocol|no shared cipher/i.test(m)) return `no common TLS version or cipher (${m})`;
  return m;
}

/** Percent-encoding for grpc-message (printable ASCII except '%' stays). */
function grpcMessage(text: string): string {
  return Buffer.from(text, 'utf8').reduce((s, b) => s + (b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : `%${b.toString(16).toUpperCase().padStart(2, '0')}`), '');
}

/** A one-line log that cannot be flooded: at most `burst` lines per window, then a count. */
export class RateLimitedLog {
  private windowStart = 0;
  private count = 0;
  private dropped = 0;
  constructor(
    private readonly log: (msg: string) => void,
    private readonly what = 'refused connections',
    private readonly burst = 20,
    private readonly windowMs = 60_000,
  ) {}

  write(msg: string): void {
    const now = Date.now();
    if (now - this.windowStart >= this.windowMs) {
      if (this.dropped > 0) this.log(`(${this.dropped} more ${this.what} not logged in the last ${this.windowMs / 1000} s)`);
      this.windowStart = now;
      this.count = 0;
      this.dropped = 0;
    }
    if (this.count++ < this.burst) this.log(msg);
    else this.dropped++;
  }
}

export interface SecureListenerOptions {
  /** Mutual TLS; unset: plaintext (HTTP/2 connections are handed over as they are). */
  tls?: TlsMaterial;
  /** The API: verified connections are injected into it. */
  server: grpc.Server;
  nodeName: string;
  log: (msg: string) => void;
  /** Bounds on connections (CONNECTION_LIMITS by default). */
  limits?: Partial<ConnectionLimits>;
}

export interface ConnectionLimits {
  /** A connection must have finished its TLS handshake, or sent the HTTP/2 preface without TLS, by then. */
  handshakeTimeoutMs: number;
  /** Connections not yet handed to the API (mid-handshake) held at once; past it the oldest is closed. */
  pending: number;
  /** Connections open at once, handed over or not; past it new ones are closed at once. */
  open: number;
}

/** Defaults, documented in the README (Limits). */
export const CONNECTION_LIMITS: Readonly<ConnectionLimits> = {
  handshakeTimeoutMs: 10_000,
  // A real client finishes its handshake in milliseconds: only connections
  // that stall wait here, and the oldest of those goes first.
  pending: 256,
  // Each is a descriptor and an HTTP/2 session: well above what a cluster's
  // CLIs, waiting clients and peer nodes hold at once, and a bound on what a
  // flood of them can take from the node (its log files, etcd connections).
  open: 4096,
};

const TLS_HANDSHAKE_RECORD = 0x16;
/** What an HTTP/2 client sends first (RFC 9113, 3.4); a plaintext gRPC client too. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export class SecureListener {
  private net: net.Server | undefined;
  private readonly injector: grpc.ConnectionInjector;
  /** Never listens: raw connections that start a TLS handshake are handed to it. */
  private readonly tlsServer: tls.Server | undefined;
  private readonly refusals: RateLimitedLog;
  /** Connections not (yet) handed to the API, oldest first: closed on close(). */
  private readonly pending = new Set<net.Socket>();
  /** Raw connections open (handed over or not). */
  private open = 0;
  readonly limits: ConnectionLimits;
  private closed: Promise<void> = Promise.resolve();
  /** host:port of each raw connection, for messages. */
  private readonly peers = new WeakMap<net.Socket, string>();

  constructor(private readonly opts: SecureListenerOptions) {
    this.injector = opts.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    this.refusals = new RateLimitedLog(opts.log);
    this.limits = { ...CONNECTION_LIMITS, ...opts.limits };
    if (!opts.tls) return;
    this.tlsServer = tls.createServer({
      ca: opts.tls.ca,
      cert: opts.tls.cert,
      key: opts.tls.key,
      minVersion: 'TLSv1.2',
      requestCert: true,
      // Verified in onSecure, so that a refused client hears why (a handshake alert says little).
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
      handshakeTimeout: this.limits.handshakeTimeoutMs,
    });
    this.tlsServer.on('secureConnection', (t: tls.TLSSocket) => this.onSecure(t));
    this.tlsServer.on('tlsClientError', (err: NodeJS.ErrnoException, t: tls.TLSSocket) => {
      // The TLS socket is gone by now; its address is the raw socket's (read when it connected).
      const raw = (t as { _parent?: unknown })._parent;
      const peer = (raw instanceof net.Socket && this.peers.get(raw)) || 'a client';
      this.refusals.write(`TLS handshake with ${peer} failed: ${describeHandshakeError(err)}`);
      t.destroy();
    });
  }

  /** Listens on host:port (port 0 = any); resolves with the port. */
  listen(host: string, port: number): Promise<number> {
    const server = net.createServer((socket) => this.onConnection(socket));
    this.net = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: host.replace(/^\[(.*)\]$/, '$1'), port }, () => {
        server.removeListener('error', reject);
        server.on('error', (err) => this.opts.log(`api listener error: ${err.message}`));
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Stops accepting new connections; those open go on (the API's shutdown closes them). */
  stopAccepting(): void {
    const server = this.net;
    if (!server) return;
    this.closed = new Promise<void>((resolve) => server.close(() => resolve()));
    this.net = undefined;
  }

  /** Stops accepting and drops whatever connection is left. */
  async close(): Promise<void> {
    this.stopAccepting();
    for (const s of this.pending) s.destroy();
    this.pending.clear();
    this.injector.destroy();
    await this.closed;
  }

  /** Raw connections open now, and those among them not handed to the API yet (tests, metrics). */
  get connections(): { open: number; pending: number } {
    return { open: this.open, pending: this.pending.size };
  }

  private onConnection(socket: net.Socket): void {
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.on('error', () => undefined);
    const { handshakeTimeoutMs, pending, open } = this.limits;
    if (this.open >= open) {
      this.refusals.write(`refused connection from ${peer}: ${open} connections open, the most this node serves`);
      socket.destroy();
      return;
    }
    this.open++;
    socket.once('close', () => this.open--);
    if (this.pending.size >= pending) {
      const oldest = this.pending.values().next().value as net.Socket;
      this.refusals.write(`closed connection from ${this.peers.get(oldest) ?? 'a client'}: ${pending} connections mid-handshake, it was the oldest`);
      this.handOver(oldest);
      oldest.destroy();
    }
    this.peers.set(socket, peer);
    this.pending.add(socket);
    socket.once('close', () => this.pending.delete(socket));
    const timeout = setTimeout(() => {
      this.refusals.write(`refused connection from ${peer}: no ${this.tlsServer ? 'TLS handshake' : 'HTTP/2 preface'} within ${handshakeTimeoutMs / 1000} s`);
      socket.destroy();
    }, handshakeTimeoutMs);
    timeout.unref();
    socket.once('close', () => clearTimeout(timeout));
    // The first bytes say what the client speaks; without TLS the whole
    // preface must arrive before the connection reaches grpc-js, whose
    // HTTP/2 server would otherwise hold a stalled one for good.
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const h2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (h2 && !this.tlsServer && head.length < H2_PREFACE.length) return; // the rest of the preface
      socket.removeListener('data', onData);
      socket.pause();
      socket.unshift(head);
      if (head[0] === TLS_HANDSHAKE_RECORD && this.tlsServer) {
        // tls.Server has its own handshake timeout from here.
        clearTimeout(timeout);
        this.tlsServer.emit('connection', socket);
      } else if (h2 && this.tlsServer) {
        clearTimeout(timeout);
        this.handOver(socket);
        const reason =
          `node ${this.opts.nodeName} requires mutual TLS and this client connected without it: ` +
          'set LOOM_TLS_CA, LOOM_TLS_CERT and LOOM_TLS_KEY (see the README, Security)';
        this.refusals.write(`refused plaintext connection from ${peer}: this node requires mutual TLS`);
        this.refuse(socket, reason);
      } else if (h2) {
        clearTimeout(timeout);
        this.handOver(socket);
        this.injector.injectConnection(socket);
      } else {
        const what = head[0] === TLS_HANDSHAKE_RECORD ? 'a TLS client, and this node serves plaintext (no --tls-*)' : this.tlsServer ? 'neither TLS nor HTTP/2' : 'not HTTP/2';
        this.refusals.write(`refused connection from ${peer}: ${what}`);
        socket.destroy();
      }
    };
    socket.on('data', onData);
  }

  /** No longer counted as mid-handshake (handed to the API, refused, or evicted). */
  private handOver(socket: net.Socket): void {
    this.pending.delete(socket);
  }

  private onSecure(t: tls.TLSSocket): void {
    const peer = `${t.remoteAddress}:${t.remotePort}`;
    t.on('error', () => undefined);
    if (t.alpnProtocol !== 'h2') {
      this.refusals.write(`refused TLS connection from ${peer}: it did not negotiate HTTP/2 (not a gRPC client)`);
      t.destroy();
      return;
    }
    // Its handshake is over: the raw connection under it is no longer pending.
    const raw = (t as { _parent?: unknown })._parent;
    if (raw instanceof net.Socket) this.handOver(raw);
    const verdict = refusalOf(t, this.opts.nodeName);
    if ('reason' in verdict) {
      this.refusals.write(`refused TLS connection from ${peer}: ${verdict.reason.replace(/^node \S+ (refused )?/, '')}`);
      this.refuse(t, verdict.reason);
      return;
    }
    this.injector.injectConnection(t);
  }

  /**
   * Answers every call on this connection with PERMISSION_DENIED and the
   * reason (a trailers-only gRPC response), then closes it. Nothing of the
   * API is reachable from here.
   */
  private refuse(socket: net.Socket, reason: string): void {
    const h2 = http2.createServer();
    const headers = {
      ':status': 200,
      'content-type': 'application/grpc+proto',
      'grpc-status': String(grpc.status.PERMISSION_DENIED),
      'grpc-message': grpcMessage(reason),
      'loom-code': 'PERMISSION_DENIED',
    };
    h2.on('stream', (stream) => {
      stream.on('error', () => undefined);
      try {
        stream.respond(headers, { endStream: true });
      } catch {
        stream.destroy();
      }
    });
    h2.on('session', (session) => {
      session.on('error', () => undefined);
      // One round of answers, then go away; a client that retries is refused again.
      const closer = setTimeout(() => session.close(), 1000);
      closer.unref();
      const killer = setTimeout(() => session.destroy(), 10_000);
      killer.unref();
      session.once('close', () => {
        clearTimeout(closer);
        clearTimeout(killer);
      });
    });
    h2.emit('connection', socket);
  }
}
