/**
 * Runs one attempt in a Docker container (through the engine's API socket,
 * with dockerode), with the process runner's contract (types.ts): output
 * framed into the attempt's log file with backpressure (output-sink.ts),
 * tails for the result, SIGTERM -> grace -> SIGKILL on stop or timeout.
 *
 * One attempt:
 *   1. image: pull 'never' | 'missing' | 'always'
 *   2. confine: the node's container policy again, here with the mounts'
 *      symlinks resolved (what the engine will mount), the network, and the
 *      user (the image's, when it is a numeric non-root uid; else 65534)
 *   3. create: Cmd = argv (the image's ENTRYPOINT, if any, is kept), Env,
 *      WorkingDir, labels loom.task / loom.node, network (default none),
 *      bind mounts, memory (swap off: the limit is the limit) and CPU limits,
 *      Kubernetes' "restricted" defaults (no capabilities, no-new-privileges,
 *      a pids limit, never privileged), no engine-side log (the framed log
 *      file is the only copy)
 *   4. attach stdout+stderr (before start, so no output is lost), start
 *   5. wait for the exit, inspect (exit code, OOMKilled), drain the output
 *   6. remove the container, always; then close the log and settle `done`.
 *
 * Killing: the engine's kill endpoint (SIGTERM, then SIGKILL after the grace),
 * i.e. `docker stop` semantics. With a reaper, the container's init process
 * (a session leader on the host) is registered like a process task's group,
 * so a frozen or dead node's containers die with its fencing as well.
 *
 * Containers of a node that died are left behind; the node calls
 * reapOrphans() at start-up to remove those whose task it does not know.
 */
import * as fs from 'fs';
import * as https from 'https';
import * as path from 'path';
import { constants as osConstants } from 'os';
import { Readable } from 'stream';
import type Docker from 'dockerode';
import { STREAM_STDERR, STREAM_STDOUT } from './log-file';
import { OutputSink, prepareLogDir } from './output-sink';
import { notifyProgress } from './progress';
import { collectResult, prepareResultMount, removeResultMount, ResultMount } from './container-result';
import { ResultRead } from './result-file';
import { Reaper } from './reaper';
import {
  ContainerPolicy, DEFAULT_CONTAINER_PIDS, effectiveUser, EMPTY_POLICY, isHostNetwork, mountRefusal,
} from '../core/container-policy';
import { RunHandle, RunRequest, RunResult, Runner, StopReason } from './types';
import { KillEscalation, type StopSignal } from './kill-escalation';
import { DEFAULT_DOCKER_SOCKET, describeDockerEngine, type DockerEngine } from '../core/docker-engine';

/**
 * dockerode's options for an engine. Over TCP with TLS, an https agent carries
 * the client certificate and whether the engine's is checked: dockerode takes
 * ca/cert/key but has no way to encrypt without verifying (DOCKER_TLS).
 * Certificate files are read here, when the client is first needed.
 */
export function dockerodeOptions(engine: DockerEngine): Docker.DockerOptions {
  if (engine.kind === 'unix') return { socketPath: engine.socketPath };
  if (!engine.tls) return { host: engine.host, port: engine.port, protocol: 'http' };
  const read = (name: string) => fs.readFileSync(path.join(engine.tls!.certDir, name));
  const ca = read('ca.pem');
  const cert = read('cert.pem');
  const key = read('key.pem');
  const agent = new https.Agent({ ca, cert, key, rejectUnauthorized: engine.tls.verify, keepAlive: true });
  return { host: engine.host, port: engine.port, protocol: 'https', ca, cert, key, agent } as Docker.DockerOptions;
}

export type PullPolicy = 'never' | 'missing' | 'always';

export interface ContainerMount {
  /** Absolute path on the node (created by the engine if missing). */
  host: string;
  /** Absolute path in the container. */
  container: string;
  readOnly: boolean;
}

