/**
 * A loom node: wires the store, the runner and the daemon's loops together,
 * and owns the node's life: start, fence-and-rejoin, graceful stop.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { ContainerPolicy, NodeControl, NodeInfo, Resources, Task } from '../gen/loom';
import { addResources, fits, NO_RESOURCES, refusal } from '../core/fit';
import { readsLoad } from '../core/placement';
import { containerPolicyOf } from './container-rules';
import { automaticLabels, machineCapacity, MetricsSampler } from './machine';
import { NodeConfig } from '../core/config';
import { LoomError } from '../core/errors';
import { stateName } from '../core/lifecycle';
import { connectEtcd, KEEPALIVE_DEFAULT_MS, KEEPALIVE_EMBEDDED_MS, Kv } from '../etcd/client';
import { EndpointHealth } from '../etcd/endpoint-health';
import { EndpointSync, memberEndpoints } from '../etcd/endpoint-sync';
import { EtcdMembers, probeWith } from '../etcd/members';
import { backoff } from '../core/backoff';
import { EMBEDDED_QUOTA_BYTES, EmbeddedEtcd } from '../etcd/embedded';
import { Keys } from '../store/keys';
import { Incarnation, Membership, staleAfterMs } from '../store/membership';
import { MemberClients } from '../store/member-clients';
import { NodeDirectory } from '../store/node-directory';
import { watchNodeControl } from '../store/node-control';
import { PrefixWatch } from '../etcd/prefix-watch';
import { TaskQueries } from '../store/queries';
import { QueueWindow } from '../store/queue-window';
import { NodeIdentity, TaskTransitions } from '../store/transitions';
import { ProcessRunner } from '../runner/process-runner';
import { resolveRunAs, taskConfinement } from './task-confinement';
import { Reaper } from '../runner/reaper';
import { Spawner } from '../runner/spawner';
import { DockerRunner } from '../runner/docker-runner';
import { nodeKindRegistry } from '../runner/kind';
import { DiskWatch } from './disk-watch';
import { formatMinFreeDisk } from '../core/disk-space';
import { WorkPause } from './work-pause';
import { EngineWatch } from './engine-watch';
import { Metric } from './metrics-endpoint';
import { HttpEndpoints } from './http-endpoints';
import { nodeMetrics } from './node-metrics';
import { Autoscaler, autoscalerFor } from './autoscaler';
import { ApiLimits, ApiServer } from './api-server';
import type { ConnectionLimits } from './tls';
import { JobStore } from '../store/jobs';
import { JobSweeper } from './job-sweeper';
import { RetentionSweeper } from './retention-sweeper';
import { StorageKeeper } from './storage-keeper';
import { StorageWatch } from '../etcd/space';
import { ETCD_DEFAULT_QUOTA_BYTES } from '../core/storage';
import { Executor } from './executor';
import { LogService } from './logs';
import { Requeuer } from './requeuer';
import { Liveness } from './liveness';
import { StealLoop } from './steal-loop';
import { WriteLane } from './write-lane';
import { channelCredentials, TlsMaterial } from '../wire/tls';
import { loadNodeTls } from './tls';
import { priorityOf } from '../core/spec';
import { freeSlots } from '../core/choose-claims';
import { sleep } from '../core/sleep';

export const VERSION = '0.1.0';

/**
 * Longest wait for each etcd write of a clean stop that only saves others
 * time (showing the node stopping, revoking its lease). When every node
 * stops at once, etcd loses quorum under the last ones and each write would
 * wait its whole deadline; unanswered, the lease simply expires after its TTL.
 * Tasks are handed back before either, under their own deadlines.
 */
const SHUTDOWN_COURTESY_MS = 1000;
/**
 * Longest wait between two attempts to rejoin after a fence. The wait doubles
 * from 500 ms; with a 5 s bound a node cut off from etcd for 8 s rejoined up
 * to 4.5 s after the network came back (measured through a proxy), with 2 s
 * within about 2 s. One join attempt per 2 s is no load on etcd.
 */
const REJOIN_RETRY_MAX_MS = 2000;

