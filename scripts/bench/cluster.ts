/**
 * A local loom cluster for one benchmark: N real `loom node` processes on
 * free loopback ports with temporary data dirs, each embedding an etcd member
 * ('embedded') or all worker-only on one standalone etcd we start ('shared').
 *
 *   const c = await BenchCluster.start({ name: 'tput', nodes: 3, etcd: 'embedded' }, log);
 *   try { await c.api(0).submit(...) } finally { await c.stop() }
 *
 * Everything is stopped by PID: SIGTERM, then SIGKILL. Processes the nodes
 * started (etcd members, reapers) are remembered once the cluster is up and
 * SIGKILLed after the stop if they outlived their node.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Etcd3 } from 'etcd3';
import { LoomApi } from '../../src/client/client';
import { procCpu } from './cpu';
import { httpGet } from './etcd-probe';
import { alive, descendants, freePorts, isRunning, killIfSame, ProcRef, procRef, rssKb, sleep, stopProcess } from './proc';
import { NODE_RUNTIME_FLAGS } from '../../src/bin/runtime-flags';

export const LOOM_BIN = path.resolve(__dirname, '../../src/bin/loom.js');
const ETCD_BIN = process.env.LOOM_ETCD_BIN ?? 'etcd';

export interface ClusterOptions {
  /** Short name: temp dir prefix and node name prefix. */
  name: string;
  nodes: number;
  etcd: 'embedded' | 'shared';
  /** Slots per node (default: the node's own default, the CPU count). */
  slots?: number;
  /** Slots of each node in turn, instead of one `slots` for all. */
  slotsPerNode?: number[];
  /** Extra `loom node` flags for every node. */
  args?: string[];
  /** CPU list (taskset -c) each node in turn is pinned to, with its tasks and embedded etcd member. */
  cpusPerNode?: string[];
  readyTimeoutMs?: number;
  /** SIGTERM -> SIGKILL wait when stopping a node (default 20 s, see setDefaultStopGrace). */
  stopGraceMs?: number;
  /** Start every node with --metrics-listen (see claimCounters). */
  metrics?: boolean;
  /** Another build's dist/src/bin/loom.js to run the nodes with (default: this checkout's). */
  loomBin?: string;
}

export interface BenchNode {
  name: string;
  /** gRPC API host:port. */
  api: string;
  dataDir: string;
  logFile: string;
  proc: ChildProcess;
  pid: number;
  /** Client URL of the embedded etcd member (embedded mode). */
  etcdClientUrl?: string;
  /** Processes the node started (etcd member, reaper), seen once it was up. */
  helpers: ProcRef[];
  /** http://host:port/metrics of the node (with ClusterOptions.metrics). */
  metricsUrl?: string;
}

/** A node's claim counters (from its /metrics, see claimCounters). */
export interface NodeStats {
  claimed: number;
  lost: number;
  claimTxns: number;
  /** Times the node fenced itself (loom_fenced_total). */
  fenced: number;
}

export interface ClusterCpu {
  nodeMs: number;
  tasksMs: number;
  etcdMs: number;
  helperMs: number;
}

function isEtcd(h: ProcRef): boolean {
  return /(^|\/)etcd /.test(h.cmdline);
}

export interface NodeRss {
  name: string;
  nodeKb?: number;
  etcdKb?: number;
}

const live = new Set<BenchCluster>();
let defaultStopGraceMs = 20_000;

/** SIGTERM -> SIGKILL wait of clusters that do not set stopGraceMs (main shortens it for --quick). */
export function setDefaultStopGrace(ms: number): void {
  defaultStopGraceMs = ms;
}

/** SIGKILLs every process of every cluster not stopped yet (for exit paths). */
export function killAllClustersNow(): void {
  for (const c of live) c.killNow();
}

export class BenchCluster {
  private apis = new Map<number, LoomApi>();
  private etcdClientCache: Etcd3 | undefined;
  private stopped: Promise<void> | undefined;

