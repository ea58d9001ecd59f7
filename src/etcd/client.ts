/**
 * Connection to etcd and the one place that turns etcd/gRPC failures into
 * LoomErrors. Every call has a deadline; callers may pass an AbortSignal.
 */
import { circuitBreaker, ConsecutiveBreaker, ExponentialBackoff, handleWhen, retry } from 'cockatiel';
import { ClientClosedError, Etcd3, isRecoverableError, IKeyValue, IRequestOp, ITxnRequest, ITxnResponse, IRangeRequest, IRangeResponse } from 'etcd3';
import { LoomError } from '../core/errors';
import { storageFull } from '../core/storage';
import { EndpointHealth, MemberSkippedError } from './endpoint-health';

export type { IKeyValue, IRequestOp, ITxnResponse };

export interface EtcdOptions {
  endpoints: string[];
  /** Deadline of a unary call. */
  callTimeoutMs?: number;
  /**
   * Client certificate (PEM) for https:// endpoints: etcd runs with
   * --client-cert-auth and trusts the cluster CA. Unused for http:// endpoints.
   */
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
  /**
   * Members to skip while they do not answer (endpoint-health.ts); without
   * it, a circuit breaker per member (two failures in a row: skipped 1 s).
   */
  health?: EndpointHealth;
  /**
   * gRPC keepalive ping interval: a connection whose ping is not answered
   * within 2 s is closed, and the requests and watch streams on it fail over
   * to another member (a watch stream on a member that silently stopped
   * answering would otherwise wait forever). etcd refuses pings more often
   * than its --grpc-keepalive-min-time (5 s by default; loom's embedded
   * members accept 1 s).
   */
  keepaliveMs?: number;
}

/** Keepalive interval etcd accepts by default (its --grpc-keepalive-min-time). */
export const KEEPALIVE_DEFAULT_MS = 5000;
/** Keepalive interval for loom's embedded members (they run with --grpc-keepalive-min-time 1s). */
export const KEEPALIVE_EMBEDDED_MS = 2000;

/**
 * An error that means the request was not executed: it never left this
 * process (no connection, a skipped member, a member dropped from the
 * client's list just as the request picked it: hosts.ts closes its
 * Host), or a learner refused it before anything ran (a member whose
 * promotion it has not applied yet).
 */
function neverSent(err: Error): boolean {
  return err instanceof MemberSkippedError || err instanceof ClientClosedError || /rpc not supported for learner|No connection established|ECONNREFUSED|connect ECONN|failed to connect|Name resolution failed/i.test(err.message);
}

/** Longest wait before a broken watch stream is opened again (see connectEtcd). */
export const WATCH_RETRY_MAX_MS = 2000;

export function connectEtcd(opts: EtcdOptions & { ownConnection?: boolean }): Etcd3 {
  const secure = opts.endpoints.some((e) => e.startsWith('https://'));
  if (secure && !opts.tls) {
    throw new LoomError('INVALID_ARGUMENT', `etcd endpoint ${opts.endpoints.join(',')} uses TLS: give the node --tls-ca, --tls-cert and --tls-key`);
  }
  return new Etcd3({
    hosts: opts.endpoints,
    credentials: secure && opts.tls ? { rootCertificate: opts.tls.ca, certChain: opts.tls.cert, privateKey: opts.tls.key } : undefined,
    dialTimeout: 3000,
    grpcOptions: {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.max_send_message_length': 16 * 1024 * 1024,
      // grpc-js shares connections between clients with the same target;
      // the node's lease keepalives get a connection of their own, so they
      // never queue behind bulk traffic.
      ...(opts.ownConnection ? { 'grpc.use_local_subchannel_pool': 1 } : {}),
      'grpc.keepalive_time_ms': opts.keepaliveMs ?? KEEPALIVE_DEFAULT_MS,
      'grpc.keepalive_timeout_ms': 2000,
      // Per-call bookkeeping nothing here uses: channelz, and grpc-js's retry
      // layer (no retry policy is configured; faultHandling below retries).
      'grpc.enable_channelz': 0,
      'grpc.enable_retries': 0,
    },
    faultHandling: {
      // Retry only failures that certainly never reached etcd (no connection
      // to that member): another member is tried. A timeout is ambiguous (a
      // claim may have committed), so it is never retried blindly; callers
      // retry where it is safe (guarded transactions re-read).
      global: retry(handleWhen(neverSent), { maxAttempts: 3 }),
      // A member that does not answer is skipped: until a probe of its own
      // answers (health), or for a second after two failures in a row.
      host: (h) =>
        opts.health ? opts.health.policy(h) : circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(2) }),
      // A broken watch stream is re-opened within WATCH_RETRY_MAX_MS. The
      // library's default backs off up to 30 s, so after an etcd outage of a
      // few seconds a node could go on missing the queue's events long after
      // etcd answered again (13.5 s in one of four 10 s outages measured
      // here; ≤ 0.02 s in all four with this bound). The bound also ends a
      // retry timer that would keep a stopped client's process alive for 30 s.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: WATCH_RETRY_MAX_MS }).next(),
    },
  });
}