export interface NodeOptions {
  log: (msg: string) => void;
  /** Key root (tests share an etcd, each under its own root). */
  keysRoot?: string;
  /** How often the Docker engine is pinged (default DOCKER_PROBE_MS). */
  dockerProbeMs?: number;
  /** How often the etcd member list is read to follow added/removed members (default ENDPOINT_SYNC_MS). */
  endpointSyncMs?: number;
  /** How often the data dir's free space is checked against --min-free-disk (default DISK_CHECK_MS). */
  diskCheckMs?: number;
  /** Overrides of the API's limits (tests). */
  apiLimits?: Partial<ApiLimits>;
  connectionLimits?: Partial<ConnectionLimits>;
  /** How often etcd's space is looked at (default STORAGE_CHECK_MS). */
  storageCheckMs?: number;
}

/**
 * How often each node reads every member's backend size and the alarms (one
 * Status per member and one alarm list): how stale the submit gate may be,
 * and how soon the maintaining node acts.
 */
const STORAGE_CHECK_MS = 5_000;

/**
 * How often a node asks its Docker engine whether it answers: the longest a node started before its
 * engine waits to take container tasks, or keeps advertising an engine that went away (a container that
 * cannot be created for want of an answer marks it down at once). A stat of the socket when there is
 * none, one HTTP request over it when there is.
 */
const DOCKER_PROBE_MS = 10_000;

export class LoomNode {
  private stopping = false;
  private inc?: Incarnation;
  private me?: NodeIdentity;
  private publishTimer?: NodeJS.Timeout;
  private liveness?: Liveness;
  private autoscaler?: Autoscaler;
  private lastPublished = '';
  /** The record last published; heartbeats repeat it, the same bytes, which no node decodes again (NodeDirectory). */
  private publishedInfo: NodeInfo | undefined;
  private control: NodeControl = { drain: false, deadlineMs: 0 };
  private endpoints?: HttpEndpoints; // --metrics-listen and --http-listen
  get metricsPort(): number {
    return this.endpoints?.metricsPort ?? 0;
  }
  get httpPort(): number {
    return this.endpoints?.httpPort ?? 0;
  }
  /** Times this node fenced itself. */
  private fencedCount = 0;
  /** Tasks claimed in the transaction that submitted them (tryRunHere). */
  private claimedAtSubmit = 0;
  /** Results this node recorded, by the state they left the task in. */
  private readonly resultsByState = new Map<string, number>();
  private drainTimer: NodeJS.Timeout | undefined;
  private controlWatch: PrefixWatch | undefined;
  private readonly startedAtMs = Date.now();
  private readonly metrics = new MetricsSampler();
  private capacity: Resources = { cpu: 0, memoryBytes: 0, diskBytes: 0 };
  private labels: Record<string, string> = {};
  docker = false;
  port = 0;
  /** The task-starting helper, when used (closed on stop). */
  spawner: Spawner | undefined;
  /** Container runner and whether its engine answers (set by start()). */
  private dockerRunner: DockerRunner | undefined;
  private containerPolicy: ContainerPolicy | undefined;
  private engine: EngineWatch | undefined;
  /** Which etcd members requests skip (stopped with the clients). */
  private health: EndpointHealth | undefined;
  /** Follows members added to / removed from the etcd cluster (stopped with the clients). */
  endpointSync: EndpointSync | undefined;
  /** --min-free-disk: whether the data dir has room for new tasks' logs. */
  private disk: DiskWatch | undefined;
  /** Reasons to take no new tasks besides a drain (disk, load). */
  private readonly pause: WorkPause;
  /** etcd's space: the submit gate and, on one node, its maintenance. */
  storage: StorageKeeper | undefined;

  private constructor(
    readonly config: NodeConfig,
    private readonly opts: NodeOptions,
    private readonly etcd: EmbeddedEtcd | undefined,
    private readonly reaper: Reaper,
    private readonly memberKv: Kv,
    readonly kv: Kv,
    readonly keys: Keys,
    readonly queries: TaskQueries,
    readonly transitions: TaskTransitions,
    private readonly directory: NodeDirectory,
    private readonly window: QueueWindow,
    readonly executor: Executor,
    readonly steal: StealLoop,
    readonly requeuer: Requeuer,
    private readonly membership: Membership,
    private readonly cancels: PrefixWatch,
    private readonly logs: LogService,
    private readonly api: ApiServer,
    private readonly jobSweeper: JobSweeper,
    readonly retention: RetentionSweeper,
  ) {
    this.pause = new WorkPause({
      diskReason: () => this.disk?.lowReason, maxLoad: config.maxLoad, heldOtherwise: () => this.stopping || this.control.drain, log: opts.log,
      onChange: (paused) => {
        if (paused) this.executor.handBackWaiting('drain');
        this.steal.setPaused(this.takesNoWork);
        if (this.inc) void this.publish(true);
      },
    });
  }

