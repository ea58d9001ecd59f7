/**
 * Supervises the one etcd member a loom node embeds, as a child process.
 *
 *   const etcd = await EmbeddedEtcd.start(opts);   // spawns, returns at once
 *   await etcd.waitHealthy({ timeoutMs: 60_000 });  // polls GET /health
 *   ...
 *   await etcd.stop();                              // SIGTERM, then SIGKILL
 *
 * etcd's own output goes to <dataDir>/etcd.log (appended). When etcd dies
 * before it is healthy, or never becomes healthy, the error says why in one
 * line, read off the tail of that log (log.ts: port in use, data dir
 * of another cluster, ...), and names the log.
 *
 * etcd ignores its --initial-cluster flags once its data dir exists, so a data
 * dir reused under another name or for another cluster starts "fine" and
 * splits the cluster. Two guards catch that: a marker file written beside the
 * data dir when it is bootstrapped (checked before spawning), and, once
 * healthy, a comparison of etcd's member list with the configured peers.
 *
 * With `tls` (the node's --tls-* files) the member speaks only TLS on both
 * ports: https:// URLs, client-cert auth and peer TLS against the cluster CA,
 * and it admits only node certificates (their `loom-node` DNS name, see
 * --client-cert-allowed-hostname): a loom client certificate cannot reach etcd.
 */
import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Etcd3 } from 'etcd3';
import { LoomError, invalid } from '../core/errors';
import { validateNodeName } from '../core/config';
import { checkBootstrap, joinCluster, promoteLearner } from './member-join';
import { sameCluster } from './join-plan';
import { HttpTls, httpRequest } from './http';
import { diagnoseEtcdLog, lastErrorLine, oneLine, readLogLines } from './log';
import { sleep } from '../core/sleep';

/** SIGTERM → SIGKILL wait when stopping the member (see EmbeddedEtcd.stop). */
const STOP_GRACE_MS = 2000;

/** --quota-backend-bytes of embedded members (4 GiB): nodes stop submits at half of it (core/storage.ts). */
export const EMBEDDED_QUOTA_BYTES = 4 * 1024 * 1024 * 1024;

export interface EtcdPeer {
  name: string;
  url: string;
}

export interface EmbeddedEtcdOptions {
  /** Member name (the node name). */
  name: string;
  /** The node's data dir; etcd uses <dataDir>/etcd and logs to <dataDir>/etcd.log. */
  dataDir: string;
  /** http://host:port etcd listens on for its peers. */
  peerListen: string;
  /** http://host:port etcd listens on for clients; this node reaches its member there. */
  clientListen: string;
  /** Peer URL the other members dial (default peerListen). */
  peerAdvertise?: string;
  /** Client URL nodes dial, listed in the cluster's membership (default clientListen). */
  clientAdvertise?: string;
  /** The other members; may include this one (same name, URL = its advertised peer URL). */
  peers: EtcdPeer[];
  /** Path of the etcd binary, or a bare name to look up on PATH ('etcd'). */
  etcdBin: string;
  log?: (msg: string) => void;
  /** Mutual TLS for clients and peers (PEM files: cluster CA, node certificate and key); URLs are then https://. */
  tls?: { caFile: string; certFile: string; keyFile: string };
  /**
   * With no etcd data dir yet: replace this member in the running cluster
   * (it lost its data) instead of bootstrapping a new cluster (member-join.ts).
   * Ignored once the data dir exists.
   */
  join?: boolean;
}

/** DNS name every node certificate carries (src/bin/certs-command.ts); etcd admits only such certificates. */
export const ETCD_ALLOWED_HOSTNAME = 'loom-node';


export interface WaitHealthyOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called about every 2 s while etcd is not healthy yet, with the time waited. */
  onWaiting?: (ms: number) => void;
}

export type EtcdExitListener = (code: number | null, signal: string | null) => void;

interface ExitInfo {
  code: number | null;
  signal: string | null;
}

/** What start() checked and derived from the options. */
interface Resolved {
  name: string;
  dataDir: string;
  etcdDir: string;
  logPath: string;
  markerPath: string;
  peerListen: string;
  clientListen: string;
  /** The peer URL the other members know this one by (--peer-advertise, default --peer-listen). */
  peerUrl: string;
  /** All members, this one included, sorted by name. */
  members: EtcdPeer[];
  bin: string;
  args: string[];
  log: (msg: string) => void;
  tls: HttpTls | undefined;
  /** This start added (or resumed) the member through --join into an empty data dir. */
  freshJoin?: boolean;
}

