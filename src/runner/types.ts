/**
 * What the node asks of a runner, and what it gets back. Runners know
 * nothing of etcd; they run one attempt of one task and report.
 */

export interface RunRequest {
  /** argv[0] is resolved on env.PATH; no shell. */
  argv: string[];
  /** The complete environment the task sees (nothing is inherited). */
  env: Record<string, string>;
  /** Working directory; '' = the runner's default (the node's data dir). */
  cwd: string;
  /** Framed log file (see log-file.ts) this attempt's output is written to. */
  logPath: string;
  /** 0 = none. On expiry: SIGTERM, killGraceMs, SIGKILL; result.timedOut. */
  timeoutMs: number;
  killGraceMs: number;
  /** Bytes of each stream kept in memory for the result (the retained tail). */
  tailBytes: number;
  /** Cap of the log file (see OutputSink); undefined = none. */
  maxLogBytes?: number;
  /**
   * Memory limit in bytes (undefined or 0 = none): a cgroup where the node can create one
   * (a task over it is OOM-killed and reported oomKilled), else RLIMIT_AS (see cgroup.ts).
   */
  memoryBytes?: number;
  /** CPU limit in cores, fractional (undefined or 0 = none): a cgroup CPU quota, if available. */
  cpus?: number;
  /** Process limit of a confined task (undefined = the runner's default). */
  pids?: number;
  /** The task's owner (its client identity): the account it runs as under --run-as owner. */
  owner?: string;
  /**
   * Wall-clock ms (the node's fence deadline) past which the task must not
   * start. A runner that starts it asynchronously checks it at the start;
   * one that is refused reports stoppedFor 'fence' with an error.
   */
  notAfterMs?: number;
}

export type StopReason = 'cancel' | 'shutdown' | 'drain' | 'fence';

export interface RunResult {
  /** Set when the process exited normally. */
  exitCode?: number;
  /** Set when the process was killed by a signal, e.g. "SIGKILL". */
  signal?: string;
  timedOut: boolean;
  /** Killed for exceeding its memory limit (cgroup or container OOM). */
  oomKilled?: boolean;
  /** Why the runner stopped it, if it did (stop() was called). */
  stoppedFor?: StopReason;
  /** The task could not start (e.g. "command not found: foo"). */
  error?: string;
  /** Exit status a shell would report for `error` (127 not found, 126 not executable). */
  errorExitCode?: number;
  /**
   * The container engine could not be reached before a container was
   * started: nothing ran. The task may go to another node; it did not fail.
   */
  engineUnavailable?: boolean;
  /** How the attempt ended, in words, when the kind says it better than its exit status (e.g. "HTTP 404 Not Found"). */
  reason?: string;
  /** What the task left in $LOOM_RESULT (see result-file.ts), if anything. */
  result?: Buffer;
  /** Why a $LOOM_RESULT that was there was not taken (too large, a symlink, ...). */
  resultError?: string;
  stdoutTail: Buffer;
  stderrTail: Buffer;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  /** Bytes printed on each stream in all (the tails keep the last of them). */
  stdoutBytes?: number;
  stderrBytes?: number;
  startedAtMs: number;
  finishedAtMs: number;
}

export interface RunHandle {
  /** Process id (and process group id) of the task, once started. */
  readonly pid: number | undefined;
  /** Settles once the process has exited and the log file is flushed and closed. Never rejects. */
  readonly done: Promise<RunResult>;
  /**
   * Stop the task: SIGTERM to its process group, then SIGKILL after graceMs
   * (graceMs 0 = SIGKILL at once). Idempotent; a task already gone is fine.
   */
  stop(reason: StopReason, graceMs: number): void;
  /** Bytes written to the log file so far (framing included). */
  readonly logBytes: number;
  /** Subscribe to "more bytes are in the log file" / "exited". Returns unsubscribe. */
  onProgress(fn: () => void): () => void;
}

export interface Runner {
  start(req: RunRequest): RunHandle;
}