  static async start(config: NodeConfig, opts: NodeOptions): Promise<LoomNode> {
    const log = opts.log;
    const tls = config.tls ? loadNodeTls(config.tls, config.name) : undefined;
    await fs.mkdir(config.dataDir, { recursive: true });
    // Before anything is written to the data dir: it becomes private first.
    const confinement = taskConfinement(config, log);
    const reaper = Reaper.start({ log });
    let etcd: EmbeddedEtcd | undefined;
    let endpoints = config.etcdEndpoints;
    let local: { id: string; url: string } | undefined;
    try {
      if (endpoints.length === 0) {
        etcd = await EmbeddedEtcd.startHealthy(
          {
            name: config.name,
            dataDir: config.dataDir,
            peerListen: config.peerListen,
            clientListen: config.clientListen,
            peerAdvertise: config.peerAdvertise || undefined,
            clientAdvertise: config.clientAdvertise || undefined,
            peers: config.peers,
            etcdBin: config.etcdBin,
            join: config.joinEtcd,
            log,
            tls: config.tls,
          },
          {
            timeoutMs: 180_000,
            onWaiting: (ms) => log(`waiting for etcd quorum (${Math.round(ms / 1000)}s); are the other --peer nodes up?`),
          },
          { started: (e) => reaper.addMember(e.pid), ended: (e) => reaper.removeMember(e.pid) },
        );
        ({ endpoints, local } = await memberClientUrls(etcd.clientUrl, tls));
      }
    } catch (err) {
      await etcd?.stop().catch(() => undefined);
      await reaper.close();
      throw err;
    }
    // Members that stop answering are skipped by every request (probed on connections of their own).
    const health = new EndpointHealth(endpoints, { connect: (e) => connectEtcd({ endpoints: [e], tls, ownConnection: true }), log });
    const keepaliveMs = etcd ? KEEPALIVE_EMBEDDED_MS : KEEPALIVE_DEFAULT_MS;
    const client = connectEtcd({ endpoints, tls, health, keepaliveMs });
    const kv = new Kv(client);
    // Membership (lease keepalives) on its own connection: a flood of API
    // reads must not delay the heartbeats that keep this node unfenced.
    const memberKv = new Kv(connectEtcd({ endpoints, tls, ownConnection: true, health, keepaliveMs }));
    const beatKv = new Kv(connectEtcd({ endpoints, tls, ownConnection: true, health, keepaliveMs }), staleAfterMs(config.leaseTtlSeconds * 1000));
    health.start();
    const endpointSync = new EndpointSync({
      clients: [client, memberKv.client, beatKv.client], health, local, log,
      given: etcd ? undefined : config.etcdEndpoints, everyMs: opts.endpointSyncMs,
    });
    endpointSync.start();
    const keys = new Keys(opts.keysRoot ?? '');
    const queries = new TaskQueries(kv, keys);
    // The queue window knows the head of the bands being served: submits need not read it.
    const transitions = new TaskTransitions(kv, keys, config.maxNodeLosses, (p) => window.headRound(p));
    const directory = new NodeDirectory(kv, keys, log);
    const window = new QueueWindow(kv, keys, 1000, log);
    const spawner = config.spawner ? await Spawner.start({ socketPath: path.resolve(config.dataDir, 'spawner.sock'), log, taskNice: config.taskNice }) : undefined;
    const runner = new ProcessRunner({ reaper, defaultCwd: process.cwd(), spawner, taskNice: config.taskNice, log, confinement });
    const containerPolicy = containerPolicyOf(config, config.docker.kind === 'unix' ? config.docker.socketPath : undefined);
    const dockerRunner = new DockerRunner({ engine: config.docker, nodeName: config.name, reaper, log, policy: containerPolicy, pidsLimit: config.containerPids });
    const engine = new EngineWatch({
      ping: () => dockerRunner.ping(),
      intervalMs: opts.dockerProbeMs ?? DOCKER_PROBE_MS,
      onChange: (up, why) => node.onEngineChange(up, why),
    });
    const lane = new WriteLane();
    const executor = new Executor({
      lane, slots: () => config.slots, aheadStaleMs: config.steal.aheadStaleMs, transitions, queries, kinds: nodeKindRegistry(runner, dockerRunner, () => engine.available, `loom/${VERSION}`, log),
      onEngineUnavailable: (why) => engine.markDown(why), onEngineWorked: () => engine.markWorked(),
      dataDir: config.dataDir, nodeName: config.name, killGraceMs: config.killGraceMs, maxLogBytes: config.maxLogBytes || undefined, log,
      syncWatchdog: () => reaper.sync(),
    });
    const steal = new StealLoop({
      self: () => node.selfInfo(), nodeInfos: () => directory.all(), inUse: () => executor.inUse, starveAfterMs: config.starveAfterMs,
      window, transitions, executor, slots: () => config.slots, urgentSlots: config.urgentSlots, urgentPriority: config.urgentPriority,
      liveNodes: () => directory.names(), policy: config.steal, log, lane, placement: config.placement,
      nodesVersion: () => (readsLoad(config.placement) ? directory.loadVersion : directory.version),
      cpuBusy: config.maxLoad > 0 || config.placement === 'least-loaded' ? () => node.metrics.latest.cpuUtilization : undefined,
    });
    const requeuer = new Requeuer({ queries, transitions, self: config.name, liveNodes: () => directory.names(), log });
    const membership = new Membership(memberKv, keys, {
      name: config.name, ttlSeconds: config.leaseTtlSeconds, leaseFile: path.join(config.dataDir, 'lease'),
      onAck: (fenceAt) => reaper.heartbeat(Math.max(1, fenceAt - Date.now())), log,
    }, beatKv, new MemberClients({
      health, fallback: memberKv, callTimeoutMs: staleAfterMs(config.leaseTtlSeconds * 1000),
      connect: (e) => connectEtcd({ endpoints: [e], tls, ownConnection: true, health, keepaliveMs }),
    }));
    // The reaper killed our tasks because the heartbeat deadline passed: the
    // incarnation is over even if a late keepalive acknowledgement arrives.
    reaper.onFenced((count) => membership.fence(`watchdog deadline passed; it killed ${count} task group(s)`));
    const cancels = new PrefixWatch(kv, keys.cancelOf(config.name), {
      reset: (kvs) => kvs.forEach((c) => node.onCancel(c.key.toString(), c.mod_revision)),
      put: (c) => node.onCancel(c.key.toString(), c.mod_revision),
      delete: () => undefined,
    }, { log });
    const logs = new LogService({ kv, queries, executor, directory, self: config.name, dataDir: config.dataDir, credentials: tls && channelCredentials(tls) });
    const jobs = new JobStore(kv, keys, transitions, log, () => node.liveLease());
    const storageWatch = new StorageWatch({
      endpoints: () => health.endpoints,
      connect: (e) => connectEtcd({ endpoints: [e], tls, ownConnection: true }),
      quotaBytes: config.etcdQuotaBytes || (etcd ? EMBEDDED_QUOTA_BYTES : ETCD_DEFAULT_QUOTA_BYTES),
      log,
    });
    const api = new ApiServer({
      storage: storageWatch,
      kv, queries, transitions, logs, log, jobs, settledHere: (id) => executor.settled(id),
      tryRunHere: (record) => node.tryRunHere(record),
      nodeName: config.name, tls, admins: config.admins, nodes: () => directory.all(),
      urgency: { urgentPriority: config.urgentPriority, submitters: new Set(config.urgentSubmitters ?? []) },
      maxQueuedPerOwner: config.maxQueuedPerOwner,
      members: new EtcdMembers(client, probeWith((url) => connectEtcd({ endpoints: [url], tls, ownConnection: true }))),
      limits: opts.apiLimits, connectionLimits: opts.connectionLimits,
    });
    const node: LoomNode = new LoomNode(
      config, opts, etcd, reaper, memberKv, kv, keys, queries, transitions, directory, window, executor, steal,
      requeuer, membership, cancels, logs, api, new JobSweeper({ jobs, log, self: config.name, liveNodes: () => directory.names(), holdsQueued: (j) => window.holdsJob(j) }),
      new RetentionSweeper({ kv, keys, self: config.name, liveNodes: () => directory.names(), dataDir: config.dataDir, retentionMs: config.retentionMs, log }),
    );
    node.spawner = spawner;
    node.storage = new StorageKeeper({ watch: storageWatch, self: config.name, liveNodes: () => directory.names(), everyMs: opts.storageCheckMs ?? STORAGE_CHECK_MS, log });
    node.health = health;
    node.endpointSync = endpointSync;
    node.dockerRunner = dockerRunner;
    node.containerPolicy = containerPolicy;
    node.engine = engine;
    node.disk = new DiskWatch({
      dir: config.dataDir, min: config.minFreeDisk, everyMs: opts.diskCheckMs, log,
      onChange: (reason) => node.pause.changed(reason, `data dir has free space again (--min-free-disk ${formatMinFreeDisk(config.minFreeDisk)})`),
    });
    try {
      await engine.start();
      if (!engine.available) {
        // Which setting named the engine: a newcomer's DOCKER_HOST or LOOM_DOCKER_SOCK may not be the one they meant.
        const from = config.docker.source === 'default' ? 'the default; see --docker-socket, LOOM_DOCKER_SOCK, DOCKER_HOST' : `from ${config.docker.source}`;
        log(`no Docker engine answers at ${dockerRunner.address}: container tasks go to other nodes (asked again every ${Math.round((opts.dockerProbeMs ?? DOCKER_PROBE_MS) / 1000)} s; that address is ${from})`);
      }
      await node.boot();
    } catch (err) {
      await node.stop({ graceMs: 0 }).catch(() => undefined);
      throw err;
    }
    return node;
  }

