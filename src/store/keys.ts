/**
 * The key schema — the single place that builds or parses etcd keys.
 *
 *   /task/<id>                               Task record (protobuf)
 *   /task/status/queued/<ppp>/r<round10>/<id>  queued; value = record snapshot
 *   /task/status/queued/<ppp>/<id>           the same, of a task without a round
 *   /task/status/running/<node>/<id>         running; value = owner lease id
 *   /task/status/<terminal>/<ms13>/<id>      completed|failed|cancelled|lost
 *   /node/<name>                             NodeInfo, under the node's lease
 *   /cancel/<node>/<id>                      cancel request for a running task
 *   /tail/<id>                               LogTail: retained output tail
 *   /control/<node>                          NodeControl: drain wishes, kept across restarts
 *   /job/<job-id>                            Job record
 *   /jobname/<name>                          job id (names are unique)
 *   /jobopen/<job-id>                        empty; while the job is BLOCKED, SUBMITTING or ACTIVE
 *   /jobdone/<job-id>/<index12>              state name; written with the task's terminal record
 *   /jobwait/<upstream-id>/<downstream-id>   empty; downstream waits on upstream
 *   /jobwriter/<job-id>                      the lease of the node writing the job's tasks (under that lease)
 *   /tasktime/<bucket>                       empty; some task id may fall in this 4 s bucket
 *   /turn/<ppp>/<owner>                      "<round> <id>": the owner's last round taken in the band
 *   /queuedby/<owner>/<id>                   empty; while the task is queued (a count of an owner's queue)
 *   /queuecap/<owner>                        the owner's queued count as of its last capped submit (a guard)
 *   /autoscale/<group>/leader                the node evaluating the group's policy (under its lease)
 *   /autoscale/<group>/state                 JSON: the group's size, cooldowns, last decision (written by the leader)
 *
 * <ppp> is 999 - priority, zero-padded, so a prefix scan yields higher
 * priority first. Within a priority, <round10> is the owner's turn
 * (core/turns.ts), zero-padded: each owner's k-th waiting task sorts with the
 * others' k-th. Task ids are UUIDv7, whose text sorts by creation time, so
 * within a round a scan is submit order. A task with no round (queued by an
 * older node, or claimed in its own submit and then requeued) keeps the old
 * key, which sorts before every round of its band ('r' is after the hex
 * digits an id starts with): old keys stay readable and run first, in FIFO
 * order, as they would have. <ms13> is the finish time in ms, zero-padded to
 * 13 digits so string order is time order.
 *
 * Records live in [/task/0, /task/g): ids are lower-case hex, which keeps
 * "/task/status/" outside the record range.
 *
 * /tasktime/ keys are hints for listing records in id order: etcd 3.4 walks
 * every key of a range even when the range has a limit, so a list bounds its
 * range by the next buckets that hold tasks (see TaskQueries.list). A missing
 * or stale hint costs time, never a task: the ranges still tile the key space.
 *
 * Every key is under an optional root (e.g. "/loom-test-1a2b") so that tests
 * can share one etcd and each own a prefix.
 */
import { invalid } from '../core/errors';
import { stateName, TaskState } from '../core/lifecycle';
import { PRIORITY_MAX } from '../core/spec';
import { ROUND_DIGITS } from '../core/turns';

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isTaskId(text: string): boolean {
  return ID.test(text);
}

export function checkTaskId(text: string): string {
  if (!ID.test(text)) throw invalid(`"${text.slice(0, 80)}" is not a task id (a UUID)`);
  return text;
}

export function pad(n: number, width: number): string {
  const s = String(Math.max(0, Math.trunc(n)));
  return s.length >= width ? s : '0'.repeat(width - s.length) + s;
}

export const TERMINAL_KEY_STATES = [
  TaskState.COMPLETED,
  TaskState.FAILED,
  TaskState.CANCELLED,
  TaskState.LOST,
] as const;

