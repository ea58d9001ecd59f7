/**
 * Runs one attempt as a local process: its own process group (so stopping it
 * stops its children too), output framed into the attempt's log file with
 * backpressure (a task printing gigabytes never grows the node's heap), and
 * the last bytes of each stream kept for the result.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { Readable } from 'stream';
import { STREAM_STDERR, STREAM_STDOUT } from './log-file';
import { OutputSink, prepareLogDir } from './output-sink';
import { notifyProgress } from './progress';
import { Reaper } from './reaper';
import { lowerTaskPriority } from './task-priority';
import { CgroupLimiter, TaskLimits, TaskLimitsRun } from './cgroup';
import { Spawner } from './spawner';
import { commandExists, Confinement, TaskIdentity } from './confine';
import { RunHandle, RunRequest, RunResult, Runner, StopReason } from './types';
import { KillEscalation } from './kill-escalation';
import { readResultFile } from './result-file';

export interface ProcessRunnerOptions {
  reaper?: Reaper;
  /** cwd for requests with cwd ''. Assumed to exist (not checked per task). */
  defaultCwd: string;
  /** Diagnostics that do not belong to a result, e.g. a failing log file. */
  log?: (message: string) => void;
  /**
   * Enforces RunRequest.memoryBytes/cpus. Default: detected on the first request with a
   * limit (cgroup v2/v1 where writable, else rlimits). null: never use cgroups.
   */
  limiter?: CgroupLimiter | null;
  /**
   * Starts tasks without resource limits (posix_spawn, see spawner.ts); the
   * others, and any it cannot start, are started with Node's spawn.
   */
  spawner?: Spawner;
  /**
   * Runs every task through loom-confine (see confine.ts): its own identity,
   * scratch directory and cgroup, everything in it killed when it ends.
   * Without it tasks run as the node, as they are (tests of the runner itself).
   */
  confinement?: Confinement;
  /**
   * Niceness of tasks started here with Node's spawn (see task-priority.ts);
   * the spawner applies its own, given at its start. Default 0.
   */
  taskNice?: number;
}

export class ProcessRunner implements Runner {
  private readonly limits: TaskLimits;
  /** Log directories made so far (see prepareLogDir). */
  private readonly logDirs = new Set<string>();

  constructor(private readonly opts: ProcessRunnerOptions) {
    this.limits = new TaskLimits({ limiter: opts.limiter, log: opts.log });
  }

  start(req: RunRequest): RunHandle {
    return new ProcessRun(req, this.opts, this.limits, this.logDirs);
  }
}

interface StartFailure {
  error: string;
  exitCode: number;
}

class ProcessRun implements RunHandle {
  readonly done: Promise<RunResult>;
  private resolveDone!: (result: RunResult) => void;
  /** Set once the task runs; it leads its own process group. */
  private pidValue: number | undefined;
  private readonly streams: Readable[] = [];
  /** The kill grace of a stop or timeout that came before the pid was known. */
  private deferredGraceMs: number | undefined;
  /** Undefined until opened, and for good if the log directory cannot be made. */
  private sink: OutputSink | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly startedAtMs = Date.now();

  private exitCode: number | undefined;
  private exitSignal: string | undefined;
  private startFailure: StartFailure | undefined;
  private timedOut = false;
  private stoppedFor: StopReason | undefined;

  private exited = false;
  private processClosed = false;
  private logClosed = false;
  private settled = false;
  private timeoutTimer: NodeJS.Timeout | undefined;
  private readonly stopper = new KillEscalation((signal) => this.signalGroup(signal));
  /** The task's memory/CPU limits (a cgroup, or an rlimit), when it asked for any. */
  private limited: TaskLimitsRun | undefined;
  private killedByRunner = false;
  /** Who the task runs as, when confined; released once it and all it started are gone. */
  private identity: TaskIdentity | undefined;
  /** $LOOM_RESULT of the task (set once it is about to start). */
  private resultPath: string | undefined;
  /** The task joined its cgroups itself (loom-confine), before its exec. */
  private joinedByWrapper = false;
  /** Spawner streams closed so far (of 2). */
  private streamsClosed = 0;

  constructor(
    private readonly req: RunRequest,
    private readonly opts: ProcessRunnerOptions,
    private readonly limits: TaskLimits,
    private readonly logDirs: Set<string>,
  ) {
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    try {
      this.launch();
    } catch (err) {
      // start() never throws: anything unexpected becomes a start failure.
      this.failStart({ error: `cannot start task: ${(err as Error).message}`, exitCode: 126 });
    }
  }