  private async boot(): Promise<void> {
    const { config, opts } = this;
    this.capacity = machineCapacity(config.dataDir, config.capacity);
    this.labels = { ...automaticLabels(config.name), ...config.labels };
    this.metrics.sample();
    this.directory.onGone((name, lease) => this.requeuer.nodeGone(name, lease));
    await this.directory.start();
    await this.window.start();
    await this.cancels.start();
    this.controlWatch = watchNodeControl(this.kv, this.keys, config.name, (c) => this.applyControl(c), opts.log);
    await this.controlWatch.start();
    // Before the node joins: one started on a full disk never claims.
    await this.disk!.start();
    this.port = await this.api.listen(config.listen);
    this.endpoints = new HttpEndpoints({
      metricsListen: config.metricsListen, httpListen: config.httpListen, metrics: () => this.collectMetrics(),
      api: { ops: this.api.ops(), tls: this.api.tls, onError: this.api.onError, nodeName: config.name, autoscale: () => this.autoscaler?.status() },
      kv: this.kv, keys: this.keys, directory: this.directory, log: opts.log,
    });
    await this.endpoints.start();
    await this.join();
    this.requeuer.start();
    this.liveness = new Liveness({
      directory: this.directory, membership: this.membership, self: config.name,
      silentMs: config.leaseTtlSeconds * 1000, log: opts.log,
      onDeclared: (name, lease) => this.requeuer.nodeDeclaredDead(name, lease),
    });
    this.liveness.start();
    this.autoscaler = config.autoscale && autoscalerFor(config.autoscale, { kv: this.kv, keys: this.keys, node: config.name, lease: () => this.liveLease(), nodes: () => this.directory.all(), etcdEndpoints: () => (this.etcd ? [this.etcd.clientUrl] : config.etcdEndpoints), log: opts.log, dockerEngine: config.docker }).start();
    this.jobSweeper.start();
    this.retention.start();
    this.storage?.start();
    this.executor.onResult((t) => {
      const state = stateName(t.state);
      this.resultsByState.set(state, (this.resultsByState.get(state) ?? 0) + 1);
      if (t.jobId) this.jobSweeper.taskEnded(t.jobId);
    });
    this.executor.onSlotFree(() => this.schedulePublish());
    let tick = 0;
    this.publishTimer = setInterval(() => {
      this.metrics.sample();
      this.pause.checkLoad(this.metrics.latest.cpuUtilization);
      void this.publish();
      if (++tick % 3 === 0) void this.reconcileOwn();
    }, 3000);
    this.publishTimer.unref();
    opts.log(
      `node ${config.name} up: api ${this.address}, ${config.slots} slots, etcd ${this.etcd ? this.etcd.clientUrl : config.etcdEndpoints.join(',')}` +
        this.endpoints.describe(),
    );
  }

