/**
 * The checker: reads every key in etcd and the external execution log, and
 * checks the invariants loom promises. Pure (check()) except readStore().
 *
 * Sources:
 *  - the store: /task/<id> records (state, attempt, history of attempts with
 *    node, startedAtMs, finishedAtMs, outcome) and /task/status/** index keys;
 *  - the log: one `start` line per execution, one `end` line when it ran to
 *    its end (see tasks.ts); an execution is (task, attempt, node);
 *  - the process sampler (sampler.ts): when each execution was last seen
 *    alive, and executions provably alive at the same instant.
 *
 * Rules (each violation names its rule):
 *  record              every submitted task has exactly one decodable record,
 *                      no other records; its history has one entry per attempt
 *  stuck               nothing is QUEUED or RUNNING at the end, no queued or
 *                      running index key is left
 *  index               each record has exactly one status index key, the one its
 *                      state implies (queued/<999-prio>/[r<round>/]id, running/<node>/id,
 *                      <terminal>/<finishedAtMs 13 digits>/id); every index key
 *                      belongs to a record in that state
 *  state               the terminal state is the one the task's kind leads to
 *                      (COMPLETED, or FAILED for the always-failing kind), and
 *                      the log shows the final attempt producing that result
 *  completed-twice     at most one attempt recorded "exit 0", and only the last;
 *                      no execution starts after the attempt that completed it
 *  overlap             no two executions of one task overlap in time (rule below)
 *  unexplained-restart every attempt that was followed by another ended with a
 *                      recorded node loss ("node lost", "node X fenced|shut
 *                      down|drained"), a retryable failure (the exit code
 *                      this task kind gives on that attempt), or a claim
 *                      handed back because an etcd error lost its reply
 *                      ("claim outcome lost ...") or, claimed ahead of a
 *                      free slot, because no slot freed in time ("not
 *                      started on node X ..."), that never ran
 *  outcome             no result recorded for an execution loom killed (e.g.
 *                      "killed by SIGKILL"): our tasks only ever exit 0/3/7
 *  execution-unrecorded every execution in the log is an attempt the record
 *                      knows, on the node the record names; no attempt ran twice
 *  outlived-node       no execution started by a node incarnation that was
 *                      SIGKILLed, SIGSTOPped or cut off from etcd or from the
 *                      rest of the cluster (started
 *                      before the node was restarted / resumed / healed) was
 *                      alive (end line or sampler) later than the fault's
 *                      start + lease TTL: the reaper must kill it at once
 *                      (SIGKILL) or by the fence deadline, which is before the
 *                      lease can expire (SIGSTOP); a cut-off node must fence
 *                      itself by then (partition)
 *  after-recorded-end  no execution starts, or is seen alive, or writes its end
 *                      line, after the time loom recorded its attempt as over
 *                      (history finishedAtMs): e.g. a node that spawns a task
 *                      from a claim whose response it processed after its
 *                      lease was gone and the task requeued
 *  orphan              no task process is left once every node has stopped
 *  recovery            every faulted node/member came back (a paused or
 *                      cut-off node rejoined under a new lease)
 *  log                 every log line parses (appends are atomic)
 *
 * The overlap rule. An execution's span is [start line, end]. Its end is:
 *  - its end line, if it wrote one;
 *  - otherwise (it was killed, or its node died) the end is unknown. We take
 *    the finishedAtMs of that attempt in the record's history: the time loom
 *    recorded the attempt as over (the node's release after killing it, or
 *    the survivor's requeue after the lease was gone). If loom is right, the
 *    process was dead by then, and the next claim (hence the next start line)
 *    comes after it, so a correct run never trips on this bound. If the
 *    history entry is missing (trimmed), the next attempt's claim time
 *    (startedAtMs) is used: the moment loom considered the task free again.
 *    If nothing bounds it, the end is +infinity (any later start overlaps).
 *  - in both cases, raised to the last time the sampler saw it alive (a
 *    process seen alive after loom said it was over is evidence against loom).
 * Two executions overlap when the later one started before the earlier one's
 * end. All times are CLOCK_REALTIME on one machine (date +%s%N in tasks,
 * Date.now() in nodes and the harness), so no clock-skew allowance is needed.
 * The sampler's concurrent sightings are reported as overlaps directly.
 */