  private constructor(
    readonly opts: ClusterOptions,
    readonly dir: string,
    readonly nodes: BenchNode[],
    /** Client URLs of every etcd member. */
    readonly etcdUrls: string[],
    private readonly sharedEtcd: { proc: ChildProcess; ref?: ProcRef } | undefined,
    private readonly log: (msg: string) => void,
  ) {}

  static async start(opts: ClusterOptions, log: (msg: string) => void): Promise<BenchCluster> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `loom-bench-${opts.name}-`));
    const ports = await freePorts(opts.nodes * 4 + 2);
    const take = () => ports.shift()!;
    const specs = Array.from({ length: opts.nodes }, (_, i) => ({
      name: `${opts.name}${i + 1}`,
      api: `127.0.0.1:${take()}`,
      peer: `http://127.0.0.1:${take()}`,
      client: `http://127.0.0.1:${take()}`,
      metrics: `127.0.0.1:${take()}`,
    }));
    let shared: { proc: ChildProcess; ref?: ProcRef } | undefined;
    let etcdUrls: string[];
    const t0 = Date.now();
    if (opts.etcd === 'shared') {
      const client = `http://127.0.0.1:${take()}`;
      shared = { proc: startEtcd(dir, client, `http://127.0.0.1:${take()}`) };
      etcdUrls = [client];
      try {
        await waitEtcdHealthy(client, shared.proc, opts.readyTimeoutMs ?? 60_000, path.join(dir, 'etcd.log'));
      } catch (err) {
        await stopProcess(shared.proc, 5000);
        fs.rmSync(dir, { recursive: true, force: true });
        throw err;
      }
      shared.ref = procRef(shared.proc.pid!);
    } else {
      etcdUrls = specs.map((s) => s.client);
    }
    const slotsOf = (i: number): string[] => {
      const n = opts.slotsPerNode?.[i] ?? opts.slots;
      return n !== undefined ? ['--slots', String(n)] : [];
    };
    const nodes = specs.map((s, i) => {
      const dataDir = path.join(dir, s.name);
      const etcdArgs =
        opts.etcd === 'shared'
          ? ['--etcd', etcdUrls[0]]
          : [
              '--peer-listen', s.peer, '--client-listen', s.client,
              ...specs.filter((o) => o !== s).flatMap((o) => ['--peer', `${o.name}=${o.peer}`]),
            ];
      const metrics = opts.metrics ? ['--metrics-listen', s.metrics] : [];
      const args = ['--name', s.name, '--listen', s.api, '--data-dir', dataDir, ...etcdArgs, ...slotsOf(i), ...metrics, ...(opts.args ?? [])];
      const node = launchNode(s.name, s.api, dataDir, args, opts.etcd === 'embedded' ? s.client : undefined, opts.cpusPerNode?.[i], opts.loomBin);
      if (opts.metrics) node.metricsUrl = `http://${s.metrics}/metrics`;
      return node;
    });
    const cluster = new BenchCluster(opts, dir, nodes, etcdUrls, shared, log);
    live.add(cluster);
    const rememberHelpers = () => {
      for (const n of nodes) n.helpers = descendants(n.pid).map(procRef).filter((r): r is ProcRef => !!r);
    };
    try {
      await cluster.waitReady(opts.readyTimeoutMs ?? 120_000);
    } catch (err) {
      rememberHelpers();
      await cluster.stop();
      throw err;
    }
    rememberHelpers();
    log(`cluster ${opts.name}: ${opts.nodes} node(s), etcd ${opts.etcd}, up in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return cluster;
  }

  /** A client for node i (cached; closed by stop()). */
  api(i: number): LoomApi {
    let a = this.apis.get(i);
    if (!a) {
      a = new LoomApi(this.nodes[i].api);
      this.apis.set(i, a);
    }
    return a;
  }

  /** An etcd client on every member (cached; closed by stop()). */
  etcd(): Etcd3 {
    this.etcdClientCache ??= new Etcd3({ hosts: this.etcdUrls, dialTimeout: 3000 });
    return this.etcdClientCache;
  }

  /** Total slots the cluster advertises. */
  async totalSlots(): Promise<number> {
    const nodes = await this.api(0).nodes();
    return nodes.reduce((sum, n) => sum + n.slots, 0);
  }

  rss(): NodeRss[] {
    return this.nodes.map((n) => {
      const etcd = n.helpers.find(isEtcd);
      return { name: n.name, nodeKb: rssKb(n.pid), etcdKb: etcd ? rssKb(etcd.pid) : undefined };
    });
  }

  /**
   * CPU ms used so far: node processes, their finished tasks, etcd members
   * (embedded or shared), and other helpers (reaper, loom-spawner). Tasks
   * are waited for by the node (Node's spawn) or by its loom-spawner: the
   * children CPU of both counts as the tasks'.
   */
  cpu(): ClusterCpu {
    const out: ClusterCpu = { nodeMs: 0, tasksMs: 0, etcdMs: 0, helperMs: 0 };
    for (const n of this.nodes) {
      const c = procCpu(n.pid);
      out.nodeMs += c.selfMs;
      out.tasksMs += c.childrenMs;
      for (const h of n.helpers) {
        const hc = procCpu(h.pid);
        if (isEtcd(h)) out.etcdMs += hc.selfMs;
        else out.helperMs += hc.selfMs;
        if (/loom-spawner/.test(h.cmdline)) out.tasksMs += hc.childrenMs;
      }
    }
    if (this.sharedEtcd?.proc.pid) out.etcdMs += procCpu(this.sharedEtcd.proc.pid).selfMs;
    return out;
  }

  /**
   * Each node's claim counters now, from its /metrics (ClusterOptions.metrics):
   * tasks claimed from the queue, tasks lost to another node in claim
   * transactions, and claim transactions sent.
   */
  async claimCounters(): Promise<NodeStats[]> {
    return Promise.all(
      this.nodes.map(async (n) => {
        if (!n.metricsUrl) throw new Error(`node ${n.name} has no metrics endpoint (start the cluster with metrics: true)`);
        const text = await httpGet(n.metricsUrl);
        const value = (sample: string) => {
          const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
          if (line === undefined) throw new Error(`node ${n.name}: no ${sample} in its /metrics`);
          return Number(line.slice(sample.length + 1));
        };
        return {
          claimed: value('loom_claims_total{via="queue"}'),
          lost: value('loom_claims_lost_total'),
          claimTxns: value('loom_claim_transactions_total'),
          fenced: value('loom_fenced_total'),
        };
      }),
    );
  }

  /** Sends a signal to node i's process (e.g. SIGKILL for failover). */
  signal(i: number, sig: NodeJS.Signals): void {
    process.kill(this.nodes[i].pid, sig);
  }

  /**
   * Stops every node (SIGTERM, then SIGKILL after stopGraceMs; with `kill`,
   * SIGKILL at once: each node's reaper then kills its tasks and etcd member)
   * and the shared etcd.
   */
  stop(opts: { kill?: boolean } = {}): Promise<void> {
    this.stopped ??= this.doStop(opts.kill ?? false);
    return this.stopped;
  }

  private async doStop(kill: boolean): Promise<void> {
    for (const a of this.apis.values()) a.close();
    this.apis.clear();
    this.etcdClientCache?.close();
    const grace = kill ? 0 : this.opts.stopGraceMs ?? defaultStopGraceMs;
    const t0 = Date.now();
    const clean = await Promise.all(this.nodes.map((n) => stopProcess(n.proc, grace)));
    clean.forEach((ok, i) => {
      if (!ok && !kill) this.log(`cluster ${this.opts.name}: node ${this.nodes[i].name} did not stop in ${grace} ms; SIGKILLed`);
    });
    if (this.sharedEtcd) await stopProcess(this.sharedEtcd.proc, 10_000);
    // A node's reaper stops its tasks and etcd member when the node is gone: give it a moment.
    const helpers = this.nodes.flatMap((n) => n.helpers);
    for (let t = Date.now(); helpers.some(isRunning) && Date.now() - t < 1000; ) await sleep(50);
    for (const h of helpers) if (killIfSame(h)) this.log(`killed leftover pid ${h.pid}: ${h.cmdline.slice(0, 60)}`);
    live.delete(this);
    if (process.env.LOOM_BENCH_KEEP) this.log(`kept ${this.dir}`);
    else fs.rmSync(this.dir, { recursive: true, force: true });
    this.log(`cluster ${this.opts.name}: stopped in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }

  /** Synchronous last resort: SIGKILL everything we know of. */
  killNow(): void {
    for (const n of this.nodes) {
      if (alive(n.proc)) n.proc.kill('SIGKILL');
      n.helpers.forEach(killIfSame);
    }
    if (this.sharedEtcd && alive(this.sharedEtcd.proc)) this.sharedEtcd.proc.kill('SIGKILL');
    if (!process.env.LOOM_BENCH_KEEP) {
      try {
        fs.rmSync(this.dir, { recursive: true, force: true });
      } catch {
        // best effort on the way out
      }
    }
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const want = this.nodes.map((n) => n.name);
    let seen: string[] = [];
    while (Date.now() < deadline) {
      for (const n of this.nodes) {
        if (!alive(n.proc)) throw new Error(`node ${n.name} exited (${n.proc.exitCode ?? n.proc.signalCode}) before the cluster was up: ${tail(n.logFile)}`);
      }
      try {
        const probe = new LoomApi(this.nodes[0].api, { deadlineMs: 2000 });
        try {
          seen = (await probe.nodes()).map((n) => n.name);
        } finally {
          probe.close();
        }
        if (want.every((w) => seen.includes(w))) {
          // every API answers
          await Promise.all(this.nodes.map((_, i) => this.api(i).nodes()));
          return;
        }
      } catch {
        // not up yet
      }
      await sleep(250);
    }
    throw new Error(`cluster ${this.opts.name} not up after ${timeoutMs} ms (nodes seen: ${seen.join(',') || 'none'}); last log lines of ${this.nodes[0].name}: ${tail(this.nodes[0].logFile)}`);
  }
}