interface ClusterMarker {
  name: string;
  clusterToken: string;
  members: string[];
  createdAt?: string;
}

const CLUSTER_TOKEN = 'loom';

/** etcd's panic on a fresh member given a commit index it does not have (see panickedOnFreshJoin). */
const FRESH_JOIN_PANIC = /tocommit\(\d+\) is out of range \[lastIndex\(0\)\]/;
const FRESH_JOIN_PANIC_TEXT = '"tocommit(N) is out of range [lastIndex(0)]"';
/** Starts of a fresh --join member in all, and the pause before each retry. */
const FRESH_JOIN_STARTS = 3;
const FRESH_JOIN_RETRY_MS = 1000;
const MARKER_FILE = 'etcd-cluster.json';
const POLL_MS = 100;
const WAITING_EVERY_MS = 2000;
const HEALTH_REQUEST_MS = 1500;
const MEMBER_LIST_REQUEST_MS = 3000;

const INSTALL_HINT =
  'install it with `apt-get install -y etcd-server` or pass --etcd-bin / LOOM_ETCD_BIN';

export class EmbeddedEtcd {
  /**
   * URL this node reaches its member at (--client-listen). Other nodes use
   * the advertised one from the member list (memberClientUrls).
   */
  readonly clientUrl: string;
  readonly pid: number;
  /** Where etcd's stdout and stderr go. */
  readonly logPath: string;
  /** etcd's --data-dir. */
  readonly etcdDir: string;

  private exitInfo: ExitInfo | undefined;
  /** Public onExit listeners, called once. */
  private readonly exitListeners: EtcdExitListener[] = [];
  /** Internal wake-ups (polls, waits) that unsubscribe when done. */
  private readonly exitWaiters = new Set<() => void>();
  private stopping: Promise<void> | undefined;
  private membershipChecked = false;

  private constructor(
    private readonly child: ChildProcess,
    private readonly cfg: Resolved,
    /** Size of etcd.log when this run started: diagnosis reads only past it. */
    private readonly logOffset: number,
  ) {
    this.clientUrl = cfg.clientListen;
    this.pid = child.pid as number;
    this.logPath = cfg.logPath;
    this.etcdDir = cfg.etcdDir;
    child.once('exit', (code, signal) => {
      const info: ExitInfo = { code, signal: signal ?? null };
      this.exitInfo = info;
      cfg.log(`etcd (pid ${this.pid}) exited with ${signal ? `signal ${signal}` : `code ${code}`}`);
      for (const wake of [...this.exitWaiters]) wake();
      this.exitWaiters.clear();
      for (const fn of this.exitListeners.splice(0)) this.callExitListener(fn, info);
    });
  }

  /** Runs fn when etcd exits (not if it already has); returns an unsubscribe. */
  private whenExited(fn: () => void): () => void {
    this.exitWaiters.add(fn);
    return () => this.exitWaiters.delete(fn);
  }