/**
 * A RunRequest for a container. argv is the container's command (Cmd; an
 * empty argv runs the image's default CMD); env is its complete environment
 * on top of the image's ENV; cwd is a path in the container ('' = the image's
 * WORKDIR).
 */
export interface ContainerRequest extends RunRequest {
  image: string;
  pull: PullPolicy;
  mounts: ContainerMount[];
  /** Docker network mode: 'none' (default, also for ''), 'host', 'bridge' or a network name. */
  network: string;
  /** Recorded in the container's loom.task label (reapOrphans). */
  taskId: string;
  /** Memory limit (swap included: no swap); undefined or 0 = none. */
  memoryBytes?: number;
  /** CPU limit in cores (fractional); undefined or 0 = none. */
  cpus?: number;
  /** The spec's "UID[:GID]"; '' or undefined: the image's user, if non-root (see effectiveUser). */
  user?: string;
  /** The submitter was an admin (Task.submitted_by_admin): it may use a host network. */
  byAdmin?: boolean;
  /** A directory of the node for the container's $LOOM_RESULT (container-result.ts); undefined: none. */
  resultDir?: string;
}

export interface DockerRunnerOptions {
  /** The engine (resolveDockerEngine: flag, LOOM_DOCKER_SOCK, DOCKER_HOST). Wins over socketPath. */
  engine?: DockerEngine;
  /** Shorthand for a unix-socket engine. Default (neither given): /var/run/docker.sock. */
  socketPath?: string;
  /** Recorded in the containers' loom.node label; reapOrphans() only touches these. */
  nodeName: string;
  /** Registers each container's init process, so the reaper kills it when the node is fenced or dies. */
  reaper?: Reaper;
  /** Diagnostics that do not belong to a result (a failed remove, ...). */
  log?: (message: string) => void;
  /** What containers may ask of this node (mounts, host network, root). Default: nothing. */
  policy?: ContainerPolicy;
  /** The pids limit of every container. Default DEFAULT_CONTAINER_PIDS. */
  pidsLimit?: number;
}

/** What confine() decided for one container: the mounts as resolved, the user. */
interface Confinement {
  binds: string[];
  user: string;
}

export const LABEL_TASK = 'loom.task';
export const LABEL_NODE = 'loom.node';

/** docker run's status for "the engine could not run the container". */
const ENGINE_ERROR_EXIT = 125;
/** After the container exited, how long its output may take to drain. */
const OUTPUT_DRAIN_MS = 10_000;
const PING_TIMEOUT_MS = 3_000;

export class DockerRunner implements Runner {
  /** Where the engine is, for log lines and errors ("/run/docker.sock", "tcp://h:2376 (TLS, verified)"). */
  readonly address: string;
  readonly engine: DockerEngine;
  private client: Docker | undefined;

  constructor(private readonly opts: DockerRunnerOptions) {
    // No environment here: src/bin resolves DOCKER_HOST and friends into `engine`.
    this.engine = opts.engine ?? { kind: 'unix', socketPath: opts.socketPath ?? DEFAULT_DOCKER_SOCKET, source: 'default' };
    this.address = describeDockerEngine(this.engine);
  }

  /**
   * The engine client, loaded on first use: dockerode and what it pulls in
   * (ssh2, tar-fs, ...) add about 23 MB of RSS and a second or more of
   * start-up, which a node on a machine without Docker should not pay.
   */
  private get docker(): Docker {
    if (!this.client) {
      const Dockerode = require('dockerode') as typeof Docker;
      this.client = new Dockerode(dockerodeOptions(this.engine));
    }
    return this.client;
  }

  /**
   * A plain RunRequest has no image: it fails at once (use startContainer).
   * A ContainerRequest passed here is run as startContainer would.
   */
  start(req: RunRequest): RunHandle {
    if (isContainerRequest(req)) return this.startContainer(req);
    return new ContainerRun(this.docker, this.address, this.opts, req, {
      error: 'the docker runner needs an image (ContainerRequest.image)',
      exitCode: ENGINE_ERROR_EXIT,
    });
  }