  get pid(): number | undefined {
    return this.pidValue;
  }

  get logBytes(): number {
    return this.sink?.bytesWritten ?? 0;
  }

  onProgress(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  stop(reason: StopReason, graceMs: number): void {
    if (this.exited || this.startFailure) return;
    this.stoppedFor ??= reason;
    clearTimeout(this.timeoutTimer);
    this.terminate(graceMs);
  }

  private launch(): void {
    const req = this.req;
    const dirError = prepareLogDir(req.logPath, this.logDirs);
    if (dirError) return this.failStart({ error: dirError, exitCode: 126 });
    this.openLog();

    const failure = checkRequest(req);
    if (failure) return this.failStart(failure);
    if (req.notAfterMs && Date.now() >= req.notAfterMs) return this.refuseLate();

    // The group is made before the spawn so that only moving the pid in is left for after it.
    const ids = req.env;
    const key = ids.LOOM_TASK_ID ? `${ids.LOOM_TASK_ID}.${ids.LOOM_ATTEMPT ?? 0}` : 'task';
    const confinement = this.opts.confinement;
    let argv = req.argv;
    let cwd = req.cwd || this.opts.defaultCwd;
    if (confinement) {
      // The wrapper would report a missing command as its own exit 127: say it as before.
      if (!commandExists(req.argv[0], req.env.PATH)) return this.failStart({ error: `command not found: ${req.argv[0]}`, exitCode: 127 });
      const who = confinement.begin(key, req.owner ?? '');
      if (typeof who === 'string') return this.failStart({ error: who, exitCode: 126 });
      this.identity = who;
      if (!req.cwd) cwd = who.scratch;
      this.limited = this.limits.begin({ memoryBytes: req.memoryBytes, cpus: req.cpus, pids: req.pids ?? confinement.opts.pidsMax }, key, ids.LOOM_NODE);
      argv = confinement.wrap(req.argv, who, this.limited?.procsFiles() ?? []);
    } else {
      this.limited = this.limits.begin({ memoryBytes: req.memoryBytes, cpus: req.cpus }, key, ids.LOOM_NODE);
    }
    // Placed by the wrapper before its exec: nothing to move after the spawn.
    this.joinedByWrapper = (this.limited?.procsFiles().length ?? 0) > 0 && confinement !== undefined;

    if (req.timeoutMs > 0) {
      this.timeoutTimer = setTimeout(() => {
        this.timedOut = true;
        this.terminate(req.killGraceMs);
      }, req.timeoutMs);
    }
    // A task of its own uid writes its result in its scratch dir; one that runs as the node, beside its log.
    this.resultPath = this.identity ? path.join(this.identity.scratch, '.loom-result') : `${req.logPath}.result`;
    if (!this.identity) fs.rmSync(this.resultPath, { force: true });
    const env = { ...req.env, LOOM_RESULT: this.resultPath, ...(this.opts.reaper ? { LOOM_REAPER_TAG: this.opts.reaper.tag } : {}) };
    const spawner = this.opts.spawner;
    // A task with memory/cpu limits not placed by the wrapper gets them right after it
    // starts (a cgroup, or an rlimit: cgroup.ts), which wants the pid at once: those use
    // Node's spawn. (A confined task on a machine without cgroups has only its
    // RLIMIT_NPROC, set by the wrapper: nothing to do after the spawn.)
    const limitsAfterSpawn = this.limited && !this.joinedByWrapper && ((req.memoryBytes ?? 0) > 0 || (req.cpus ?? 0) > 0);
    if (!spawner?.usable || limitsAfterSpawn) return this.spawnHere(argv, cwd, env);
    spawner.spawn({ argv, env, cwd, notAfterMs: req.notAfterMs }, {
      started: (pid) => this.onStarted(pid),
      failed: () => this.spawnHere(argv, cwd, env),
      late: () => this.refuseLate(),
      stream: (id, socket) => this.attachStream(socket, id === 1 ? STREAM_STDOUT : STREAM_STDERR),
      exited: (code, signal) => this.onExit(code, signal, true),
      lost: (why) => {
        if (this.pidValue === undefined) return this.lostBeforeStarted(why);
        // Its exit status is gone: kill what is left and report that.
        this.signalGroup('SIGKILL');
        this.startFailure = { error: `${why}; the task was killed and its exit status is unknown`, exitCode: 125 };
        this.onExit(null, 'SIGKILL');
        for (const st of this.streams) st.destroy();
        this.processClosed = true;
        this.endLog();
      },
    });
  }

  /**
   * loom-spawner died after it was asked to start the task and before it
   * said whether it had: the task may be running with nobody watching it. It
   * is found by the variables in its environment and killed (by the reaper)
   * before the start is reported failed, so a retry never runs beside it.
   */
  private lostBeforeStarted(why: string): void {
    const failed = () => this.failStart({ error: `cannot start task: ${why}`, exitCode: 126 });
    const id = this.req.env.LOOM_TASK_ID;
    const reaper = this.opts.reaper;
    if (!reaper || !id) return failed();
    void reaper.killTask(id, this.req.env.LOOM_ATTEMPT ?? '').then((groups) => {
      if (groups > 0) this.opts.log?.(`task ${id}: killed ${groups} process group(s) started before loom-spawner died`);
      failed();
    });
  }

  /** Past notAfterMs (the node's fence deadline): never started; the executor hands the task back. */
  private refuseLate(): void {
    this.stoppedFor = 'fence';
    this.failStart({ error: 'node fenced before the task started', exitCode: 0 });
  }

  /** Starts the task with Node's spawn (fork + exec). */
  private spawnHere(argv: string[], cwd: string, env: Record<string, string>): void {
    const command = argv[0];
    const child = spawn(command, argv.slice(1), {
      cwd,
      env,
      detached: true, // setsid: pgid = pid, so the whole group can be signalled
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    if (child.pid === undefined) {
      // ENOENT/EACCES etc. arrive as an 'error' event on the next tick.
      child.once('error', (err) => this.failStart(describeSpawnError(err, this.req.argv[0])));
      return;
    }
    // Node's spawn has no priority option: the task has exec'd already and
    // runs at the node's priority for the moment until this call (a child it
    // forks in that moment keeps it). loom-spawner sets it before the exec.
    const why = lowerTaskPriority(child.pid, this.opts.taskNice ?? 0);
    if (why) this.opts.log?.(why);
    child.on('error', (err) => this.opts.log?.(`task ${child.pid}: ${err.message}`));
    this.streams.push(child.stdout!, child.stderr!);
    this.onStarted(child.pid);
    this.pipeOutput(child.stdout!, STREAM_STDOUT);
    this.pipeOutput(child.stderr!, STREAM_STDERR);
    child.once('exit', (code, signal) => this.onExit(code, signal));
    child.once('close', () => {
      this.processClosed = true;
      this.endLog();
    });
  }

  private onStarted(pid: number): void {
    this.pidValue = pid;
    // Races the task's first instructions: see "Placement race" in cgroup.ts.
    if (!this.joinedByWrapper) this.limited?.attach(pid);
    this.opts.reaper?.addTask(pid, { tagged: true });
    const grace = this.deferredGraceMs;
    this.deferredGraceMs = undefined;
    if (grace !== undefined) this.terminate(grace);
  }

  /** A stream from the spawner: the output is complete when both have ended and the task exited. */
  private attachStream(stream: Readable, id: typeof STREAM_STDOUT | typeof STREAM_STDERR): void {
    this.streams.push(stream);
    this.pipeOutput(stream, id);
    stream.resume();
    const closed = () => {
      if (++this.streamsClosed === 2) this.maybeClosed();
    };
    // A task that printed nothing may have closed its end before we got here.
    if (stream.closed || stream.destroyed) closed();
    else stream.once('close', closed);
  }

  private maybeClosed(): void {
    if (this.streamsClosed < 2 || !this.exited || this.processClosed) return;
    this.processClosed = true;
    this.endLog();
  }

  private openLog(): void {
    const sink = new OutputSink({
      logPath: this.req.logPath,
      tailBytes: this.req.tailBytes,
      maxLogBytes: this.req.maxLogBytes,
      // Disk full, permissions...: the task keeps running (its exit status
      // still matters); output only goes to the tails from then on.
      log: this.opts.log,
      pause: () => this.streams.forEach((st) => st.pause()),
      resume: () => this.streams.forEach((st) => st.resume()),
      onProgress: () => this.emitProgress(),
    });
    this.sink = sink;
    void sink.closed.then(() => {
      this.logClosed = true;
      this.settle();
    });
  }

  private pipeOutput(stream: Readable, id: typeof STREAM_STDOUT | typeof STREAM_STDERR): void {
    stream.on('data', (chunk: Buffer) => this.sink?.write(id, chunk));
  }

  /** groupKilled: loom-spawner killed the rest of the group before reporting the exit. */
  private onExit(code: number | null, signal: NodeJS.Signals | null, groupKilled = false): void {
    this.exited = true;
    if (code !== null) this.exitCode = code;
    if (signal !== null) this.exitSignal = signal;
    clearTimeout(this.timeoutTimer);
    this.stopper.settle();
    // The leader is gone; anything it left behind in its group (background
    // jobs) would hold our pipes open and outlive the task: kill it.
    if (!groupKilled) this.signalGroup('SIGKILL');
    // A confined task's cgroup holds all it started, also what left its
    // process group and session (setsid): kill that too.
    if (this.identity) void this.limited?.kill();
    if (this.pidValue !== undefined) this.opts.reaper?.removeTask(this.pidValue);
    this.maybeClosed();
  }

  /** SIGTERM now, SIGKILL after graceMs; a later call may only bring the SIGKILL forward. */
  private terminate(graceMs: number): void {
    if (this.exited) return;
    if (this.pidValue === undefined) {
      this.deferredGraceMs = Math.min(this.deferredGraceMs ?? graceMs, graceMs);
      return;
    }
    this.stopper.stop(graceMs);
  }

  private signalGroup(signal: NodeJS.Signals): void {
    const pid = this.pidValue;
    if (pid === undefined) return;
    if (!this.exited) this.killedByRunner = true;
    try {
      process.kill(-pid, signal);
    } catch {
      // ESRCH: the group is already empty.
    }
  }

  private failStart(failure: StartFailure): void {
    if (this.startFailure) return;
    this.startFailure = failure;
    clearTimeout(this.timeoutTimer);
    for (const st of this.streams) st.destroy();
    this.processClosed = true;
    this.endLog();
  }

  private endLog(): void {
    if (!this.sink || this.logClosed) return this.settle();
    void this.sink.end();
  }

  private settle(): void {
    if (this.settled || !this.processClosed || (this.sink && !this.logClosed)) return;
    this.settled = true;
    const result = this.result();
    this.takeResult(result);
    const finish = () => {
      this.resolveDone(result);
      this.emitProgress();
      this.listeners.clear();
    };
    const limited = this.limited;
    const identity = this.identity;
    if (!limited) {
      identity?.release();
      return finish();
    }
    // Read the group's OOM count and remove the group before reporting.
    const exit = { signal: result.signal, exitCode: result.exitCode, killedByRunner: this.killedByRunner };
    void limited.finish(exit).then((oom) => {
      // The group is gone with everything in it: the uid may go to another task.
      identity?.release();
      if (oom && !result.error) result.oomKilled = true;
      result.finishedAtMs = Date.now();
      finish();
    });
  }

  /** Reads the task's $LOOM_RESULT before its scratch dir goes. */
  private takeResult(result: RunResult): void {
    if (!this.resultPath || result.error) return;
    const read = readResultFile(this.resultPath, this.identity?.uid);
    if (read.result) result.result = read.result;
    if (read.error) result.resultError = read.error;
    if (!this.identity) fs.rmSync(this.resultPath, { force: true });
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
    if (this.startFailure) {
      base.error = this.startFailure.error;
      base.errorExitCode = this.startFailure.exitCode;
      // Refused as too late: the executor hands the task back, records no failure.
      if (this.stoppedFor === 'fence') base.stoppedFor = 'fence';
      return base;
    }
    if (this.exitCode !== undefined) base.exitCode = this.exitCode;
    if (this.exitSignal !== undefined) base.signal = this.exitSignal;
    if (this.stoppedFor !== undefined) base.stoppedFor = this.stoppedFor;
    return base;
  }

  private emitProgress(): void {
    notifyProgress(this.listeners, this.opts.log);
  }
}

/** Failures we can tell before spawning: no command, a missing cwd. */
function checkRequest(req: RunRequest): StartFailure | undefined {
  if (req.argv.length === 0 || req.argv[0] === '') return { error: 'empty command', exitCode: 127 };
  if (!req.cwd) return undefined;
  // spawn reports a missing cwd as ENOENT, indistinguishable from a missing command.
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(req.cwd);
  } catch {
    return { error: `working directory not found: ${req.cwd}`, exitCode: 126 };
  }
  if (!stat.isDirectory()) return { error: `working directory is not a directory: ${req.cwd}`, exitCode: 126 };
  return undefined;
}

function describeSpawnError(err: NodeJS.ErrnoException, command: string): StartFailure {
  switch (err.code) {
    case 'ENOENT':
      return { error: `command not found: ${command}`, exitCode: 127 };
    case 'EACCES':
      return { error: `permission denied: ${command}`, exitCode: 126 };
    default:
      return { error: `cannot start ${command}: ${err.message}`, exitCode: 126 };
  }
}