  /**
   * Validates the options, finds the binary and spawns etcd. Resolves once the
   * process exists; it is not healthy yet: call waitHealthy().
   */
  static async start(opts: EmbeddedEtcdOptions, signal?: AbortSignal): Promise<EmbeddedEtcd> {
    throwIfAborted(signal, 'starting etcd');
    const cfg = resolveOptions(opts);
    cfg.bin = await resolveEtcdBinary(opts.etcdBin);
    throwIfAborted(signal, 'starting etcd');

    fs.mkdirSync(cfg.dataDir, { recursive: true });
    if (isBootstrapped(cfg.etcdDir)) {
      if (opts.join) cfg.log(`--join ignored: etcd data dir ${cfg.etcdDir} exists (the member restarts from it)`);
      checkMarker(cfg);
    } else {
      let cluster = cfg.members;
      if (!opts.join && cfg.members.length > 1) {
        await checkBootstrap({
          name: cfg.name, peerUrl: cfg.peerUrl, peerListen: cfg.peerListen, peerUrls: cfg.members.map((m) => m.url),
          tls: cfg.tls, tlsHostname: ETCD_ALLOWED_HOSTNAME, log: cfg.log, etcdDir: cfg.etcdDir,
        });
        throwIfAborted(signal, 'starting etcd');
      }
      if (opts.join) {
        cluster = await joinCluster({
          name: cfg.name,
          peerUrl: cfg.peerUrl,
          peerListen: cfg.peerListen,
          peerUrls: cfg.members.map((m) => m.url),
          tls: cfg.tls,
          tlsHostname: ETCD_ALLOWED_HOSTNAME,
          log: cfg.log,
        });
        throwIfAborted(signal, 'starting etcd');
        setArg(cfg.args, '--initial-cluster', memberList(cluster).join(','));
        setArg(cfg.args, '--initial-cluster-state', 'existing');
        cfg.freshJoin = true;
      }
      writeMarker(cfg, cluster);
    }

    const env: NodeJS.ProcessEnv = { ...process.env };
    const unsupported = unsupportedArch();
    if (unsupported && env.ETCD_UNSUPPORTED_ARCH === undefined) {
      env.ETCD_UNSUPPORTED_ARCH = unsupported;
    }

    const fd = fs.openSync(cfg.logPath, 'a', 0o600);
    let child: ChildProcess;
    let offset: number;
    try {
      fs.writeSync(
        fd,
        `--- loom ${new Date().toISOString()}: starting ${cfg.bin} ${cfg.args.join(' ')}\n`,
      );
      offset = fs.fstatSync(fd).size;
      child = spawn(cfg.bin, cfg.args, {
        cwd: cfg.dataDir,
        env,
        // Own process group: a Ctrl-C at the node's terminal must not kill
        // etcd before the node has shut down cleanly.
        detached: true,
        stdio: ['ignore', fd, fd],
      });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new LoomError('UNAVAILABLE', `could not start etcd (${cfg.bin}): ${why}`);
    } finally {
      fs.closeSync(fd);
    }
    // Later errors (a failed kill) must not become unhandled 'error' events.
    child.on('error', (err) => cfg.log(`etcd process error: ${err.message}`));

    const etcd = new EmbeddedEtcd(child, cfg, offset);
    cfg.log(`etcd member "${cfg.name}" started (pid ${etcd.pid}), log: ${cfg.logPath}`);
    if (signal?.aborted) {
      await etcd.stop();
      throw new LoomError('CANCELLED', 'starting etcd: aborted');
    }
    return etcd;
  }

  /**
   * start() then waitHealthy(). A fresh --join start that hit etcd's panic
   * on a member added again at a removed member's URL (see
   * panickedOnFreshJoin) is retried: etcd stopped, its data dir emptied (it
   * held nothing yet), started again after a second, up to
   * FRESH_JOIN_STARTS starts in all. `started` sees each process (to
   * register its pid), `ended` each one given up. On failure etcd is stopped.
   */
  static async startHealthy(
    opts: EmbeddedEtcdOptions,
    wait: WaitHealthyOptions,
    hooks: { started?: (etcd: EmbeddedEtcd) => void; ended?: (etcd: EmbeddedEtcd) => void } = {},
  ): Promise<EmbeddedEtcd> {
    for (let start = 1; ; start++) {
      const etcd = await EmbeddedEtcd.start(opts, wait.signal);
      hooks.started?.(etcd);
      try {
        await etcd.waitHealthy(wait);
        return etcd;
      } catch (err) {
        await etcd.stop().catch(() => undefined);
        hooks.ended?.(etcd);
        if (start >= FRESH_JOIN_STARTS || !etcd.panickedOnFreshJoin()) throw err;
        etcd.cfg.log(
          `etcd member "${etcd.cfg.name}" panicked on its first start after --join (${FRESH_JOIN_PANIC_TEXT}: a message meant ` +
            `for the member removed at the same URL reached the new one, etcd-io/etcd#21178); emptying ${etcd.etcdDir} ` +
            `and starting it again (start ${start + 1} of ${FRESH_JOIN_STARTS})`,
        );
        fs.rmSync(etcd.etcdDir, { recursive: true, force: true });
        await sleep(FRESH_JOIN_RETRY_MS, wait.signal);
        throwIfAborted(wait.signal, 'starting etcd');
      }
    }
  }

  /**
   * True when this process was a fresh --join start and etcd panicked on a
   * heartbeat whose commit index its empty log does not have ("tocommit(N)
   * is out of range [lastIndex(0)]"). Seen here when a member is removed and
   * added again at the same peer URL (chaos wipe-member): a heartbeat for the
   * old member id reached the new process. Nothing of the new member is lost
   * by emptying its data dir: it had stored nothing.
   */
  panickedOnFreshJoin(): boolean {
    if (!this.exitInfo || !this.cfg.freshJoin) return false;
    return readLogLines(this.logPath, this.logOffset).some((l) => FRESH_JOIN_PANIC.test(l));
  }