import { Etcd3 } from 'etcd3';
import { Attempt, Task, TaskState } from '../../src/gen/loom';
import { FaultRecord } from './faults';
import { ConcurrentSighting, LiveTaskProcess, Observation } from './sampler';
import { exitCodeFor, LogLine, ParsedLog, PlannedTask } from './tasks';

export type Rule =
  | 'record'
  | 'stuck'
  | 'index'
  | 'state'
  | 'completed-twice'
  | 'overlap'
  | 'unexplained-restart'
  | 'outcome'
  | 'execution-unrecorded'
  | 'outlived-node'
  | 'after-recorded-end'
  | 'orphan'
  | 'recovery'
  | 'log';

export interface Violation {
  rule: Rule;
  task?: string;
  detail: string;
}

export interface StoreKv {
  key: string;
  value: Buffer;
  lease: string;
}

export interface SubmittedTask {
  id: string;
  plan: PlannedTask;
}

export interface CheckInput {
  kvs: StoreKv[];
  log: ParsedLog;
  tasks: SubmittedTask[];
  observations: Observation[];
  concurrent: ConcurrentSighting[];
  /** Task processes still alive after every node stopped. */
  leftovers: LiveTaskProcess[];
  faults: FaultRecord[];
  leaseTtlMs: number;
  /**
   * When the store was read. The cluster runs on while it is stopped; for a
   * task that was not terminal in the snapshot (already a violation), later
   * log lines and sightings are ignored: the store cannot explain them.
   */
  snapshotAtMs?: number;
}

export type RestartCause = 'node lost' | 'node fenced' | 'node shut down' | 'node drained' | 'retry' | 'claim lost' | 'not started';

export interface CheckStats {
  tasks: number;
  states: Record<string, number>;
  claims: number;
  executions: number;
  finishedExecutions: number;
  killedExecutions: number;
  claimedNeverStarted: number;
  reExecutedTasks: number;
  extraAttempts: number;
  causes: Record<string, number>;
  /** Node-loss restarts per fault ("#3 pause-node w1"), plus "unattributed". */
  byFault: Record<string, number>;
  /** Tasks whose body ran to its end more than once (an earlier result was lost with its node). */
  completedRunsRepeated: number;
  storeKeys: number;
  logLines: number;
  sampledExecutions: number;
}

export interface CheckResult {
  violations: Violation[];
  warnings: string[];
  stats: CheckStats;
}

const TERMINAL = new Set([TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.LOST]);
const STATE_KEY: Record<number, string> = {
  [TaskState.COMPLETED]: 'completed',
  [TaskState.FAILED]: 'failed',
  [TaskState.CANCELLED]: 'cancelled',
  [TaskState.LOST]: 'lost',
};
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const RECORD_KEY = new RegExp(`^/task/(${UUID})$`);
// A queued key may carry its owner's round between priority and id (Keys.queued).
const STATUS_KEY = new RegExp(`^/task/status/(queued|running|completed|failed|cancelled|lost)/([^/]+)/(?:r\\d{10}/)?(${UUID})$`);

function pad(n: number, width: number): string {
  return String(Math.max(0, Math.trunc(n))).padStart(width, '0');
}

function stateName(s: TaskState): string {
  return TaskState[s] ?? String(s);
}

/** The one index key a record in its state must have (README key schema). */
export function expectedStatusKey(t: Task): string {
  switch (t.state) {
    case TaskState.QUEUED:
      return `/task/status/queued/${pad(999 - (t.spec?.priority ?? 100), 3)}/${t.queueRound > 0 ? `r${pad(t.queueRound, 10)}/` : ''}${t.id}`;
    case TaskState.RUNNING:
      return `/task/status/running/${t.node}/${t.id}`;
    default:
      return `/task/status/${STATE_KEY[t.state] ?? 'unknown'}/${pad(t.finishedAtMs, 13)}/${t.id}`;
  }
}