  startContainer(req: ContainerRequest): RunHandle {
    return new ContainerRun(this.docker, this.address, this.opts, req);
  }

  /** Whether the engine answers on the socket (within 3 s). Never throws. */
  async ping(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      // No socket, no engine: answered without loading the client.
      if (this.engine.kind === 'unix' && !(await fs.promises.stat(this.engine.socketPath)).isSocket()) return false;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), PING_TIMEOUT_MS);
      });
      await Promise.race([this.docker.ping(), timeout]);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Removes (force: running ones are killed) this node's containers whose
   * task is not in `known`, e.g. those a crashed predecessor left behind.
   * Returns how many were removed. Throws if the engine cannot be listed.
   */
  async reapOrphans(known: Set<string>): Promise<number> {
    let list: Docker.ContainerInfo[];
    try {
      list = await this.docker.listContainers({
        all: true,
        filters: { label: [`${LABEL_NODE}=${this.opts.nodeName}`] },
      });
    } catch (err) {
      throw new Error(describeEngineError(err, this.address));
    }
    let removed = 0;
    for (const info of list) {
      const task = info.Labels?.[LABEL_TASK] ?? '';
      if (info.Labels?.[LABEL_NODE] !== this.opts.nodeName || known.has(task)) continue;
      try {
        await this.docker.getContainer(info.Id).remove({ force: true, v: true });
        removed++;
        this.opts.log?.(`removed orphaned container ${info.Id.slice(0, 12)} (task ${task || '?'})`);
      } catch (err) {
        if (isGone(err)) continue;
        this.opts.log?.(`cannot remove orphaned container ${info.Id.slice(0, 12)}: ${describeEngineError(err, this.address)}`);
      }
    }
    return removed;
  }
}

export function isContainerRequest(req: RunRequest): req is ContainerRequest {
  return typeof (req as Partial<ContainerRequest>).image === 'string';
}

interface StartFailure {
  error: string;
  exitCode: number;
}

/** A runner failure carried to the result. */
class RunFailure extends Error {
  constructor(readonly failure: StartFailure) {
    super(failure.error);
  }
}

type Phase = 'preparing' | 'starting' | 'running' | 'exited';

class ContainerRun implements RunHandle {
  readonly done: Promise<RunResult>;
  private resolveDone!: (result: RunResult) => void;
  private readonly listeners = new Set<() => void>();
  private readonly startedAtMs = Date.now();
  private sink: OutputSink | undefined;
  private container: Docker.Container | undefined;
  private output: Readable | undefined;
  private pullStream: Readable | undefined;
  private initPid: number | undefined;
  private registeredPid: number | undefined;

  private phase: Phase = 'preparing';
  private exitCode: number | undefined;
  private oomKilled = false;
  private resultMount: ResultMount | undefined;
  private resultRead: ResultRead | undefined;
  private failure: StartFailure | undefined;
  /** The engine did not answer before the container was started (nothing ran). */
  private engineUnreachable = false;
  private timedOut = false;
  private stoppedFor: StopReason | undefined;
  /** A stop/timeout arrived before the container ran: the grace to apply once it does. */
  private pendingGraceMs: number | undefined;
  /** We sent the container a signal. */
  private signalled = false;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private readonly stopper = new KillEscalation((signal) => this.kill(signal));
  private settled = false;

  constructor(
    private readonly docker: Docker,
    private readonly address: string,
    private readonly opts: DockerRunnerOptions,
    private readonly req: RunRequest | ContainerRequest,
    preFailure?: StartFailure,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    if (req.timeoutMs > 0) {
      // The whole attempt counts, pull included: a hung pull ends too.
      this.timeoutTimer = setTimeout(() => {
        this.timedOut = true;
        this.terminate(req.killGraceMs);
      }, req.timeoutMs);
    }
    void this.run(preFailure);
  }