  /**
   * Polls GET <clientUrl>/health every 100 ms until etcd reports healthy
   * (for a multi-member cluster: once a quorum is up), then checks that etcd's
   * member list is the configured one. Rejects with UNAVAILABLE when etcd
   * exits first, on timeout, or when the data dir belongs to another cluster;
   * with CANCELLED when the signal fires. Does not stop etcd on rejection.
   */
  async waitHealthy(opts: WaitHealthyOptions): Promise<void> {
    const started = Date.now();
    const deadline = started + opts.timeoutMs;
    let nextWaiting = started + WAITING_EVERY_MS;
    let lastProblem = 'no answer yet';
    for (;;) {
      if (this.exitInfo) throw this.exitError(this.exitInfo);
      throwIfAborted(opts.signal, 'waiting for etcd');
      const left = deadline - Date.now();
      if (left <= 0) throw this.timeoutError(Date.now() - started, lastProblem);

      const problem = await this.checkHealth(Math.min(HEALTH_REQUEST_MS, left), opts.signal);
      if (problem === undefined) {
        if (this.exitInfo) throw this.exitError(this.exitInfo);
        await this.becomeVoter(deadline, opts.signal);
        await this.checkMembership();
        return;
      }
      lastProblem = problem;

      const now = Date.now();
      if (now >= nextWaiting) {
        nextWaiting = now + WAITING_EVERY_MS;
        try {
          opts.onWaiting?.(now - started);
        } catch (err) {
          this.cfg.log(`onWaiting callback threw: ${String(err)}`);
        }
      }
      await this.pause(Math.min(POLL_MS, Math.max(0, deadline - Date.now())), opts.signal);
    }
  }

  /** Calls fn once when the etcd process exits (at once if it already has). */
  onExit(fn: EtcdExitListener): void {
    const info = this.exitInfo;
    if (info) {
      queueMicrotask(() => this.callExitListener(fn, info));
    } else {
      this.exitListeners.push(fn);
    }
  }

  /** True until the etcd process has exited. */
  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /**
   * SIGTERM, up to graceMs for etcd to exit, then SIGKILL. Idempotent.
   *
   * A leader hands its leadership to a follower before it exits, which takes
   * a few heartbeats (100 ms each) when that follower is up. When every node
   * stops at once the follower may be stopping too, and etcd then waits its
   * whole request timeout (over 5 s) for a transfer that cannot happen: 2 s is
   * ample for a real transfer, and a SIGKILL after it loses nothing committed.
   */
  stop(graceMs = STOP_GRACE_MS): Promise<void> {
    if (!this.stopping) this.stopping = this.doStop(graceMs);
    return this.stopping;
  }

  private async doStop(graceMs: number): Promise<void> {
    if (this.exitInfo) return;
    this.kill('SIGTERM');
    if (await this.waitExit(graceMs)) return;
    this.cfg.log(`etcd (pid ${this.pid}) still running ${graceMs} ms after SIGTERM; sending SIGKILL`);
    this.kill('SIGKILL');
    if (!(await this.waitExit(5000))) {
      this.cfg.log(`etcd (pid ${this.pid}) did not exit after SIGKILL`);
    }
  }

  private kill(sig: NodeJS.Signals): void {
    try {
      this.child.kill(sig);
    } catch (err) {
      this.cfg.log(`could not send ${sig} to etcd (pid ${this.pid}): ${String(err)}`);
    }
  }