/** Classifies a history outcome of an attempt that was followed by another. */
/** The outcome loom records when it hands back a claim whose reply an etcd error lost (node.ts reconcileOwn). */
const CLAIM_LOST = /^claim outcome lost in an etcd error/;
/** A task claimed ahead of a free slot, handed back because no slot freed in time (executor.ts watchStale). */
const NOT_STARTED = /^not started on node (\S+): no slot freed within \d+ ms$/;

function restartCause(a: Attempt): RestartCause | undefined {
  if (a.outcome === 'node lost') return 'node lost';
  if (CLAIM_LOST.test(a.outcome)) return 'claim lost';
  const ns = NOT_STARTED.exec(a.outcome);
  if (ns && ns[1] === a.node) return 'not started';
  const m = /^node (\S+) (fenced|shut down|drained)$/.exec(a.outcome);
  if (m && m[1] === a.node) return `node ${m[2]}` as RestartCause;
  if (/^exit [1-9]\d*$/.test(a.outcome)) return 'retry';
  return undefined;
}

interface Exec {
  attempt: number;
  node: string;
  pid: number;
  start?: LogLine;
  end?: LogLine;
  obs?: Observation;
  /** Span used by the overlap rule. */
  s: number;
  e: number;
  endSource: string;
}

const fmt = (ms: number) => (Number.isFinite(ms) ? new Date(ms).toISOString().slice(11, 23) : 'unbounded');