const DEFAULT_TIMEOUT_MS = 5000;

export function etcdError(err: unknown, what: string): LoomError {
  if (err instanceof LoomError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (/too many operations in txn request|request is too large|received message larger than max|duplicate key/i.test(message)) {
    return new LoomError('INVALID_ARGUMENT', `${what}: etcd refused the request: ${message}`);
  }
  if (/database space exceeded/i.test(message)) {
    // etcd's NOSPACE alarm stands: every put is refused until space is freed,
    // defragmented and the alarm disarmed (node/storage-keeper.ts).
    return storageFull(`${what}: etcd refused the write: its space quota is exhausted (NOSPACE alarm)`);
  }
  if (/required revision has been compacted/i.test(message)) {
    return new LoomError('INVALID_STATE', `${what}: revision compacted`);
  }
  if (/circuit breaker is open/i.test(message)) {
    // etcd3's per-member breaker: every member failed just now; each is tried again after a second.
    return new LoomError('UNAVAILABLE', `${what}: etcd unavailable: no etcd member answered recently (each is retried about once a second)`);
  }
  return new LoomError('UNAVAILABLE', `${what}: etcd unavailable: ${message}`);
}

/** `promise`, or a CANCELLED rejection as soon as `signal` aborts (the promise itself runs on). */
export function withAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(new LoomError('CANCELLED', `${what}: aborted`));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new LoomError('CANCELLED', `${what}: aborted`));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/**
 * Reads in flight at once per Kv. A burst of API calls (say 10,000 log
 * streams opened together) would otherwise put 10,000 requests on one
 * HTTP/2 connection, time them all out and trip the host circuit breaker;
 * beyond this many, reads wait here in order (abortable) instead.
 */
const MAX_READS_IN_FLIGHT = 128;

/** Thin typed layer over the raw KV RPCs (keys as strings or Buffers). */
export class Kv {
  private closed = false;
  private reads = 0;
  private readonly readWaiters: Array<() => void> = [];