  get pid(): number | undefined {
    return this.initPid;
  }

  get logBytes(): number {
    return this.sink?.bytesWritten ?? 0;
  }

  onProgress(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  stop(reason: StopReason, graceMs: number): void {
    if (this.phase === 'exited' || this.settled) return;
    this.stoppedFor ??= reason;
    clearTimeout(this.timeoutTimer);
    this.terminate(graceMs);
  }

  private get aborted(): boolean {
    return this.pendingGraceMs !== undefined;
  }

  private async run(preFailure: StartFailure | undefined): Promise<void> {
    const req = this.req;
    try {
      const dirError = prepareLogDir(req.logPath);
      if (dirError) throw new RunFailure({ error: dirError, exitCode: 126 });
      this.sink = new OutputSink({
        logPath: req.logPath,
        tailBytes: req.tailBytes,
        maxLogBytes: req.maxLogBytes,
        log: this.opts.log,
        pause: () => this.output?.pause(),
        resume: () => this.output?.resume(),
        onProgress: () => this.emitProgress(),
      });
      if (preFailure) throw new RunFailure(preFailure);
      const creq = req as ContainerRequest;
      if (!creq.image) throw new RunFailure({ error: 'no image given', exitCode: ENGINE_ERROR_EXIT });

      await this.prepareImage(creq);
      if (this.aborted) return;
      const confined = await this.confine(creq);
      if (this.aborted) return;
      const mount = creq.resultDir ? prepareResultMount(creq.resultDir, confined.user) : undefined;
      if (mount && 'skipped' in mount) this.opts.log?.(`task ${creq.taskId}: no $LOOM_RESULT in its container: ${mount.skipped}`);
      else this.resultMount = mount;
      const container = await this.docker.createContainer(
        containerConfig(creq, this.opts.nodeName, confined, this.opts.pidsLimit ?? DEFAULT_CONTAINER_PIDS, this.resultMount),
      );
      this.container = container;
      if (this.aborted) return;

      const output = (await container.attach({ stream: true, stdout: true, stderr: true })) as unknown as Readable;
      this.output = output;
      const outputDone = this.pipeOutput(output);
      if (this.aborted) return;

      this.phase = 'starting';
      try {
        await container.start();
      } catch (err) {
        throw new RunFailure(describeStartError(err, creq.argv, this.address));
      }
      this.phase = 'running';
      await this.registerInit(container);
      if (this.pendingGraceMs !== undefined) this.terminate(this.pendingGraceMs);

      const status = (await container.wait()) as { StatusCode?: number };
      this.phase = 'exited';
      clearTimeout(this.timeoutTimer);
      this.stopper.settle();
      this.exitCode = status.StatusCode;
      try {
        const info = await container.inspect();
        if (typeof info.State?.ExitCode === 'number') this.exitCode = info.State.ExitCode;
        this.oomKilled = Boolean(info.State?.OOMKilled);
      } catch (err) {
        this.opts.log?.(`container ${shortId(container.id)}: inspect after exit failed: ${describeEngineError(err, this.address)}`);
      }
      await this.drainOutput(outputDone);
      if (this.resultMount) this.resultRead = collectResult(this.resultMount);
    } catch (err) {
      // Before 'starting' no start request was sent: whatever the engine
      // may have created, nothing ran, so the task can go elsewhere.
      if (this.failure === undefined && this.phase === 'preparing' && isUnreachable(err)) this.engineUnreachable = true;
      this.failure ??=
        err instanceof RunFailure
          ? err.failure
          : { error: describeEngineError(err, this.address), exitCode: ENGINE_ERROR_EXIT };
    } finally {
      this.phase = 'exited';
      clearTimeout(this.timeoutTimer);
      this.stopper.settle();
      this.unregisterInit();
      this.output?.destroy();
      await this.removeContainer();
      removeResultMount(this.resultMount);
      if (this.sink) await this.sink.end();
      this.settle();
    }
  }

  private async prepareImage(req: ContainerRequest): Promise<void> {
    const image = req.image;
    let present: boolean;
    if (req.pull === 'always') {
      present = false;
    } else {
      try {
        await this.docker.getImage(image).inspect();
        present = true;
      } catch (err) {
        if (!isNotFound(err)) throw err;
        present = false;
      }
    }
    if (present) return;
    if (req.pull === 'never') {
      throw new RunFailure({ error: `image ${image} is not present on this node and pull is 'never'`, exitCode: ENGINE_ERROR_EXIT });
    }
    if (this.aborted) return;
    try {
      const stream = (await this.docker.pull(image)) as Readable;
      this.pullStream = stream;
      await new Promise<void>((resolve, reject) => {
        this.docker.modem.followProgress(stream, (err: Error | null, events: Array<{ error?: string }>) => {
          if (err) return reject(err);
          // The engine reports some failures only as the last progress event.
          const last = events?.[events.length - 1];
          if (last?.error) return reject(new Error(last.error));
          resolve();
        });
      });
    } catch (err) {
      if (this.aborted) return;
      if (isUnreachable(err)) throw err;
      throw new RunFailure({ error: `cannot pull ${image}: ${engineMessage(err)}`, exitCode: ENGINE_ERROR_EXIT });
    } finally {
      this.pullStream = undefined;
    }
  }

  /**
   * The policy check at the last moment: placement already kept this node
   * from claiming what its policy refuses, but a path may have become a
   * symlink since (a task can make one in a writable mount), and the engine
   * follows symlinks. So each mount is resolved here, checked as resolved,
   * and handed to the engine resolved. Exit 125: the engine did not run it.
   */
  private async confine(req: ContainerRequest): Promise<Confinement> {
    const policy = this.opts.policy ?? EMPTY_POLICY;
    const refuse = (why: string): never => {
      throw new RunFailure({ error: `refused by node ${this.opts.nodeName}: ${why}`, exitCode: ENGINE_ERROR_EXIT });
    };
    if (isHostNetwork(req.network) && !req.byAdmin && !policy.hostNetwork) {
      refuse(`network ${req.network} needs an admin (--admin) or --allow-host-network`);
    }
    const binds: string[] = [];
    for (const m of req.mounts) {
      const real = resolveHostPath(m.host);
      const why = mountRefusal(m.host, m.readOnly, policy) ?? (real === m.host ? undefined : mountRefusal(real, m.readOnly, policy));
      if (why) refuse(`mount ${m.host}${real === m.host ? '' : ` (resolves to ${real})`}: ${why}`);
      binds.push(`${real}:${m.container}${m.readOnly ? ':ro' : ''}`);
    }
    const info = await this.docker.getImage(req.image).inspect();
    const chosen = effectiveUser(req.user ?? '', info.Config?.User ?? '', policy.root);
    if ('refused' in chosen) return refuse(chosen.refused);
    return { binds, user: chosen.user };
  }

  /** Demultiplexes the attach stream into the sink; resolves when it ends. */
  private pipeOutput(output: Readable): Promise<void> {
    const demux = new StreamDemuxer();
    output.on('data', (chunk: Buffer) => {
      for (const frame of demux.push(chunk)) {
        // 0 = stdin (never attached); anything else we cannot place goes to stdout.
        this.sink?.write(frame.stream === 2 ? STREAM_STDERR : STREAM_STDOUT, frame.data);
      }
    });
    return new Promise((resolve) => {
      output.once('end', resolve);
      output.once('close', resolve);
      output.once('error', (err) => {
        if (this.phase !== 'exited') this.opts.log?.(`container output: ${err.message}`);
        resolve();
      });
    });
  }

  /** The output stream ends right after the exit; bounded, in case the engine keeps it open. */
  private async drainOutput(outputDone: Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      outputDone.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), OUTPUT_DRAIN_MS))),
    ]);
    clearTimeout(timer);
    if (timedOut) this.opts.log?.(`container ${shortId(this.container?.id)}: output still open ${OUTPUT_DRAIN_MS} ms after exit; closed`);
  }

  /**
   * Registers the container's init with the reaper, if it is a process of
   * this host's pid namespace (it is a session leader: pgid = pid). An engine
   * elsewhere (another pid namespace) reports pids we must not signal.
   */
  private async registerInit(container: Docker.Container): Promise<void> {
    try {
      const info = await container.inspect();
      const pid = info.State?.Pid;
      if (!pid || pid <= 1) return;
      const cgroup = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      if (!cgroup.includes(container.id)) return;
      this.initPid = pid;
      if (this.opts.reaper && this.phase === 'running') {
        this.opts.reaper.addTask(pid);
        this.registeredPid = pid;
      }
    } catch {
      // Exited already, or no /proc: nothing to register.
    }
  }

  private unregisterInit(): void {
    if (this.registeredPid === undefined) return;
    this.opts.reaper?.removeTask(this.registeredPid);
    this.registeredPid = undefined;
  }

  /** SIGTERM now, SIGKILL after graceMs; a later call may only bring the SIGKILL forward. */
  private terminate(graceMs: number): void {
    if (this.phase === 'exited') return;
    if (this.phase !== 'running') {
      // Not running yet: it will not be started (or, if a start is in
      // flight, it is stopped as soon as it runs). An ongoing pull is abandoned.
      this.pendingGraceMs = Math.min(this.pendingGraceMs ?? Infinity, Math.max(0, graceMs));
      this.pullStream?.destroy();
      return;
    }
    this.stopper.stop(graceMs);
  }

  private kill(signal: StopSignal): void {
    const container = this.container;
    if (!container || this.phase === 'exited') return;
    this.signalled = true;
    container.kill({ signal }).catch((err: unknown) => {
      // "No such container" / "is not running": it is gone already, which is what we wanted.
      if (isGone(err)) return;
      this.opts.log?.(`container ${shortId(container.id)}: ${signal} failed: ${describeEngineError(err, this.address)}`);
    });
  }

  private async removeContainer(): Promise<void> {
    const container = this.container;
    if (!container) return;
    try {
      await container.remove({ force: true, v: true });
    } catch (err) {
      if (isGone(err) || isRemovalInProgress(err)) return;
      this.opts.log?.(`container ${shortId(container.id)} (task ${taskIdOf(this.req)}) not removed: ${describeEngineError(err, this.address)}`);
    }
  }

  private settle(): void {
    if (this.settled) return;
    this.settled = true;
    this.resolveDone(this.result());
    this.emitProgress();
    this.listeners.clear();
  }

  private result(): RunResult {
    const stdout = this.sink?.stdoutTail;
    const stderr = this.sink?.stderrTail;
    const base: RunResult = {
      timedOut: this.timedOut,
      stdoutTail: stdout?.toBuffer() ?? Buffer.alloc(0),
      stderrTail: stderr?.toBuffer() ?? Buffer.alloc(0),
      stdoutTruncated: stdout?.truncated ?? false,
      stdoutBytes: stdout?.totalBytes ?? 0,
      stderrBytes: stderr?.totalBytes ?? 0,
      stderrTruncated: stderr?.truncated ?? false,
      startedAtMs: this.startedAtMs,
      finishedAtMs: Date.now(),
    };
    if (this.stoppedFor !== undefined) base.stoppedFor = this.stoppedFor;
    if (this.failure) {
      base.error = this.failure.error;
      base.errorExitCode = this.failure.exitCode;
      if (this.engineUnreachable) base.engineUnavailable = true;
      return base;
    }
    if (this.exitCode === undefined) {
      // Stopped or timed out before the container ran.
      const why = this.timedOut ? 'timed out' : `stopped (${this.stoppedFor ?? 'aborted'})`;
      base.error = `${why} before the container started`;
      base.errorExitCode = ENGINE_ERROR_EXIT;
      return base;
    }
    if (this.resultRead?.result) base.result = this.resultRead.result;
    if (this.resultRead?.error) base.resultError = this.resultRead.error;
    if (this.oomKilled) base.oomKilled = true;
    const signal = this.exitCode > 128 ? signalName(this.exitCode - 128) : undefined;
    if (this.signalled && signal) base.signal = signal;
    else base.exitCode = this.exitCode;
    return base;
  }

  private emitProgress(): void {
    notifyProgress(this.listeners, this.opts.log);
  }
}