export function check(input: CheckInput): CheckResult {
  const violations: Violation[] = [];
  const warnings: string[] = [];
  const v = (rule: Rule, task: string | undefined, detail: string) => violations.push({ rule, task, detail });
  const ttl = input.leaseTtlMs;

  // ---- store ----
  const records = new Map<string, Task>();
  const statusById = new Map<string, { key: string; state: string }[]>();
  let leftoverQueued = 0;
  let leftoverRunning = 0;
  for (const kv of input.kvs) {
    if (!kv.key.startsWith('/task/')) continue;
    const rm = RECORD_KEY.exec(kv.key);
    if (rm) {
      try {
        const t = Task.decode(kv.value);
        if (t.id !== rm[1]) v('record', rm[1], `record under ${kv.key} holds id "${t.id}"`);
        records.set(rm[1], t);
      } catch (err) {
        v('record', rm[1], `record ${kv.key} does not decode: ${(err as Error).message}`);
      }
      continue;
    }
    const sm = STATUS_KEY.exec(kv.key);
    if (sm) {
      const list = statusById.get(sm[3]) ?? [];
      list.push({ key: kv.key, state: sm[1] });
      statusById.set(sm[3], list);
      if (sm[1] === 'queued') leftoverQueued++;
      if (sm[1] === 'running') leftoverRunning++;
      continue;
    }
    v('index', undefined, `unexpected key under /task/: ${kv.key}`);
  }
  if (leftoverQueued || leftoverRunning) {
    v('stuck', undefined, `${leftoverQueued} queued and ${leftoverRunning} running index keys left at the end`);
  }

  const byId = new Map(input.tasks.map((t) => [t.id, t]));
  for (const id of records.keys()) if (!byId.has(id)) v('record', id, 'a record for a task the harness never submitted');
  for (const [id, list] of statusById) {
    if (!records.has(id)) v('index', id, `index key(s) without a record: ${list.map((x) => x.key).join(', ')}`);
  }

  // ---- log ----
  for (const b of input.log.bad) v('log', undefined, `log line ${b.lineNo} does not parse: ${JSON.stringify(b.text)}`);
  const linesById = new Map<string, LogLine[]>();
  for (const l of input.log.lines) {
    const list = linesById.get(l.id) ?? [];
    list.push(l);
    linesById.set(l.id, list);
  }
  for (const id of linesById.keys()) if (!byId.has(id)) v('log', id, 'log lines for a task the harness never submitted');
  const obsById = new Map<string, Observation[]>();
  for (const o of input.observations) {
    const list = obsById.get(o.id) ?? [];
    list.push(o);
    obsById.set(o.id, list);
  }

  const stats: CheckStats = {
    tasks: input.tasks.length,
    states: {},
    claims: 0,
    executions: 0,
    finishedExecutions: 0,
    killedExecutions: 0,
    claimedNeverStarted: 0,
    reExecutedTasks: 0,
    extraAttempts: 0,
    causes: {},
    byFault: {},
    completedRunsRepeated: 0,
    storeKeys: input.kvs.length,
    logLines: input.log.lines.length,
    sampledExecutions: input.observations.length,
  };
  const unattributed: string[] = [];
  const budgetWarnings: string[] = [];

  for (const sub of input.tasks) {
    const id = sub.id;
    const kind = sub.plan.kind;
    const t = records.get(id);
    if (!t) {
      v('record', id, `no record for submitted task ${sub.plan.name}`);
      continue;
    }
    const sname = stateName(t.state);
    stats.states[sname] = (stats.states[sname] ?? 0) + 1;
    stats.claims += t.attempt;

    // index
    const want = expectedStatusKey(t);
    const have = (statusById.get(id) ?? []).map((x) => x.key);
    if (have.length !== 1 || have[0] !== want) {
      v('index', id, `${sname} record (finishedAtMs ${t.finishedAtMs}) should have exactly index key ${want}; has [${have.join(', ')}]`);
    }

    // state
    if (!TERMINAL.has(t.state)) {
      v('stuck', id, `${sub.plan.name} is ${sname} at the end (node ${t.node || '-'}, attempt ${t.attempt}, reason "${t.reason}")`);
    } else {
      const expected = kind === 'fail' ? TaskState.FAILED : TaskState.COMPLETED;
      if (t.state !== expected) {
        v('state', id, `${sub.plan.name} (${kind}) ended ${sname}, expected ${stateName(expected)} (reason "${t.reason}", exit ${t.exitCode ?? '-'}, signal "${t.signal}")`);
      }
      if (!(t.finishedAtMs > 0)) v('record', id, `terminal record has finishedAtMs ${t.finishedAtMs}`);
    }

    // history: one entry per attempt, in order (the oldest may be trimmed)
    const hist = new Map<number, Attempt>();
    let prev = 0;
    for (const a of t.history) {
      if (a.number <= prev) v('record', id, `history not in attempt order: ${t.history.map((h) => h.number).join(',')}`);
      prev = a.number;
      hist.set(a.number, a);
    }
    const oldestKept = t.history.length ? t.history[0].number : t.attempt + 1;
    const lastEnded = TERMINAL.has(t.state) ? t.attempt : t.attempt - (t.state === TaskState.RUNNING ? 1 : 0);
    for (let k = 1; k <= lastEnded; k++) {
      if (!hist.has(k) && !(k < oldestKept && t.history.length >= 20)) v('record', id, `history has no entry for attempt ${k} (record attempt ${t.attempt})`);
    }
    for (const a of t.history) if (a.number > t.attempt) v('record', id, `history entry for attempt ${a.number} > record attempt ${t.attempt}`);

    // outcomes
    const zeroes = t.history.filter((a) => a.outcome === 'exit 0');
    if (zeroes.length > 1 || (zeroes.length === 1 && zeroes[0].number !== t.attempt)) {
      v('completed-twice', id, `attempts ${zeroes.map((a) => `${a.number}@${a.node}`).join(', ')} recorded "exit 0" (record attempt ${t.attempt}, ${sname})`);
    }
    let restarted = 0;
    for (const a of t.history) {
      if (a.number < t.attempt) {
        if (a.outcome === 'exit 0') continue; // reported above
        const cause = restartCause(a);
        // A claim handed back as never started is explained only if it really never ran.
        const ran = (l: { attempt: number; node: string }) => l.attempt === a.number && l.node === a.node;
        if ((cause === 'claim lost' || cause === 'not started') && ((linesById.get(id) ?? []).some(ran) || (obsById.get(id) ?? []).some(ran))) {
          v('unexplained-restart', id, `attempt ${a.number} on ${a.node} was handed back as a claim that never started ("${a.outcome}"), but it ran`);
          continue;
        }
        if (!cause) {
          v('unexplained-restart', id, `attempt ${a.number} on ${a.node} ended "${a.outcome}" and the task was claimed again`);
          if (/kill|signal/i.test(a.outcome)) v('outcome', id, `a result was recorded for killed attempt ${a.number} on ${a.node}: "${a.outcome}"`);
          continue;
        }
        if (cause === 'retry') {
          const code = Number(a.outcome.slice(5));
          if (code !== exitCodeFor(kind, a.number)) {
            v('outcome', id, `attempt ${a.number} on ${a.node} recorded "${a.outcome}"; a ${kind} task exits ${exitCodeFor(kind, a.number)} on attempt ${a.number}`);
          }
        }
        restarted++;
        stats.causes[cause] = (stats.causes[cause] ?? 0) + 1;
        // A hand-back of a task that waited too long for a slot is no fault's doing.
        if (cause !== 'retry' && cause !== 'not started') {
          const f = attribute(input.faults, a, cause, ttl);
          const label = f ? `#${f.seq} ${f.kind} ${f.target}` : 'unattributed';
          stats.byFault[label] = (stats.byFault[label] ?? 0) + 1;
          if (!f) unattributed.push(`${id} attempt ${a.number} on ${a.node}: "${a.outcome}" at ${fmt(a.finishedAtMs)}`);
        }
      } else if (a.number === t.attempt && TERMINAL.has(t.state)) {
        const want = t.state === TaskState.COMPLETED ? 'exit 0' : t.state === TaskState.FAILED ? `exit ${exitCodeFor(kind, a.number)}` : undefined;
        if (want !== undefined && a.outcome !== want) {
          v('outcome', id, `final attempt ${a.number} on ${a.node} recorded "${a.outcome}" for a ${sname} task (expected "${want}")`);
        }
      }
    }
    if (restarted > 0) {
      stats.reExecutedTasks++;
      stats.extraAttempts += restarted;
    }
    if (kind === 'fail' && t.state === TaskState.FAILED) {
      const failures = t.history.filter((a) => a.outcome === `exit ${exitCodeFor(kind, a.number)}`).length;
      if (failures < sub.plan.retries + 1) {
        budgetWarnings.push(`${id}: FAILED after ${failures} failing run(s) of ${sub.plan.retries + 1} allowed (attempts lost to node failures used up its retries)`);
      }
    }

    // ---- executions from the log (+ sampler) ----
    const execs = new Map<string, Exec>();
    const keyOf = (attempt: number, node: string, pid: number) => `${attempt}@${node}#${pid}`;
    const cut = !TERMINAL.has(t.state) && input.snapshotAtMs !== undefined ? input.snapshotAtMs : Infinity;
    const taskLines = (linesById.get(id) ?? []).filter((l) => l.atMs <= cut);
    const taskObs = (obsById.get(id) ?? []).filter((o) => o.firstSeenMs <= cut);
    if (taskLines.length < (linesById.get(id) ?? []).length) {
      warnings.push(`${id} (not terminal in the store snapshot): log lines written after the snapshot were ignored`);
    }
    for (const l of taskLines) {
      const k = keyOf(l.attempt, l.node, l.pid);
      let e = execs.get(k);
      if (!e) {
        e = { attempt: l.attempt, node: l.node, pid: l.pid, s: NaN, e: NaN, endSource: '' };
        execs.set(k, e);
      }
      if (l.kind === 'start') {
        if (e.start) v('log', id, `two start lines for attempt ${l.attempt} on ${l.node} pid ${l.pid}`);
        e.start = l;
      } else {
        if (e.end) v('log', id, `two end lines for attempt ${l.attempt} on ${l.node} pid ${l.pid}`);
        e.end = l;
      }
    }
    const list = [...execs.values()];
    for (const e of list) {
      if (!e.start) v('log', id, `end line without a start line: attempt ${e.attempt} on ${e.node} (line ${e.end?.lineNo})`);
    }
    // Attach sampler observations (keyed by attempt@node).
    for (const o of taskObs) {
      const match = list.filter((e) => e.attempt === o.attempt && e.node === o.node);
      if (match.length > 0) {
        for (const e of match) e.obs = o;
      } else {
        // Seen alive but never logged a start (killed before its first echo): still an execution.
        list.push({ attempt: o.attempt, node: o.node, pid: o.pids[0], obs: o, s: NaN, e: NaN, endSource: '' });
      }
    }
    // Executions per attempt: one, on the node the record names.
    const perAttempt = new Map<number, Exec[]>();
    for (const e of list) {
      const l2 = perAttempt.get(e.attempt) ?? [];
      l2.push(e);
      perAttempt.set(e.attempt, l2);
    }
    for (const [attempt, es] of perAttempt) {
      if (es.length > 1) {
        v('execution-unrecorded', id, `attempt ${attempt} ran ${es.length} times: ${es.map((e) => `${e.node} pid ${e.pid}`).join(', ')}`);
      }
      const recNode = attempt === t.attempt ? t.node : hist.get(attempt)?.node;
      for (const e of es) {
        if (attempt > t.attempt || attempt < 1) {
          v('execution-unrecorded', id, `attempt ${attempt} ran on ${e.node} but the record has only ${t.attempt} attempt(s)`);
        } else if (recNode !== undefined && recNode !== e.node) {
          v('execution-unrecorded', id, `attempt ${attempt} ran on ${e.node} but the record says it was claimed by ${recNode}`);
        }
      }
    }
    stats.executions += list.length;
    stats.finishedExecutions += list.filter((e) => e.end).length;
    stats.killedExecutions += list.filter((e) => !e.end).length;
    stats.claimedNeverStarted += Math.max(0, t.attempt - perAttempt.size);

    // Completion: the record's result must come from an execution that produced it.
    if (t.state === TaskState.COMPLETED || t.state === TaskState.FAILED) {
      const code = t.state === TaskState.COMPLETED ? 0 : exitCodeFor(kind, t.attempt);
      const fin = (perAttempt.get(t.attempt) ?? []).find((e) => e.end?.code === code && e.node === t.node);
      if (!fin) {
        v('state', id, `${sname} by attempt ${t.attempt} on ${t.node}, but the log has no run of that attempt ending with exit ${code}`);
      }
    }
    const fullRuns = list.filter((e) => e.end?.code === 0).length;
    if (fullRuns > 1) stats.completedRunsRepeated++;
    // Nothing starts after the attempt that completed the task.
    if (t.state === TaskState.COMPLETED) {
      for (const e of list) if (e.attempt > t.attempt) v('completed-twice', id, `attempt ${e.attempt} ran on ${e.node} after attempt ${t.attempt} completed the task`);
    }

    // ---- overlap ----
    const nextClaim = (attempt: number): number => {
      let best = Infinity;
      for (const a of t.history) if (a.number > attempt && a.startedAtMs > 0) best = Math.min(best, a.startedAtMs);
      if (t.attempt > attempt && t.startedAtMs > 0) best = Math.min(best, t.startedAtMs);
      return best;
    };
    for (const e of list) {
      e.s = e.start ? e.start.atMs : e.obs!.firstSeenMs;
      if (e.end) {
        e.e = e.end.atMs;
        e.endSource = 'end line';
      } else {
        const h = hist.get(e.attempt);
        if (h && h.node === e.node && h.finishedAtMs > 0) {
          e.e = h.finishedAtMs;
          e.endSource = `recorded end of attempt ${e.attempt} ("${h.outcome}")`;
        } else {
          e.e = nextClaim(e.attempt);
          e.endSource = Number.isFinite(e.e) ? 'next claim' : 'no bound';
        }
      }
      if (e.obs && e.obs.lastSeenMs > e.e) {
        e.e = e.obs.lastSeenMs;
        e.endSource = `seen alive by the sampler (${e.endSource} was earlier)`;
      }
    }
    const sorted = [...list].sort((a, b) => a.s - b.s);
    for (let i = 0; i < sorted.length; i++) {
      for (let j = i + 1; j < sorted.length; j++) {
        const a = sorted[i];
        const b = sorted[j];
        if (b.s < a.e) {
          v('overlap', id,
            `attempt ${a.attempt} on ${a.node} [${fmt(a.s)} .. ${fmt(a.e)}, end from ${a.endSource}] overlaps ` +
            `attempt ${b.attempt} on ${b.node} started ${fmt(b.s)} (${(a.e - b.s).toFixed(1)} ms)`);
        }
      }
    }

    // ---- alive after loom recorded the attempt as over ----
    for (const e of list) {
      const h = hist.get(e.attempt);
      if (!h || h.node !== e.node || !(h.finishedAtMs > 0)) continue;
      const over = `loom recorded attempt ${e.attempt} over at ${fmt(h.finishedAtMs)} ("${h.outcome}")`;
      // finishedAtMs is a whole ms taken at or after the exit: the exit itself
      // may lie anywhere in that millisecond (a 2 ms task writes its end line
      // and exits within it), so only what comes after it is late.
      const overAt = h.finishedAtMs + 1;
      if (e.start && e.start.atMs >= overAt) {
        v('after-recorded-end', id, `attempt ${e.attempt} on ${e.node} started at ${fmt(e.start.atMs)}, but ${over}`);
      } else if (e.end && e.end.atMs >= overAt) {
        v('after-recorded-end', id, `attempt ${e.attempt} on ${e.node} wrote its end line at ${fmt(e.end.atMs)}, but ${over}`);
      } else if (e.obs && e.obs.lastSeenMs >= overAt) {
        v('after-recorded-end', id,
          `attempt ${e.attempt} on ${e.node} (pid ${e.obs.pids.join(',')}) was seen alive by the sampler at ${fmt(e.obs.lastSeenMs)}` +
          `${e.start ? '' : ' (it never wrote a start line)'}, but ${over}`);
      }
    }

    // ---- outlived its node ----
    for (const f of input.faults) {
      if (!NODE_LOSS_FAULTS.includes(f.kind) || f.status === 'skipped') continue;
      const limit = f.startMs + ttl;
      for (const e of list) {
        // Started by the incarnation that was hit: before the node was resumed or restarted.
        if (e.node !== f.target || !(e.s < f.endMs)) continue;
        const lastAlive = Math.max(e.end?.atMs ?? -Infinity, e.obs?.lastSeenMs ?? -Infinity);
        if (lastAlive > limit) {
          v('outlived-node', id,
            `attempt ${e.attempt} on ${e.node} was alive at ${fmt(lastAlive)} (${e.end && e.end.atMs === lastAlive ? 'end line' : 'sampler'}), ` +
            `${((lastAlive - f.startMs) / 1000).toFixed(2)} s after its node was hit by #${f.seq} ${f.kind} at ${fmt(f.startMs)} (lease TTL ${ttl / 1000} s)`);
        }
      }
    }
  }

  // One violation per task and set of executions seen together (first and last sighting).
  const sightings = new Map<string, ConcurrentSighting[]>();
  for (const c of input.concurrent) {
    const k = `${c.id} ${c.executions.map((e) => `${e.attempt}@${e.node}#${e.pid}`).sort().join(' ')}`;
    sightings.set(k, [...(sightings.get(k) ?? []), c]);
  }
  for (const list of sightings.values()) {
    const c = list[0];
    const lastAt = list[list.length - 1].atMs;
    v('overlap', c.id,
      `sampler saw ${c.executions.map((e) => `attempt ${e.attempt} on ${e.node} (pid ${e.pid})`).join(' and ')} alive at the same time ` +
      `at ${fmt(c.atMs)}${list.length > 1 ? ` and in ${list.length - 1} later scan(s) up to ${fmt(lastAt)}` : ''}`);
  }
  for (const p of input.leftovers) {
    v('orphan', p.id, `task process pid ${p.pid} (attempt ${p.attempt} on ${p.node}) still alive after every node stopped`);
  }
  for (const f of input.faults) {
    if (f.recoveryError) v('recovery', undefined, `#${f.seq} ${f.kind} ${f.target}: ${f.recoveryError}`);
    if ((f.kind === 'pause-node' || f.kind === 'partition-node' || f.kind === 'partition-member') && f.status === 'done' && f.leaseAfter === f.leaseBefore) {
      const what = f.kind === 'pause-node' ? 'pause' : 'partition';
      v('recovery', undefined, `#${f.seq} ${f.kind} ${f.target}: still under lease ${f.leaseBefore} after a ${f.holdMs} ms ${what} (> TTL)`);
    }
  }
  // Drain: a drained node should not start new work (claims in flight at the drain may still start).
  for (const f of input.faults) {
    if (f.kind !== 'drain-node' || f.status !== 'done') continue;
    const from = (f.ackMs ?? f.startMs) + 1000;
    const started = input.log.lines.filter((l) => l.kind === 'start' && l.node === f.target && l.atMs > from && l.atMs < f.endMs);
    if (started.length) {
      warnings.push(
        `#${f.seq} drain-node ${f.target}: ${started.length} execution(s) started on it more than 1 s after \`loom node drain\` returned ` +
          `(e.g. ${started[0].id} attempt ${started[0].attempt} at ${fmt(started[0].atMs)})`);
    }
  }
  if (unattributed.length) {
    warnings.push(
      `${unattributed.length} node-loss restart(s) not explained by an injected fault (spontaneous fence, e.g. a keepalive starved on a loaded machine): ` +
        unattributed.slice(0, 5).join('; ') + (unattributed.length > 5 ? '; ...' : ''),
    );
  }
  if (budgetWarnings.length) {
    warnings.push(`${budgetWarnings.length} failing task(s) got fewer runs than retries+1 (node losses count as attempts): ${budgetWarnings.slice(0, 3).join('; ')}`);
  }
  return { violations, warnings, stats };
}