  /** This incarnation's lease, while it lives (undefined when fenced or stopping). */
  liveLease(): string | undefined {
    return this.inc && !this.inc.signal.aborted && !this.stopping ? this.inc.lease : undefined;
  }

  /** What GET /metrics shows (--metrics-listen). */
  private collectMetrics(): Metric[] {
    const st = this.steal.stats;
    return nodeMetrics({
      node: this.config.name, version: VERSION, slots: this.config.slots, urgentSlots: this.config.urgentSlots,
      running: this.executor.count, leaseHeld: !!this.inc && !this.inc.signal.aborted, draining: this.takesNoWork, dockerUp: this.docker,
      claimedFromQueue: st.claimed, claimedAtSubmit: this.claimedAtSubmit, lostClaims: st.lost, claimTxns: st.claimTxns,
      resultsByState: this.resultsByState, requeued: this.requeuer.requeued, declaredDead: this.liveness?.declared ?? 0, fenced: this.fencedCount,
      retentionDeletedTasks: this.retention.deletedTasks, etcdMembers: this.health?.status() ?? {},
      memory: process.memoryUsage(), etcdSpace: this.storage?.space(),
    });
  }

  /** The API's connections now: open, and mid-handshake (tests). */
  get apiConnections(): { open: number; pending: number } {
    return this.api.connections;
  }