/**
 * `host` with its symlinks resolved: the longest existing prefix through
 * realpath, the rest as given (the engine creates missing directories).
 */
function resolveHostPath(host: string): string {
  const parts = host.split('/').filter(Boolean);
  for (let n = parts.length; n >= 0; n--) {
    const prefix = `/${parts.slice(0, n).join('/')}`;
    let real: string;
    try {
      real = fs.realpathSync(prefix);
    } catch {
      continue;
    }
    const rest = parts.slice(n);
    return rest.length === 0 ? real : `${real === '/' ? '' : real}/${rest.join('/')}`;
  }
  return host;
}

function containerConfig(req: ContainerRequest, nodeName: string, confined: Confinement, pidsLimit: number, result?: ResultMount): Docker.ContainerCreateOptions {
  const memory = req.memoryBytes && req.memoryBytes > 0 ? Math.floor(req.memoryBytes) : undefined;
  const nanoCpus = req.cpus && req.cpus > 0 ? Math.round(req.cpus * 1e9) : undefined;
  return {
    Image: req.image,
    Cmd: req.argv.length > 0 ? req.argv : undefined,
    Env: [...Object.entries(req.env).map(([k, v]) => `${k}=${v}`), ...(result ? [result.env] : [])],
    WorkingDir: req.cwd || undefined,
    // '' only when root is allowed and the image names none: the image's default (root).
    User: confined.user || undefined,
    Labels: { [LABEL_TASK]: req.taskId, [LABEL_NODE]: nodeName },
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    OpenStdin: false,
    Tty: false,
    HostConfig: {
      NetworkMode: req.network || 'none',
      Binds: result ? [...confined.binds, result.bind] : confined.binds,
      // Kubernetes' "restricted" Pod Security Standard: no capability at all
      // (not even the engine's default set), no gaining privileges through
      // setuid/file capabilities, a bounded process count (a fork bomb stays
      // in its container), and never privileged. The engine's default seccomp
      // profile stays on (nothing here asks for unconfined).
      CapDrop: ['ALL'],
      SecurityOpt: ['no-new-privileges:true'],
      PidsLimit: pidsLimit,
      Privileged: false,
      Memory: memory,
      // Equal to Memory: no swap on top of the limit.
      MemorySwap: memory,
      NanoCpus: nanoCpus,
      AutoRemove: false,
      // Output goes to the framed log file only; no second copy in the engine.
      LogConfig: { Type: 'none', Config: {} },
    },
  };
}