/** Faults that take a node away from the cluster while its tasks may still be running. */
const NODE_LOSS_FAULTS: string[] = ['kill-node', 'pause-node', 'partition-node', 'partition-member', 'wipe-member', 'replace-member'];

/** The injected fault that explains a node-loss restart, if any (the latest matching one). */
function attribute(faults: FaultRecord[], a: Attempt, cause: RestartCause, ttlMs: number): FaultRecord | undefined {
  const within = (f: FaultRecord) => a.finishedAtMs >= f.startMs - 500 && a.finishedAtMs <= f.recoveredMs + 2 * ttlMs + 5000;
  const kinds: string[] =
    cause === 'node drained' ? ['drain-node']
    : cause === 'node shut down' ? []
    : cause === 'claim lost' ? ['kill-etcd', 'etcd-outage']
    : [...NODE_LOSS_FAULTS, 'kill-etcd', 'etcd-outage'];
  const latest = (list: FaultRecord[]) => list.sort((x, y) => y.startMs - x.startMs)[0];
  const done = faults.filter((f) => f.status !== 'skipped' && within(f) && (kinds.length === 0 || kinds.includes(f.kind)));
  return (
    latest(done.filter((f) => f.target === a.node)) ??
    // An etcd member's death can fence nodes other than its own (their
    // client used it); an outage of all members fences every node.
    latest(done.filter((f) => f.kind === 'kill-etcd' || f.kind === 'etcd-outage'))
  );
}

/** Every key in etcd, read at one revision (paged). */
export async function readStore(endpoints: string[]): Promise<StoreKv[]> {
  const client = new Etcd3({ hosts: endpoints, dialTimeout: 3000 });
  try {
    const out: StoreKv[] = [];
    let start = Buffer.from('\0');
    let revision: string | undefined;
    for (;;) {
      const res = await client.kv.range(
        { key: start, range_end: Buffer.from('\0'), limit: 1000, revision, serializable: false },
        { deadline: Date.now() + 20_000 },
      );
      revision ??= res.header.revision;
      for (const kv of res.kvs) out.push({ key: kv.key.toString('utf8'), value: kv.value, lease: String(kv.lease) });
      if (!res.more || res.kvs.length === 0) break;
      start = Buffer.concat([res.kvs[res.kvs.length - 1].key, Buffer.from('\0')]);
    }
    return out;
  } finally {
    client.close();
  }
}