  private waitExit(ms: number): Promise<boolean> {
    if (this.exitInfo) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const unsubscribe = this.whenExited(() => {
        clearTimeout(timer);
        resolve(true);
      });
      const timer = setTimeout(() => {
        unsubscribe();
        resolve(false);
      }, ms);
    });
  }

  /** Sleeps ms, waking early when etcd exits or the signal fires. */
  private pause(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.exitInfo || signal?.aborted) return resolve();
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        unsubscribe();
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      const unsubscribe = this.whenExited(done);
    });
  }

  private callExitListener(fn: EtcdExitListener, info: ExitInfo): void {
    try {
      fn(info.code, info.signal);
    } catch (err) {
      this.cfg.log(`etcd exit listener threw: ${String(err)}`);
    }
  }

  /** undefined when healthy, else what is wrong, in a few words. */
  private async checkHealth(timeoutMs: number, signal?: AbortSignal): Promise<string | undefined> {
    // Give up on the request as soon as etcd exits or the caller aborts.
    const ac = new AbortController();
    const abort = () => ac.abort();
    const unsubscribe = this.whenExited(abort);
    signal?.addEventListener('abort', abort, { once: true });
    try {
      const url = `${localUrl(this.clientUrl)}/health`;
      const res = await httpRequest('GET', url, undefined, timeoutMs, ac.signal, this.cfg.tls);
      let health: unknown;
      try {
        health = (JSON.parse(res.body) as { health?: unknown }).health;
      } catch {
        return `unexpected /health answer (HTTP ${res.status}): ${oneLine(res.body, 200)}`;
      }
      if (health === 'true' || health === true) return undefined;
      return `etcd reports unhealthy (HTTP ${res.status}): ${oneLine(res.body, 200)}`;
    } catch (err) {
      return `health check failed: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      unsubscribe();
      signal?.removeEventListener('abort', abort);
    }
  }

  /**
   * A member that joined a running cluster (--join) starts as a raft learner,
   * which serves no writes or consistent reads: the node cannot use it until
   * it is promoted. Also covers a node that stopped between its member's
   * start and its promotion: the member restarts from its data dir as a
   * learner, and is promoted here.
   */
  private async becomeVoter(deadline: number, signal?: AbortSignal): Promise<void> {
    let learner: boolean;
    try {
      learner = await this.isLearner();
    } catch (err) {
      this.cfg.log(`could not ask etcd whether this member is a learner: ${String(err)}`);
      return;
    }
    if (!learner) return;
    await promoteLearner({
      name: this.cfg.name,
      peerUrl: this.cfg.peerUrl,
      peerListen: this.cfg.peerListen,
      peerUrls: this.cfg.members.map((m) => m.url),
      tls: this.cfg.tls,
      tlsHostname: ETCD_ALLOWED_HOSTNAME,
      log: this.cfg.log,
      deadline,
      signal,
    });
    // The promotion is committed; this member applies it a moment later.
    while (await this.isLearner().catch(() => true)) {
      if (Date.now() > deadline) throw new LoomError('UNAVAILABLE', `etcd member "${this.cfg.name}" was promoted but still calls itself a learner`);
      await this.pause(POLL_MS, signal);
      throwIfAborted(signal, 'waiting for etcd');
    }
  }

  /** Asks this member (Status serves learners too) whether it is a learner. */
  private async isLearner(): Promise<boolean> {
    const client = this.localClient();
    try {
      const status = await client.maintenance.status({ deadline: Date.now() + MEMBER_LIST_REQUEST_MS });
      return status.isLearner === true;
    } finally {
      client.close();
    }
  }

  /**
   * etcd restarted from an existing data dir uses the membership stored there
   * and ignores --initial-cluster: compare what it runs with what we asked
   * for. Members added (--join) or removed (etcdctl member remove) since are
   * fine; a cluster with none of the --peer members, or without this one,
   * is another cluster. The marker then records the members etcd has.
   */
  private async checkMembership(): Promise<void> {
    if (this.membershipChecked) return;
    let members: { name?: string; peerURLs?: string[] }[];
    try {
      members = this.cfg.tls ? await this.memberListTls() : await this.memberListHttp();
    } catch (err) {
      // An extra check only: not being able to make it is no reason to fail.
      this.cfg.log(`could not check etcd's member list: ${String(err)}`);
      return;
    }
    this.membershipChecked = true;
    const started = members.filter((m) => m.name);
    const actual = started.flatMap((m) => (m.peerURLs ?? []).map((url) => `${m.name}=${url}`));
    const configured = memberList(this.cfg.members);
    const self = `${this.cfg.name}=${this.cfg.peerUrl}`;
    if (sameCluster(self, configured, actual)) {
      if ([...actual].sort().join(',') !== [...configured].sort().join(',')) {
        this.cfg.log(
          `etcd's members are [${[...actual].sort().join(', ')}], the --peer flags name [${configured.join(', ')}]: ` +
            `the cluster's membership changed since (etcd keeps its own; the flags only matter to a new member)`,
        );
      }
      writeMarker(this.cfg, started.map((m) => ({ name: m.name as string, url: (m.peerURLs ?? [])[0] })));
      return;
    }
    const have = members
      .map((m) => `${m.name || '(unstarted)'}=${(m.peerURLs ?? []).join('|')}`)
      .join(', ');
    throw new LoomError(
      'UNAVAILABLE',
      `etcd data dir ${this.etcdDir} belongs to another cluster: its members are [${have}] ` +
        `but this node is configured for [${memberList(this.cfg.members).join(', ')}] ` +
        `(etcd ignores --peer flags once its data dir exists); restore the original flags, or ` +
        `remove ${this.etcdDir} to bootstrap this member afresh (this deletes its data); log: ${this.logPath}`,
    );
  }

  private async memberListHttp(): Promise<{ name?: string; peerURLs?: string[] }[]> {
    const res = await httpRequest('POST', `${localUrl(this.clientUrl)}/v3/cluster/member/list`, '{}', MEMBER_LIST_REQUEST_MS);
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${oneLine(res.body, 200)}`);
    return (JSON.parse(res.body) as { members?: { name?: string; peerURLs?: string[] }[] }).members ?? [];
  }

  /**
   * With TLS, over gRPC: etcd 3.4's HTTP gateway cannot dial its own gRPC
   * server once client certificates are restricted to node certificates.
   * The name checked is the one every node certificate carries.
   */
  private async memberListTls(): Promise<{ name?: string; peerURLs?: string[] }[]> {
    const client = this.localClient();
    try {
      const res = await client.cluster.memberList({}, { deadline: Date.now() + MEMBER_LIST_REQUEST_MS });
      return res.members.map((m) => ({ name: m.name, peerURLs: m.peerURLs }));
    } finally {
      client.close();
    }
  }

  /** A gRPC client of this member alone (https with the node certificate under TLS). */
  private localClient(): Etcd3 {
    const tls = this.cfg.tls;
    return new Etcd3({
      hosts: [localUrl(this.clientUrl)],
      credentials: tls && { rootCertificate: tls.ca, certChain: tls.cert, privateKey: tls.key },
      grpcOptions: tls && { 'grpc.ssl_target_name_override': ETCD_ALLOWED_HOSTNAME },
      faultHandling: {},
    });
  }

  private exitError(info: ExitInfo): LoomError {
    const how = info.signal ? `signal ${info.signal}` : `code ${info.code}`;
    const lines = readLogLines(this.logPath, this.logOffset);
    const reason = diagnoseEtcdLog(lines, this.cfg) ?? lastErrorLine(lines) ?? 'no reason in its log';
    return new LoomError(
      'UNAVAILABLE',
      `${reason} (etcd exited with ${how} before it was healthy; log: ${this.logPath})`,
    );
  }

  private timeoutError(waitedMs: number, lastProblem: string): LoomError {
    const lines = readLogLines(this.logPath, this.logOffset);
    let reason = diagnoseEtcdLog(lines, this.cfg);
    if (!reason) {
      const n = this.cfg.members.length;
      reason =
        n > 1
          ? `no quorum: at least ${Math.floor(n / 2) + 1} of the ${n} members ` +
            `(${this.cfg.members.map((m) => m.name).join(', ')}) must be running (last: ${lastProblem})`
          : lastProblem;
    }
    return new LoomError(
      'UNAVAILABLE',
      `etcd member "${this.cfg.name}" (${this.clientUrl}) not healthy after ` +
        `${(waitedMs / 1000).toFixed(1)} s: ${reason}; log: ${this.logPath}`,
    );
  }
}

// ---------------------------------------------------------------------------
// Options, binary, data dir

const LISTEN_URL = /^(https?):\/\/(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):(\d{1,5})$/;

function checkUrl(url: string, what: string, secure = false): string {
  const m = LISTEN_URL.exec(url);
  const scheme = secure ? 'https' : 'http';
  if (!m || m[1] !== scheme || Number(m[3]) < 1 || Number(m[3]) > 65535) {
    throw invalid(
      secure
        ? `invalid ${what} "${url}": expected https://HOST:PORT (with TLS the embedded etcd speaks https)`
        : `invalid ${what} "${url}": expected http://HOST:PORT (the embedded etcd speaks plain http; use https:// with --tls-*)`,
    );
  }
  return url;
}