/**
 * Splits the engine's multiplexed attach stream (Tty off): frames of an
 * 8-byte header [stream, 0, 0, 0, length (uint32 BE)] and the data.
 * Not docker-modem's demuxStream: that one concatenates every chunk onto
 * what it holds (copying a large frame once per chunk) and needs two
 * Writables, where the output sink takes each frame with its stream id.
 */
export class StreamDemuxer {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  push(chunk: Buffer): { stream: number; data: Buffer }[] {
    const frames: { stream: number; data: Buffer }[] = [];
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    while (this.pendingBytes >= 8) {
      const head = this.peek(8);
      const length = head.readUInt32BE(4);
      if (this.pendingBytes < 8 + length) break;
      this.take(8);
      frames.push({ stream: head[0], data: this.take(length) });
    }
    return frames;
  }

  /** The first n buffered bytes (n <= pendingBytes), without consuming them. */
  private peek(n: number): Buffer {
    if (this.pending[0].length >= n) return this.pending[0].subarray(0, n);
    const joined = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [joined];
    return joined.subarray(0, n);
  }

  /** Consumes the first n buffered bytes. */
  private take(n: number): Buffer {
    this.pendingBytes -= n;
    const first = this.pending[0];
    if (first.length === n) {
      this.pending.shift();
      return first;
    }
    if (first.length > n) {
      this.pending[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const head = this.pending[0];
      if (head.length <= left) {
        parts.push(head);
        this.pending.shift();
        left -= head.length;
      } else {
        parts.push(head.subarray(0, left));
        this.pending[0] = head.subarray(left);
        left = 0;
      }
    }
    return Buffer.concat(parts, n);
  }
}

function signalName(n: number): string | undefined {
  for (const [name, num] of Object.entries(osConstants.signals)) {
    if (num === n) return name;
  }
  return undefined;
}

function shortId(id: string | undefined): string {
  return id ? id.slice(0, 12) : '?';
}

function taskIdOf(req: RunRequest): string {
  return isContainerRequest(req) ? req.taskId : '?';
}

interface EngineError {
  statusCode?: number;
  code?: string;
  reason?: string;
  json?: unknown;
  message?: string;
}

/** A failure to talk to the engine at all (no HTTP status). */
function isUnreachable(err: unknown): boolean {
  const e = err as EngineError;
  if (!e || typeof e !== 'object' || e.statusCode !== undefined) return false;
  return typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code);
}