  get address(): string {
    const host = this.config.listen.replace(/:\d+$/, '');
    return this.config.advertise || `${host}:${this.port}`;
  }

  private info(): NodeInfo {
    return {
      name: this.config.name,
      address: this.address,
      slots: this.config.slots,
      running: this.executor.count,
      labels: this.labels,
      startedAtMs: this.startedAtMs,
      lease: '',
      version: VERSION,
      pid: process.pid,
      draining: this.takesNoWork,
      claimed: this.steal.stats.claimed, claimedAtSubmit: this.claimedAtSubmit,
      lostClaims: this.steal.stats.lost,
      claimTxns: this.steal.stats.claimTxns,
      drainDeadlineMs: this.control.deadlineMs,
      capacity: this.capacity,
      free: addResources(this.capacity, this.executor.inUse, -1),
      metrics: this.metrics.latest,
      docker: this.docker,
      kinds: this.executor.kinds,
      runAs: resolveRunAs(this.config.runAs, process.getuid?.() ?? 0),
      containerPolicy: this.containerPolicy,
      pausedReason: this.pause.reason ?? '',
    };
  }

  /** Drained, stopping, low on disk or over --max-load: no new claims (what runs goes on). */
  private get takesNoWork(): boolean {
    return this.stopping || this.control.drain || this.pause.reason !== undefined;
  }

  /** The Docker engine started or stopped answering. */
  private onEngineChange(up: boolean, why: string): void {
    this.docker = up;
    const socket = this.dockerRunner?.address;
    if (up) {
      this.opts.log(`docker engine found at ${socket}: taking container tasks`);
      // Containers of this node no task here accounts for: left by an
      // earlier run, or by tasks that failed while the engine was away.
      void this.dockerRunner
        ?.reapOrphans(this.executor.heldIds())
        .then((n) => n > 0 && this.opts.log(`removed ${n} container(s) no task here accounts for`))
        .catch(() => undefined);
    } else {
      this.opts.log(`docker engine at ${socket} unavailable (${why}): container tasks go to other nodes until it answers`);
    }
    if (this.inc) void this.publish(true);
    this.steal.wake();
  }

  selfInfo() {
    return { name: this.config.name, labels: this.labels, capacity: this.capacity, docker: this.docker, containerPolicy: this.containerPolicy, kinds: this.executor.kinds };
  }