function readTlsFile(file: string, flag: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw invalid(`${flag}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function resolveOptions(opts: EmbeddedEtcdOptions): Resolved {
  const name = validateNodeName(opts.name);
  if (!opts.dataDir) throw invalid('the data dir must not be empty');
  const secure = opts.tls !== undefined;
  const peerListen = checkUrl(opts.peerListen, '--peer-listen', secure);
  const clientListen = checkUrl(opts.clientListen, '--client-listen', secure);
  if (peerListen === clientListen) {
    throw invalid(`--peer-listen and --client-listen must differ (both are ${peerListen})`);
  }
  const peerUrl = opts.peerAdvertise ? checkUrl(opts.peerAdvertise, '--peer-advertise', secure) : peerListen;
  const clientUrl = opts.clientAdvertise ? checkUrl(opts.clientAdvertise, '--client-advertise', secure) : clientListen;

  const byName = new Map<string, string>([[name, peerUrl]]);
  for (const peer of opts.peers) {
    validateNodeName(peer.name);
    checkUrl(peer.url, `--peer ${peer.name}`, secure);
    const known = byName.get(peer.name);
    if (known === undefined) {
      byName.set(peer.name, peer.url);
    } else if (known !== peer.url) {
      throw invalid(
        peer.name === name
          ? `--peer ${peer.name}=${peer.url} names this node, but its URL differs from ${opts.peerAdvertise ? '--peer-advertise' : '--peer-listen'} ${peerUrl}`
          : `--peer ${peer.name} is given twice with different URLs (${known} and ${peer.url})`,
      );
    }
  }
  const members = [...byName].map(([n, url]) => ({ name: n, url }));
  members.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const byUrl = new Map<string, string>();
  for (const m of members) {
    const other = byUrl.get(m.url);
    if (other !== undefined) {
      throw invalid(`members ${other} and ${m.name} have the same peer URL ${m.url}`);
    }
    byUrl.set(m.url, m.name);
  }

  const dataDir = path.resolve(opts.dataDir);
  const etcdDir = path.join(dataDir, 'etcd');
  const args = [
    '--name', name,
    '--data-dir', etcdDir,
    '--listen-peer-urls', peerListen,
    '--initial-advertise-peer-urls', peerUrl,
    '--listen-client-urls', clientListen,
    '--advertise-client-urls', clientUrl,
    '--initial-cluster', memberList(members).join(','),
    '--initial-cluster-state', 'new',
    '--initial-cluster-token', CLUSTER_TOKEN,
    '--auto-compaction-mode', 'periodic',
    '--auto-compaction-retention', '5m',
    '--quota-backend-bytes', String(EMBEDDED_QUOTA_BYTES),
    '--max-txn-ops', '1024',
    '--max-request-bytes', '10485760',
    '--snapshot-count', '20000',
    '--heartbeat-interval', '100',
    '--election-timeout', '1000',
    // A member cut off from the others keeps campaigning; without pre-vote
    // each campaign raises its term, and when it comes back that higher term
    // deposes the leader, then its stale log loses every election while its
    // next campaigns keep the others from electing anyone (measured with the
    // chaos partition-member fault: no leader for over 4 s after the heal,
    // every node fenced). With pre-vote it raises its term only after a
    // majority says it could win. (etcd 3.5 turns it on by default.)
    '--pre-vote',
    // Clients may ping every second: loom's nodes ping every 2 s, so a
    // connection to a member that stopped answering is found and closed in
    // about 4 s (etcd's default lets clients ping only every 5 s).
    '--grpc-keepalive-min-time', '1s',
    '--logger', 'zap',
    '--log-outputs', 'stderr',
  ];
  let tls: HttpTls | undefined;
  if (opts.tls) {
    // etcd runs in the data dir: give it absolute paths.
    const ca = path.resolve(opts.tls.caFile);
    const cert = path.resolve(opts.tls.certFile);
    const key = path.resolve(opts.tls.keyFile);
    tls = { ca: readTlsFile(ca, '--tls-ca'), cert: readTlsFile(cert, '--tls-cert'), key: readTlsFile(key, '--tls-key') };
    args.push(
      '--cert-file', cert, '--key-file', key, '--trusted-ca-file', ca, '--client-cert-auth',
      '--client-cert-allowed-hostname', ETCD_ALLOWED_HOSTNAME,
      '--peer-cert-file', cert, '--peer-key-file', key, '--peer-trusted-ca-file', ca, '--peer-client-cert-auth',
      '--peer-cert-allowed-hostname', ETCD_ALLOWED_HOSTNAME,
      // etcd would also require a peer's source IP to be in its certificate;
      // members on one host, or multi-homed ones, dial from other addresses.
      // The CA and the loom-node name are the check.
      '--experimental-peer-skip-client-san-verification',
    );
  }
  return {
    name,
    dataDir,
    etcdDir,
    logPath: path.join(dataDir, 'etcd.log'),
    markerPath: path.join(dataDir, MARKER_FILE),
    peerListen,
    clientListen,
    peerUrl,
    members,
    bin: opts.etcdBin,
    args,
    log: opts.log ?? (() => {}),
    tls,
  };
}

/** Replaces the value of a flag in an argv built by resolveOptions. */
function setArg(args: string[], flag: string, value: string): void {
  const at = args.indexOf(flag);
  if (at < 0) throw new Error(`no ${flag} in etcd's arguments`);
  args[at + 1] = value;
}

function memberList(members: EtcdPeer[]): string[] {
  return members.map((m) => `${m.name}=${m.url}`);
}

function isExecutableFile(file: string): boolean {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * An explicit path (anything with a slash) must be an executable file; a bare
 * name is looked up on PATH. Throws UNAVAILABLE with an install hint.
 */
export async function resolveEtcdBinary(bin: string): Promise<string> {
  const wanted = bin.trim() || 'etcd';
  if (wanted.includes('/')) {
    const abs = path.resolve(wanted);
    if (isExecutableFile(abs)) return abs;
    throw new LoomError(
      'UNAVAILABLE',
      `etcd binary not found: "${abs}" is not an executable file; ${INSTALL_HINT}`,
    );
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.resolve(dir, wanted);
    if (isExecutableFile(candidate)) return candidate;
  }
  throw new LoomError(
    'UNAVAILABLE',
    `etcd binary not found (looked for "${wanted}" on PATH); ${INSTALL_HINT}`,
  );
}

/** The Go architecture to name in ETCD_UNSUPPORTED_ARCH, when etcd needs it. */
function unsupportedArch(): string | undefined {
  // etcd refuses to start on architectures it does not "support" unless
  // ETCD_UNSUPPORTED_ARCH names the architecture; amd64 and ppc64le never need it.
  const goArch: Record<string, string> = {
    arm: 'arm',
    arm64: 'arm64',
    ia32: '386',
    mips: 'mips',
    mipsel: 'mipsle',
    ppc: 'ppc',
    riscv64: 'riscv64',
    s390x: 's390x',
    loong64: 'loong64',
  };
  if (process.arch === 'x64' || process.arch === 'ppc64') return undefined;
  return goArch[process.arch] ?? process.arch;
}

/** etcd restarts from its data dir (ignoring --initial-*) once it has a WAL. */
function isBootstrapped(etcdDir: string): boolean {
  try {
    return fs.readdirSync(path.join(etcdDir, 'member', 'wal')).some((f) => f.endsWith('.wal'));
  } catch {
    return false;
  }
}

/**
 * Records who this data dir belongs to: the member's name and the cluster's
 * members (the configured ones at bootstrap; etcd's own list once it ran).
 */
function writeMarker(cfg: Resolved, members: EtcdPeer[] = cfg.members): void {
  let createdAt = new Date().toISOString();
  try {
    createdAt = (JSON.parse(fs.readFileSync(cfg.markerPath, 'utf8')) as ClusterMarker).createdAt ?? createdAt;
  } catch {
    // first marker
  }
  const marker: ClusterMarker = { name: cfg.name, clusterToken: CLUSTER_TOKEN, members: memberList(members).sort(), createdAt };
  const tmp = `${cfg.markerPath}.tmp`;
  try {
    fs.writeFileSync(tmp, JSON.stringify(marker, null, 2) + '\n', { mode: 0o600 });
    fs.renameSync(tmp, cfg.markerPath);
  } catch (err) {
    // Only a guard for later starts: a full disk must not stop this one.
    cfg.log(`could not write ${cfg.markerPath}: ${String(err)}`);
  }
}

function checkMarker(cfg: Resolved): void {
  let marker: ClusterMarker;
  try {
    marker = JSON.parse(fs.readFileSync(cfg.markerPath, 'utf8')) as ClusterMarker;
  } catch {
    // No marker (a data dir from before markers, or made by hand): the
    // member-list check in waitHealthy still catches another cluster.
    return;
  }
  const fix = `remove ${cfg.etcdDir} to bootstrap this member afresh (this deletes its data)`;
  if (marker.name !== cfg.name) {
    throw new LoomError(
      'UNAVAILABLE',
      `etcd data dir ${cfg.etcdDir} was bootstrapped as member "${marker.name}", not "${cfg.name}"; ` +
        `start with --name ${marker.name}, use another --data-dir, or ${fix}`,
    );
  }
  const want = memberList(cfg.members);
  const had = Array.isArray(marker.members) ? [...marker.members].sort() : [];
  if (!sameCluster(`${cfg.name}=${cfg.peerUrl}`, want, had)) {
    throw new LoomError(
      'UNAVAILABLE',
      `etcd data dir ${cfg.etcdDir} was bootstrapped for cluster [${had.join(', ')}], ` +
        `not [${want.join(', ')}] (etcd ignores --peer flags once its data dir exists); ` +
        `restore the original --peer/--peer-listen flags, or ${fix}`,
    );
  }
}

// ---------------------------------------------------------------------------
// Small helpers

function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new LoomError('CANCELLED', `${what}: aborted`);
}

/** A URL we can connect to: a wildcard listen host becomes loopback. */
function localUrl(url: string): string {
  return url.replace(/^(https?):\/\/(0\.0\.0\.0|\[::\])(?=:)/, (_all, scheme: string, host: string) =>
    host === '0.0.0.0' ? `${scheme}://127.0.0.1` : `${scheme}://[::1]`,
  );
}