/** The engine's own message, without dockerode's "(HTTP code N) ..." wrapping. */
function engineMessage(err: unknown): string {
  const e = err as EngineError;
  const json = e?.json;
  if (json && typeof json === 'object' && typeof (json as { message?: unknown }).message === 'string') {
    return ((json as { message: string }).message).trim();
  }
  if (typeof json === 'string' && json.trim()) return json.trim();
  return String(e?.message ?? err)
    .replace(/^\(HTTP code \d+\) [^-]*- /, '')
    .trim();
}

function describeEngineError(err: unknown, address: string): string {
  if (isUnreachable(err)) return `docker daemon unreachable at ${address}: ${(err as EngineError).message ?? (err as EngineError).code}`;
  return engineMessage(err);
}

function isNotFound(err: unknown): boolean {
  return (err as EngineError)?.statusCode === 404;
}

/** "No such container" (404) or "is not running" (409): nothing left to do. */
function isGone(err: unknown): boolean {
  const status = (err as EngineError)?.statusCode;
  return status === 404 || status === 304 || (status === 409 && /not running|is not|no such/i.test(engineMessage(err)));
}

function isRemovalInProgress(err: unknown): boolean {
  return (err as EngineError)?.statusCode === 409 && /removal .*in progress/i.test(engineMessage(err));
}

/** Start failures the runtime reports for the command itself map to a shell's 127/126. */
function describeStartError(err: unknown, argv: string[], address: string): StartFailure {
  if (isUnreachable(err)) return { error: describeEngineError(err, address), exitCode: ENGINE_ERROR_EXIT };
  const msg = engineMessage(err);
  const command = argv[0] ?? '';
  if (/executable file not found|exec: "[^"]*": (?:stat [^:]*: )?no such file or directory/i.test(msg)) {
    return { error: `command not found: ${command}`, exitCode: 127 };
  }
  if (/exec: "[^"]*": permission denied|exec format error|is a directory/i.test(msg)) {
    return { error: `permission denied: ${command}`, exitCode: 126 };
  }
  return { error: `cannot start container: ${msg}`, exitCode: ENGINE_ERROR_EXIT };
}