export class Keys {
  readonly taskRangeStart: string;
  readonly taskRangeEnd: string;
  readonly queuedPrefix: string;
  readonly runningPrefix: string;
  readonly statusPrefix: string;
  readonly nodePrefix: string;
  readonly cancelPrefix: string;
  readonly timeMarkerPrefix: string;
  readonly turnPrefix: string;
  readonly queuedByPrefix: string;

  constructor(readonly root = '') {
    if (root !== '' && !/^\/[A-Za-z0-9_.-]+$/.test(root)) {
      throw invalid(`invalid key root "${root}"`);
    }
    this.taskRangeStart = `${root}/task/0`;
    this.taskRangeEnd = `${root}/task/g`;
    this.statusPrefix = `${root}/task/status/`;
    this.queuedPrefix = `${root}/task/status/queued/`;
    this.runningPrefix = `${root}/task/status/running/`;
    this.nodePrefix = `${root}/node/`;
    this.cancelPrefix = `${root}/cancel/`;
    this.timeMarkerPrefix = `${root}/tasktime/`;
    this.turnPrefix = `${root}/turn/`;
    this.queuedByPrefix = `${root}/queuedby/`;
  }

  task(id: string): string {
    return `${this.root}/task/${id}`;
  }

  /** The hint that task ids exist in a time bucket (see timeBucketOf). */
  timeMarker(bucket: string): string {
    return `${this.timeMarkerPrefix}${bucket}`;
  }

  /** The bucket a time marker key names. */
  parseTimeMarker(key: string): string | undefined {
    return strip(key, this.timeMarkerPrefix);
  }

  tail(id: string): string {
    return `${this.root}/tail/${id}`;
  }

  /** The queued key of a task; round 0 (none) gives the old form, first in its band. */
  queued(priority: number, id: string, round = 0): string {
    const band = this.band(priority);
    return round > 0 ? `${band}r${pad(round, ROUND_DIGITS)}/${id}` : `${band}${id}`;
  }

  /** Prefix of every queued key of a priority. */
  band(priority: number): string {
    return `${this.queuedPrefix}${pad(PRIORITY_MAX - priority, 3)}/`;
  }

  /** [start, end) of a band's queued keys that have a round, in round order. */
  bandRounds(priority: number): [string, string] {
    const band = this.band(priority);
    return [`${band}r`, `${band}s`];
  }

  /** Present while the owner's task is queued: the owner's queue is counted by this prefix. */
  queuedBy(owner: string, id: string): string {
    return `${this.queuedByOf(owner)}${id}`;
  }

  queuedByOf(owner: string): string {
    if (owner.includes('/')) throw invalid(`owner "${owner.slice(0, 80)}" holds a '/'`);
    return `${this.queuedByPrefix}${owner}/`;
  }

  /** Guard of an owner's capped submits (--max-queued-per-owner). */
  queueCap(owner: string): string {
    if (owner.includes('/')) throw invalid(`owner "${owner.slice(0, 80)}" holds a '/'`);
    return `${this.root}/queuecap/${owner}`;
  }

  /** An owner's last turn in a band (core/turns.ts); identities hold no '/'. */
  turn(priority: number, owner: string): string {
    if (owner.includes('/')) throw invalid(`owner "${owner.slice(0, 80)}" holds a '/'`);
    return `${this.turnPrefix}${pad(PRIORITY_MAX - priority, 3)}/${owner}`;
  }

  running(node: string, id: string): string {
    return `${this.runningPrefix}${node}/${id}`;
  }

  runningOf(node: string): string {
    return `${this.runningPrefix}${node}/`;
  }

  terminal(state: TaskState, finishedAtMs: number, id: string): string {
    return `${this.statusPrefix}${stateName(state)}/${pad(finishedAtMs, 13)}/${id}`;
  }

  terminalPrefix(state: TaskState): string {
    return `${this.statusPrefix}${stateName(state)}/`;
  }

  /** The status index key a record in this state must have. */
  statusKeyFor(t: { id: string; state: TaskState; node: string; priority: number; finishedAtMs: number; queueRound: number }): string {
    switch (t.state) {
      case TaskState.QUEUED:
        return this.queued(t.priority, t.id, t.queueRound);
      case TaskState.RUNNING:
        return this.running(t.node, t.id);
      default:
        return this.terminal(t.state, t.finishedAtMs, t.id);
    }
  }