  constructor(
    readonly client: Etcd3,
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {}

  private opts() {
    return { deadline: Date.now() + this.timeoutMs };
  }

  /** Closes the client; later calls fail with UNAVAILABLE instead of reaching a closed client. */
  close(): void {
    this.closed = true;
    closeEtcd3(this.client);
    for (const wake of this.readWaiters.splice(0)) wake();
  }

  private checkOpen(what: string): void {
    if (this.closed) throw new LoomError('UNAVAILABLE', `${what}: the etcd client is closed (node stopping)`);
  }

  async txn(req: ITxnRequest, what: string, signal?: AbortSignal): Promise<ITxnResponse> {
    this.checkOpen(what);
    try {
      return await withAbort(this.client.kv.txn(req, this.opts()), signal, what);
    } catch (err) {
      throw etcdError(err, what);
    }
  }

  /**
   * A key range read page by page, in key order: each page is up to `limit`
   * keys after the last one of the page before. Stops when etcd says no more
   * follow, or when signal aborts (between pages). For scans that do not
   * delete what they read (those re-read from the start of the range).
   */
  async *pages(req: { key: string; end: string; limit: number; keysOnly?: boolean }, what: string, signal?: AbortSignal): AsyncGenerator<IKeyValue[]> {
    let from = req.key;
    for (;;) {
      if (signal?.aborted) return;
      const page = await this.range({ key: b(from), range_end: b(req.end), limit: req.limit, keys_only: req.keysOnly }, what, signal);
      if (page.kvs.length > 0) yield page.kvs;
      if (!page.more || page.kvs.length === 0) return;
      from = page.kvs[page.kvs.length - 1].key.toString() + '\0';
    }
  }

  async range(req: IRangeRequest, what: string, signal?: AbortSignal): Promise<IRangeResponse> {
    await this.acquireRead(what, signal);
    try {
      this.checkOpen(what);
      return await withAbort(this.client.kv.range(req, this.opts()), signal, what);
    } catch (err) {
      throw etcdError(err, what);
    } finally {
      this.releaseRead();
    }
  }

  private async acquireRead(what: string, signal?: AbortSignal): Promise<void> {
    this.checkOpen(what);
    if (this.reads < MAX_READS_IN_FLIGHT) {
      this.reads++;
      return;
    }
    if (signal?.aborted) throw new LoomError('CANCELLED', `${what}: aborted`);
    await new Promise<void>((resolve, reject) => {
      const wake = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const i = this.readWaiters.indexOf(wake);
        if (i >= 0) this.readWaiters.splice(i, 1);
        reject(new LoomError('CANCELLED', `${what}: aborted`));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.readWaiters.push(wake);
    });
    // Woken: the slot was handed over by releaseRead (reads unchanged).
  }

  /** Reads waiting for one of the MAX_READS_IN_FLIGHT slots (tests). */
  get queuedReads(): number {
    return this.readWaiters.length;
  }

  private releaseRead(): void {
    const next = this.readWaiters.shift();
    if (next) next();
    else this.reads--;
  }

  /**
   * One key. `serializable`: from the connected member's own state, without
   * the leader round that a linearizable read waits for (under write load
   * etcd 3.4 makes it wait for the apply loop: ~100 ms seen); may be stale.
   */
  async get(key: string, what: string, signal?: AbortSignal, serializable = false): Promise<IKeyValue | undefined> {
    const res = await this.range({ key: Buffer.from(key), serializable }, what, signal);
    return res.kvs[0];
  }
}

// ---- builders for raw transaction pieces ----

export const b = (key: string): Buffer => Buffer.from(key);

/** The smallest key greater than every key with this prefix (etcd range end). */
export function prefixEnd(prefix: string): string {
  const buf = Buffer.from(prefix);
  for (let i = buf.length - 1; i >= 0; i--) {
    if (buf[i] < 0xff) {
      buf[i] += 1;
      return buf.subarray(0, i + 1).toString('latin1');
    }
  }
  return '\0';
}

export const put = (key: string, value: Buffer | string, lease?: string): IRequestOp => ({
  request_put: { key: b(key), value: typeof value === 'string' ? b(value) : value, lease },
});

export const del = (key: string): IRequestOp => ({ request_delete_range: { key: b(key) } });

export const nested = (txn: ITxnRequest): IRequestOp => ({ request_txn: txn });

export const ifModRevision = (key: string, rev: string) => ({
  key: b(key), target: 'Mod' as const, result: 'Equal' as const, mod_revision: rev,
});

export const ifValue = (key: string, value: string) => ({
  key: b(key), target: 'Value' as const, result: 'Equal' as const, value: b(value),
});

export const ifExists = (key: string) => ({
  key: b(key), target: 'Version' as const, result: 'Greater' as const, version: 0,
});

export const ifMissing = (key: string) => ({
  key: b(key), target: 'Version' as const, result: 'Equal' as const, version: 0,
});

/** True when `key` is attached to lease `lease` (false if missing). */
export const ifLease = (key: string, lease: string) => ({
  key: b(key), target: 'Lease' as const, result: 'Equal' as const, lease,
});

export const ifNotLease = (key: string, lease: string) => ({
  key: b(key), target: 'Lease' as const, result: 'NotEqual' as const, lease,
});

export const rangeOp = (key: string): IRequestOp => ({ request_range: { key: b(key) } });

/**
 * Closes an etcd3 client for good. etcd3's close() leaves its watch manager
 * holding every watcher not yet cancelled (a cancel still in flight counts):
 * the closed connection fails the watch stream and the manager retries it
 * every couple of seconds forever, which keeps the process alive (a jest run
 * never exited). Watchers are of no use once the client is closed, so they
 * are dropped first, with the stream's events (an event for a watcher no
 * longer listed would throw inside etcd3), and the stream is torn down the
 * way etcd3 does on an error; its next retry then finds no watcher and stops.
 * This reaches into etcd3 1.x's WatchManager (watchers, state, stream,
 * handleError); test/integration/etcd-close.test.ts fails if that changes.
 */
export function closeEtcd3(client: Etcd3): void {
  const manager = (client as unknown as { watchManager?: WatchManagerInternals }).watchManager;
  if (manager && Array.isArray(manager.watchers) && manager.watchers.length > 0) {
    manager.watchers = [];
    manager.stream?.removeAllListeners('data');
    if (manager.state === WATCH_CONNECTED) manager.handleError(new ClientClosedError('etcd client closed'));
  }
  client.close();
}

/** The parts of etcd3's WatchManager that closeEtcd3 touches. */
interface WatchManagerInternals {
  watchers: unknown[];
  state: number;
  stream?: { removeAllListeners(event: string): unknown };
  handleError(err: Error): void;
}
const WATCH_CONNECTED = 2;