  /** Drain: stop claiming; at the deadline, requeue what still runs. Resume undoes it. */
  private applyControl(c: NodeControl): void {
    this.control = c;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    if (c.drain) {
      this.opts.log(`draining${c.deadlineMs ? ` (deadline ${new Date(c.deadlineMs).toISOString()})` : ''}`);
      this.steal.setPaused(true);
      this.executor.handBackWaiting('drain');
      if (c.deadlineMs > 0) {
        this.drainTimer = setTimeout(() => {
          this.opts.log(`drain deadline: requeueing ${this.executor.count} task(s)`);
          void this.executor.stopAll('drain', this.config.killGraceMs);
        }, Math.max(0, c.deadlineMs - Date.now()));
      }
    } else if (!this.stopping) {
      const low = this.pause.reason;
      this.opts.log(low ? `resumed, but still not taking new tasks: ${low}` : 'resumed: taking work again');
      this.steal.setPaused(this.takesNoWork);
    }
    void this.publish(true);
  }

  private async join(): Promise<void> {
    const inc = await this.membership.join(() => this.publishedInfo ?? this.info());
    this.inc = inc;
    this.me = { node: this.config.name, lease: inc.lease };
    inc.signal.addEventListener('abort', () => void this.onFenced(inc), { once: true });
    this.steal.activate(inc, this.me);
    void this.window.refill();
  }

  /**
   * Tasks RUNNING under this node's live lease that its executor does not
   * hold: a claim (or submit-and-claim) that committed but whose reply was
   * lost (etcd timeout). Nobody else may requeue them while our lease lives,
   * so we hand them back ourselves. Only keys older than any claim in flight.
   *
   * Only while the incarnation lives: a fenced node has stopped its tasks
   * (the executor holds none) but its lease outlives the fence for a few
   * seconds, and it must not act on task keys then — it would hand back,
   * as never started, a task that ran and whose result the fence lost (seen
   * in the chaos harness); the survivors requeue those once the lease is gone.
   */
  private async reconcileOwn(): Promise<void> {
    const me = this.me;
    const inc = this.inc;
    const live = () => !!inc && !inc.signal.aborted && this.inc === inc && !this.stopping;
    if (!me || !live() || inc!.lease !== me.lease) return;
    try {
      const mine = await this.queries.runningKeys(this.config.name);
      for (const k of mine) {
        if (k.lease !== me.lease || this.executor.holds(k.id)) continue;
        const held = await this.queries.get(k.id);
        const t = held.task;
        if (t.node !== me.node || t.lease !== me.lease || Date.now() - t.startedAtMs < 10_000 || this.executor.holds(k.id)) continue;
        if (!live()) return;
        const ok = await this.transitions.release(held, me, 'claim outcome lost in an etcd error; requeued', Date.now());
        if (ok) this.opts.log(`task ${k.id}: claimed by this node but never started (etcd error); requeued`);
      }
    } catch (err) {
      this.opts.log(`reconcile failed: ${(err as Error).message}`);
    }
  }

  private async onFenced(inc: Incarnation): Promise<void> {
    if (this.stopping) return;
    const reason = (inc.signal.reason as Error)?.message ?? 'lease lost';
    this.fencedCount++;
    this.opts.log(`FENCED: ${reason}; killing ${this.executor.count} task(s), then rejoining`);
    this.inc = undefined;
    await this.executor.stopAll('fence', 0);
    // ±20 %: nodes fenced by one etcd outage do not all retry in step.
    const nextWait = backoff({ baseMs: 500, maxMs: REJOIN_RETRY_MAX_MS, spread: 0.2 });
    while (!this.stopping) {
      try {
        await this.join();
        this.opts.log(`rejoined with lease ${this.inc!.lease}`);
        return;
      } catch (err) {
        const wait = nextWait();
        this.opts.log(`rejoin failed: ${(err as Error).message}; retrying in ${wait} ms`);
        await sleep(wait);
      }
    }
  }

  async tryRunHere(record: Task): Promise<boolean> {
    const inc = this.inc;
    const me = this.me;
    if (!inc || !me || inc.signal.aborted || this.takesNoWork) return false;
    const spec = record.spec!;
    const { slots, urgentSlots, urgentPriority } = this.config;
    const room = freeSlots({ slots, urgentSlots, running: this.executor.count, backlog: this.executor.backlog });
    if ((priorityOf(spec) >= urgentPriority ? room.urgentFree : room.free) <= 0) return false;
    const free = addResources(this.capacity, this.executor.inUse, -1);
    if (refusal(spec, this.selfInfo(), record.submittedByAdmin) !== undefined || !fits(spec.resources ?? NO_RESOURCES, free)) return false;
    // Where placement reads load, the node a client talks to runs a task only if it is the one placement prefers.
    if (readsLoad(this.config.placement) && !this.steal.prefersHere(record.id, spec, record.submittedByAdmin)) return false;
    const held = await this.transitions.submitClaimed(record, me, Date.now());
    if (!held) return false;
    this.claimedAtSubmit++;
    this.executor.start(held, me, inc);
    return true;
  }