  node(name: string): string {
    return `${this.nodePrefix}${name}`;
  }

  cancel(node: string, id: string): string {
    return `${this.cancelPrefix}${node}/${id}`;
  }

  control(node: string): string {
    return `${this.root}/control/${node}`;
  }

  /** Every group's leader and state keys. */
  get autoscalePrefix(): string {
    return `${this.root}/autoscale/`;
  }

  autoscaleLeader(group: string): string {
    return `${this.autoscalePrefix}${group}/leader`;
  }

  autoscaleState(group: string): string {
    return `${this.autoscalePrefix}${group}/state`;
  }

  job(id: string): string {
    return `${this.root}/job/${id}`;
  }

  get jobPrefix(): string {
    return `${this.root}/job/`;
  }

  jobName(name: string): string {
    return `${this.root}/jobname/${name}`;
  }

  jobOpen(id: string): string {
    return `${this.root}/jobopen/${id}`;
  }

  get jobOpenPrefix(): string {
    return `${this.root}/jobopen/`;
  }

  jobDone(jobId: string, index: number): string {
    return `${this.root}/jobdone/${jobId}/${pad(index, 12)}`;
  }

  jobDoneOf(jobId: string): string {
    return `${this.root}/jobdone/${jobId}/`;
  }

  /** Held (under its lease) by the one node writing a SUBMITTING job's tasks. */
  jobWriter(id: string): string {
    return `${this.root}/jobwriter/${id}`;
  }

  jobWait(upstream: string, downstream: string): string {
    return `${this.root}/jobwait/${upstream}/${downstream}`;
  }

  jobWaitOf(upstream: string): string {
    return `${this.root}/jobwait/${upstream}/`;
  }

  cancelOf(node: string): string {
    return `${this.cancelPrefix}${node}/`;
  }

  // ---- parsers: each returns undefined for a key of another shape ----

  parseTask(key: string): string | undefined {
    const rest = strip(key, `${this.root}/task/`);
    return rest !== undefined && ID.test(rest) ? rest : undefined;
  }

  /** A queued key of either form; round 0 for the old one. */
  parseQueued(key: string): { priority: number; round: number; id: string } | undefined {
    const m = /^(\d{3})\/(?:r(\d{10})\/)?([^/]+)$/.exec(strip(key, this.queuedPrefix) ?? '');
    if (!m || !ID.test(m[3])) return undefined;
    return { priority: PRIORITY_MAX - Number(m[1]), round: m[2] === undefined ? 0 : Number(m[2]), id: m[3] };
  }

  parseRunning(key: string): { node: string; id: string } | undefined {
    const m = /^([^/]+)\/([^/]+)$/.exec(strip(key, this.runningPrefix) ?? '');
    if (!m || !ID.test(m[2])) return undefined;
    return { node: m[1], id: m[2] };
  }

  parseStatus(key: string): { state: string; id: string } | undefined {
    const rest = strip(key, this.statusPrefix);
    if (rest === undefined) return undefined;
    const parts = rest.split('/');
    const id = parts[parts.length - 1];
    if (parts.length !== 3 || !ID.test(id)) return undefined;
    return { state: parts[0], id };
  }

  parseNode(key: string): string | undefined {
    const rest = strip(key, this.nodePrefix);
    return rest && !rest.includes('/') ? rest : undefined;
  }

  parseCancel(key: string): { node: string; id: string } | undefined {
    const m = /^([^/]+)\/([^/]+)$/.exec(strip(key, this.cancelPrefix) ?? '');
    if (!m || !ID.test(m[2])) return undefined;
    return { node: m[1], id: m[2] };
  }
}

export { jobTaskId, jobTaskIdRange } from '../core/ids';

function strip(key: string, prefix: string): string | undefined {
  return key.startsWith(prefix) ? key.slice(prefix.length) : undefined;
}