function launchNode(name: string, api: string, dataDir: string, args: string[], etcdClientUrl?: string, cpus?: string, loomBin = LOOM_BIN): BenchNode {
  fs.mkdirSync(dataDir, { recursive: true });
  const logFile = path.join(dataDir, 'node.log');
  const fd = fs.openSync(logFile, 'a');
  const argv = [...NODE_RUNTIME_FLAGS, loomBin, 'node', ...args];
  // taskset execs the node: the pid is the node's.
  const proc = cpus !== undefined
    ? spawn('taskset', ['-c', cpus, process.execPath, ...argv], { stdio: ['ignore', fd, fd], cwd: dataDir })
    : spawn(process.execPath, argv, { stdio: ['ignore', fd, fd], cwd: dataDir });
  fs.closeSync(fd);
  return { name, api, dataDir, logFile, proc, pid: proc.pid!, etcdClientUrl, helpers: [] };
}

/** A standalone one-member etcd, tuned like the embedded members. */
function startEtcd(dir: string, clientUrl: string, peerUrl: string): ChildProcess {
  const logFile = path.join(dir, 'etcd.log');
  const fd = fs.openSync(logFile, 'a');
  const proc = spawn(ETCD_BIN, [
    '--name', 'bench-etcd', '--data-dir', path.join(dir, 'etcd'),
    '--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl,
    '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
    '--initial-cluster', `bench-etcd=${peerUrl}`, '--initial-cluster-state', 'new',
    '--auto-compaction-mode', 'periodic', '--auto-compaction-retention', '5m',
    '--quota-backend-bytes', '4294967296', '--max-txn-ops', '1024', '--max-request-bytes', '10485760',
    '--snapshot-count', '20000', '--logger', 'zap', '--log-outputs', 'stderr',
  ], { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  return proc;
}

async function waitEtcdHealthy(clientUrl: string, proc: ChildProcess, timeoutMs: number, logFile: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive(proc)) throw new Error(`standalone etcd exited: ${tail(logFile)}`);
    try {
      if (/"health":\s*"true"/.test(await httpGet(`${clientUrl}/health`, 1000))) return;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  throw new Error(`standalone etcd not healthy after ${timeoutMs} ms: ${tail(logFile)}`);
}

function tail(file: string, lines = 3): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ');
  } catch {
    return '(no log)';
  }
}