  private onCancel(key: string, revision: string): void {
    const parsed = this.keys.parseCancel(key);
    if (parsed) this.executor.cancel(parsed.id, revision);
  }

  /**
   * Shows an idle node as idle at once (not at the next 3 s tick). Only when
   * the record says otherwise: with tasks one at a time, building and
   * comparing the record after each one is work that changes nothing.
   */
  private schedulePublish(): void {
    if (this.executor.count === 0 && (this.publishedInfo?.running ?? -1) !== 0) void this.publish();
  }

  /** Rewrites /node/<name> when what it shows changed (or when forced). */
  private async publish(force = false, signal?: AbortSignal): Promise<void> {
    const info = this.info();
    const digest = JSON.stringify({ ...info, startedAtMs: 0 });
    if (digest === this.lastPublished && !force) return;
    try {
      if (await this.membership.publish(info, signal)) {
        this.lastPublished = digest;
        this.publishedInfo = info;
      }
    } catch {
      // transient; next tick retries
    }
  }

  /** Graceful stop: no new claims, running tasks get graceMs, the rest are requeued. */
  async stop(opts: { graceMs: number }): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const log = this.opts.log;
    this.steal.setPaused(true);
    this.executor.handBackWaiting('shutdown');
    if (this.publishTimer) clearInterval(this.publishTimer);
    if (this.drainTimer) clearTimeout(this.drainTimer);
    // Shows the node stopping; a courtesy, bounded (see SHUTDOWN_COURTESY_MS).
    await this.publish(true, AbortSignal.timeout(SHUTDOWN_COURTESY_MS));
    if (this.executor.held > 0) {
      log(`stopping: ${this.executor.count} task(s) running; waiting up to ${opts.graceMs} ms`);
      await this.executor.drain(opts.graceMs);
      await this.executor.stopAll('shutdown', this.config.killGraceMs);
    }
    this.requeuer.stop();
    await this.autoscaler?.stop();
    this.liveness?.stop();
    this.jobSweeper.stop();
    this.retention.stop();
    this.disk?.stop();
    this.storage?.stop();
    await this.api.close(1000);
    await this.endpoints?.close();
    this.logs.close();
    await this.membership.leave('node stopped', SHUTDOWN_COURTESY_MS);
    await Promise.all([this.window.stop(), this.directory.stop(), this.cancels.stop(), this.controlWatch?.stop()]);
    const st = this.steal.stats;
    log(`stats: claimed=${st.claimed} lost=${st.lost} claimTxns=${st.claimTxns} resultsInClaims=${st.resultsInClaims} requeued=${this.requeuer.requeued} declaredDead=${this.liveness?.declared ?? 0} retentionDeletedTasks=${this.retention.deletedTasks}`);
    this.endpointSync?.stop();
    this.health?.stop();
    this.kv.close();
    this.memberKv.close();
    this.engine?.stop();
    await this.spawner?.close();
    await this.etcd?.stop();
    await this.reaper.close();
    log(`node ${this.config.name} stopped`);
  }
}

/**
 * Client URLs of the cluster's voting members, the local one first (reached
 * where it listens; the list has its advertised URL), and the local member's id.
 */
async function memberClientUrls(local: string, tls?: TlsMaterial): Promise<{ endpoints: string[]; local: { id: string; url: string } }> {
  const client = connectEtcd({ endpoints: [local], tls });
  try {
    const res = await client.cluster.memberList({}, { deadline: Date.now() + 5000 });
    const self = { id: res.header.member_id, url: local };
    const endpoints = memberEndpoints(res.members, self);
    return { endpoints: endpoints.length > 0 ? endpoints : [local], local: self };
  } catch (err) {
    throw new LoomError('UNAVAILABLE', `cannot list etcd members: ${(err as Error).message}`);
  } finally {
    client.close();
  }
}
