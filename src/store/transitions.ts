/**
 * Every change of a task's state, each as ONE guarded etcd transaction. No
 * other code writes task keys but retention.ts, which deletes finished tasks
 * (guarded by the revision it read). Each function's header lists what it compares
 * and what it writes; a failed compare means someone else acted first, and
 * the caller re-reads instead of overwriting.
 *
 * Invariants kept by every transaction here:
 *  - the record and its status index key change together;
 *  - a queued key's value is the record as it was queued, and the record is
 *    not changed while it is queued without deleting that key; so a claim can
 *    build the RUNNING record from a watch event, with no read;
 *  - only the holder of the running key's lease, while its /node/<name> key is
 *    still under that lease, may write a result (fencing).
 */
import { v7 as uuidv7 } from 'uuid';
import { Attempt, LogTail, Task, TaskSpec, TaskState } from '../gen/loom';
import { LoomError } from '../core/errors';
import { clipReason, isTerminal, lostTooOften, lostTooOftenReason, nextState, retryDelayMs, stateName, TaskEvent } from '../core/lifecycle';
import { encodeTail, encodeTask } from './codec';
import type { ITxnRequest } from 'etcd3';
import { Kv, IRequestOp, del, ifExists, ifLease, ifModRevision, ifMissing, ifNotLease, ifValue, nested, put, prefixEnd } from '../etcd/client';
import { Keys } from './keys';
import { forEachLimited } from '../core/limited';
import { timeBucketOf } from '../core/ids';
import { TxnBatcher } from './txn-batcher';
import { TurnBook } from './turns';
import { KeyedQueue, retryPause } from '../core/keyed-queue';
import { BATCH_CHUNK, chunkBySize, MAX_TXN_BYTES, opBytes } from './txn-size';
export { BATCH_CHUNK };
import { priorityOf } from '../core/spec';

/** One compare of a transaction. */
type Compare = NonNullable<Parameters<Kv['txn']>[0]['compare']>[number];

/** Ops a queued task's write takes: record, queued key, owner index key (/queuedby/). */
const OPS_PER_QUEUED = 3;
/** Tasks per submit transaction: OPS_PER_QUEUED each + time markers + a cap guard, within etcd's default 128 ops. */
export const SUBMIT_CHUNK = 42;
/** A capped submit losing to the owner's other submits (each loss another's win) retries this long: by time, as a slow node may lose to all of theirs in a row. */
const CAPPED_PATIENCE_MS = 15_000;
/** Ops of one transaction: etcd's default --max-txn-ops. */
const MAX_TXN_OPS = 128;
/** Time buckets remembered as marked (a hint cache: forgetting one costs a put). */
const MARKED_BUCKETS_MAX = 256;
/** Submit transactions in flight at once. */
export const SUBMIT_IN_FLIGHT = 8;
/** Transactions in flight at once for cancelQueuedSeen (a bulk cancel). */
const SEEN_CANCELS_IN_FLIGHT = 4;
const HISTORY_KEEP = 20;

/** A submit transaction's tasks and their writes, each record encoded once (after its queue round is set). */
interface SubmitChunk {
  tasks: Task[];
  ops: IRequestOp[];
}

export interface NodeIdentity {
  node: string;
  lease: string;
}

/** A queued task as seen in a list or watch: its key, revision and snapshot. */
export interface QueuedEntry {
  id: string;
  key: string;
  modRevision: string;
  snapshot: Task;
}

/** A task this node holds, with the record's revision (for guarded writes). */
export interface HeldTask {
  task: Task;
  revision: string;
}

/** A finished attempt's result, to be recorded by finish / claimAndFinish. */
export interface FinishItem {
  held: HeldTask;
  outcome: Outcome;
}

export interface Outcome {
  event: Extract<TaskEvent, 'succeed' | 'fail' | 'cancel'>;
  exitCode?: number;
  oomKilled?: boolean;
  signal?: string;
  reason: string;
  finishedAtMs: number;
  tail?: LogTail;
  result?: Buffer; // the attempt's $LOOM_RESULT
}


function ctxOf(task: Task) {
  return {
    attempt: task.attempt,
    retries: task.spec?.retries ?? 0,
    restartOnNodeFailure: task.spec?.restartOnNodeFailure ?? true,
  };
}

function withAttempt(task: Task, outcome: string, finishedAtMs: number): Attempt[] {
  const entry: Attempt = {
    number: task.attempt,
    node: task.node,
    startedAtMs: task.startedAtMs,
    finishedAtMs,
    outcome: clipReason(outcome),
  };
  return [...task.history, entry].slice(-HISTORY_KEEP);
}

export class TaskTransitions {
  /** Time buckets whose marker this process wrote (see Keys.timeMarker). */
  private readonly markedBuckets = new Set<string>();
  private readonly cancels: TxnBatcher;
  private readonly turns: TurnBook;
  /** Capped submits of one owner in this process, one at a time: racing on /queuecap/ only costs retries. */
  private readonly cappedSubmits = new KeyedQueue();

  constructor(
    private readonly kv: Kv,
    readonly keys: Keys,
    /** --max-node-losses: node losses after which a task fails instead of being requeued. */
    private readonly maxNodeLosses = 3,
    /** The round at a band's head if known locally (QueueWindow.headRound); saves a read per submit. */
    headHint?: (priority: number) => number | undefined,
  ) {
    this.cancels = new TxnBatcher(kv, 'cancel');
    this.turns = new TurnBook(kv, keys, headHint);
  }

  /**
   * Puts of the time markers of these new records' buckets that this process
   * has not written lately (markers are hints: one left out costs a later
   * list some time, never a task).
   */
  private markerOps(records: Task[]): { ops: IRequestOp[]; buckets: string[] } {
    const buckets: string[] = [];
    for (const t of records) {
      const bucket = timeBucketOf(t.id);
      if (!this.markedBuckets.has(bucket) && !buckets.includes(bucket)) buckets.push(bucket);
    }
    return { ops: buckets.map((bkt) => put(this.keys.timeMarker(bkt), '')), buckets };
  }

  /**
   * Submit transactions, built once the records' rounds are assigned: up to SUBMIT_CHUNK tasks, OPS_PER_QUEUED ops each +
   * one per new time bucket + one guard, ≤ MAX_TXN_OPS ops and ≤ MAX_TXN_BYTES
   * of keys and values (a queued task is stored twice: 4 of the largest specs
   * fill a transaction).
   */
  private submitChunks(records: Task[]): SubmitChunk[] {
    const chunks: SubmitChunk[] = [];
    let chunk: SubmitChunk = { tasks: [], ops: [] };
    let bytes = 0;
    let buckets = new Set<string>();
    for (const t of records) {
      const bucket = timeBucketOf(t.id);
      const more = this.markedBuckets.has(bucket) || buckets.has(bucket) ? 0 : 1;
      const ops = this.writeRecord(t);
      const size = ops.reduce((n, op) => n + opBytes(op), 0);
      const n = chunk.tasks.length;
      if (n && (n >= SUBMIT_CHUNK || OPS_PER_QUEUED * (n + 1) + buckets.size + more + 1 > MAX_TXN_OPS || bytes + size > MAX_TXN_BYTES)) {
        chunks.push(chunk);
        chunk = { tasks: [], ops: [] };
        bytes = 0;
        buckets = new Set();
      }
      chunk.tasks.push(t);
      chunk.ops.push(...ops);
      bytes += size;
      if (!this.markedBuckets.has(bucket)) buckets.add(bucket);
    }
    if (chunk.tasks.length) chunks.push(chunk);
    return chunks;
  }

  private rememberMarked(buckets: string[]): void {
    if (this.markedBuckets.size + buckets.length > MARKED_BUCKETS_MAX) this.markedBuckets.clear();
    for (const bkt of buckets) this.markedBuckets.add(bkt);
  }

  /** Ops that put `task` and its status index key (queued keys carry the record). */
  private writeRecord(task: Task): IRequestOp[] {
    const value = encodeTask(task);
    const k = this.keys;
    switch (task.state) {
      case TaskState.QUEUED:
        // The owner index key goes and comes with the queued key: an owner's queue is one prefix count.
        return [put(k.task(task.id), value), put(k.queued(priorityOf(task.spec), task.id, task.queueRound), value), put(k.queuedBy(task.owner, task.id), '')];
      case TaskState.RUNNING:
        return [put(k.task(task.id), value), put(k.running(task.node, task.id), task.lease)];
      default: {
        const ops = [put(k.task(task.id), value), put(k.terminal(task.state, task.finishedAtMs, task.id), '')];
        // A job's tasks leave a mark, so the job's end is one count query.
        if (task.jobId) ops.push(put(k.jobDone(task.jobId, task.index), stateName(task.state)));
        return ops;
      }
    }
  }

  /** `byAdmin`: the submitter is an admin here (Task.submitted_by_admin). */
  newRecord(spec: TaskSpec, owner: string, nowMs: number, byAdmin = false): Task {
    return {
      id: uuidv7(),
      spec,
      state: TaskState.QUEUED,
      node: '',
      lease: '',
      attempt: 0,
      submittedAtMs: nowMs,
      startedAtMs: 0,
      finishedAtMs: 0,
      signal: '',
      reason: '',
      cancelRequested: false,
      owner,
      history: [],
      notBeforeMs: 0,
      oomKilled: false,
      jobId: '',
      index: 0,
      failures: 0,
      nodeLosses: 0,
      submittedByAdmin: byAdmin,
      queueRound: 0,
      result: Buffer.alloc(0),
    };
  }

  private runningRecord(snapshot: Task, me: NodeIdentity, nowMs: number): Task {
    return {
      ...snapshot,
      state: TaskState.RUNNING,
      node: me.node,
      lease: me.lease,
      attempt: snapshot.attempt + 1,
      startedAtMs: nowMs,
      finishedAtMs: 0,
      exitCode: undefined,
      signal: '',
      reason: '',
      cancelRequested: false,
      oomKilled: false,
      result: Buffer.alloc(0),
    };
  }

  /**
   * submit: queue new tasks, SUBMIT_CHUNK per transaction, after their
   * owners' turns are reserved (TurnBook: one read, one guarded transaction;
   * the records get their queueRound).
   *   compare: /task/<id> missing (ids are fresh UUIDv7s; this only guards)
   *   then:    put /task/<id> (QUEUED), put queued key = same record,
   *            put /queuedby/<owner>/<id>,
   *            put /tasktime/<bucket> for new buckets (list hints)
   * Chunks are independent: if one fails, earlier chunks stay queued and the
   * error names how many were queued.
   *
   * With `maxQueuedPerOwner` (--max-queued-per-owner, > 0) the owner's queue
   * is counted first (/queuedby/<owner>/, read with /queuecap/<owner>'s
   * revision) and a submit that would take it past the cap is refused
   * (RESOURCE_EXHAUSTED, nothing queued). Its chunks then go one at a time,
   * each also
   *   compare: /queuecap/<owner> at the revision of that count (or of this
   *            submit's previous chunk)
   *   then:    put /queuecap/<owner> = the count with this chunk
   * so no other submit of the owner, on any node, can queue between the
   * count and the write; one that did makes the next chunk fail its guard,
   * count again and check again. Claims and cancels only lower the count,
   * so they never touch the guard: the steal loop pays one index delete per
   * claim, no read and no contention.
   */
  async submit(records: Task[], signal?: AbortSignal, maxQueuedPerOwner = 0): Promise<void> {
    let done = 0;
    try {
      if (maxQueuedPerOwner > 0) {
        const owner = records[0]?.owner ?? '';
        await this.cappedSubmits.run(owner, () => this.submitCapped(records, maxQueuedPerOwner, (n) => (done += n), signal));
        return;
      }
      await this.turns.assign(records, signal);
      // At most SUBMIT_IN_FLIGHT transactions at once (a 10,000-task submit is
      // 239 of them; all at once would time out behind each other), in order;
      // after a failure no new chunk starts, so what is queued is a prefix.
      await forEachLimited(this.submitChunks(records), SUBMIT_IN_FLIGHT, async (chunk) => {
        const res = await this.submitTxn(chunk, [], [], signal);
        if (!res.succeeded) throw new LoomError('CONFLICT', 'task id collision');
        done += chunk.tasks.length;
      });
    } catch (err) {
      const failure = err as LoomError;
      throw new LoomError(failure.code ?? 'UNAVAILABLE', `${done} of ${records.length} tasks queued; ${failure.message}`);
    }
  }

  /** One submit transaction of `chunk` (see submit), with a guard's compare and write. */
  private async submitTxn(chunk: SubmitChunk, compare: Compare[], success: IRequestOp[], signal?: AbortSignal) {
    const markers = this.markerOps(chunk.tasks);
    const res = await this.kv.txn(
      {
        compare: [...chunk.tasks.map((t) => ifMissing(this.keys.task(t.id))), ...compare],
        success: [...chunk.ops, ...markers.ops, ...success],
      },
      'submit',
      signal,
    );
    if (res.succeeded) this.rememberMarked(markers.buckets);
    return res;
  }

  /** The owner's queued tasks (a count of /queuedby/<owner>/) and /queuecap/<owner>'s revision ('0': none). */
  async queuedOf(owner: string, signal?: AbortSignal): Promise<{ count: number; revision: string }> {
    const prefix = this.keys.queuedByOf(owner);
    const res = await this.kv.txn(
      {
        compare: [],
        success: [
          // etcd 3.4 walks the owner's index keys to count them: the cost grows with the owner's queue.
          { request_range: { key: Buffer.from(prefix), range_end: Buffer.from(prefixEnd(prefix)), count_only: true } },
          { request_range: { key: Buffer.from(this.keys.queueCap(owner)), keys_only: true } },
        ],
      },
      'count queued',
      signal,
    );
    const cap = res.responses[1]?.response_range?.kvs[0];
    return { count: Number(res.responses[0]?.response_range?.count ?? 0), revision: cap ? cap.mod_revision : '0' };
  }

  /** submit under --max-queued-per-owner (see submit). */
  private async submitCapped(records: Task[], max: number, progress: (n: number) => void, signal?: AbortSignal): Promise<void> {
    const owner = records[0]?.owner ?? '';
    if (records.some((t) => t.owner !== owner)) throw new LoomError('INTERNAL', 'a capped submit holds tasks of several owners');
    let left = records.length;
    let seen = await this.queuedOf(owner, signal);
    const check = () => {
      if (seen.count + left > max) throw queueFull(owner, max, seen.count, left);
    };
    check();
    await this.turns.assign(records, signal);
    const capKey = this.keys.queueCap(owner);
    for (const chunk of this.submitChunks(records)) {
      for (let tries = 1, since = Date.now(); ; tries++) {
        const count = seen.count + chunk.tasks.length;
        const res = await this.submitTxn(chunk, [ifModRevision(capKey, seen.revision)], [put(capKey, String(count))], signal);
        if (res.succeeded) {
          seen = { count, revision: res.header.revision };
          left -= chunk.tasks.length;
          progress(chunk.tasks.length);
          break;
        }
        const now = await this.queuedOf(owner, signal);
        if (now.revision === seen.revision) throw new LoomError('CONFLICT', 'task id collision'); // nothing else changed it
        if (Date.now() - since > CAPPED_PATIENCE_MS) throw new LoomError('CONFLICT', `other submits of ${owner} kept changing its queue (${tries} tries in ${CAPPED_PATIENCE_MS / 1000} s); try again`);
        seen = now;
        check();
        await retryPause(tries);
      }
    }
  }

  /**
   * materialize: write a job's tasks (QUEUED, or already terminal when the
   * job failed or was cancelled before running), one nested transaction per task.
   *   compare: `guard` (the job record unchanged and this node still its
   *            writer, see JobStore.materialize), then per task:
   *            /task/<id> missing (job task ids are deterministic, so a
   *            resumed materialization skips what was written)
   *   then:    put /task/<id> and its status key (and job mark if terminal);
   *            put /tasktime/<bucket> for new buckets (list hints)
   * Queued ones first get their owner's turns (TurnBook), as a submit's do:
   * a job's tasks take turns with everyone else's. Returns false, having
   * written nothing more, once the guard fails.
   */
  async materialize(records: Task[], guard: ITxnRequest['compare'] = []): Promise<boolean> {
    await this.turns.assign(records.filter((t) => t.state === TaskState.QUEUED));
    const op = (t: Task) => nested({ compare: [ifMissing(this.keys.task(t.id))], success: this.writeRecord(t) });
    // By count and by bytes (see txn-size.ts).
    for (const chunk of chunkBySize(records, (t) => opBytes(op(t)), BATCH_CHUNK)) {
      const markers = this.markerOps(chunk);
      const res = await this.kv.txn(
        {
          compare: guard,
          success: [...chunk.map(op), ...markers.ops],
        },
        'materialize job',
      );
      if (!res.succeeded) return false;
      this.rememberMarked(markers.buckets);
    }
    return true;
  }

  /**
   * submitClaimed: queue-and-claim one task on the submitting node when it
   * has room (the low-latency path: no watch round trip).
   *   compare: /task/<id> missing; /node/<me> under my lease
   *   then:    put /task/<id> (RUNNING on me), put running key = my lease,
   *            put /tasktime/<bucket> if new (list hint)
   * Returns the held task, or undefined if the node is fenced (caller queues).
   */
  async submitClaimed(record: Task, me: NodeIdentity, nowMs: number): Promise<HeldTask | undefined> {
    const running = this.runningRecord(record, me, nowMs);
    const markers = this.markerOps([record]);
    const res = await this.kv.txn(
      {
        compare: [ifMissing(this.keys.task(record.id)), ifLease(this.keys.node(me.node), me.lease)],
        success: [...this.writeRecord(running), ...markers.ops],
      },
      'submit',
    );
    if (res.succeeded) this.rememberMarked(markers.buckets);
    return res.succeeded ? { task: running, revision: res.header.revision } : undefined;
  }

  /**
   * claim: steal queued tasks, one nested transaction per task so each
   * succeeds or fails on its own, all in one round trip.
   *   compare: queued key and /task/<id> both at the queued revision
   *            (nobody claimed, cancelled or changed it); /node/<me> under my lease
   *   then:    delete queued key; put running key = my lease;
   *            put /task/<id> (RUNNING, node, lease, attempt+1, startedAt)
   * Returns, per entry, the held task or undefined when the race was lost.
   */
  async claim(entries: QueuedEntry[], me: NodeIdentity, nowMs: number, signal?: AbortSignal): Promise<(HeldTask | undefined)[]> {
    const out: (HeldTask | undefined)[] = [];
    for (let i = 0; i < entries.length; i += BATCH_CHUNK) {
      out.push(...(await this.claimAndFinish(entries.slice(i, i + BATCH_CHUNK), [], me, nowMs, signal)).claimed);
    }
    return out;
  }

  /**
   * claimAndFinish: the claims of `claim` and the results of `finish` in ONE
   * transaction (at most BATCH_CHUNK items in all). A node whose task just
   * exited records it and takes the next task in one round trip instead of
   * two. Each item is its own nested transaction with its own compares, so
   * each commits or fails alone, exactly as in the separate calls.
   */
  async claimAndFinish(
    entries: QueuedEntry[],
    finishes: FinishItem[],
    me: NodeIdentity,
    nowMs: number,
    signal?: AbortSignal,
  ): Promise<{ claimed: (HeldTask | undefined)[]; finished: boolean[] }> {
    if (entries.length + finishes.length > BATCH_CHUNK) throw new LoomError('INTERNAL', `more than ${BATCH_CHUNK} items in one transaction`);
    // A queued entry of a task whose result is in this transaction is stale:
    // the task runs here, its queued key went with the claim (the window saw
    // it again through a read older than that claim, e.g. just after a
    // rejoin). Its compare would fail; but both would write /task/<id>, and
    // etcd refuses a transaction that writes a key twice: ALL of it, the
    // other claims and results too. Such an entry is lost without asking.
    const finishing = new Set(finishes.map((f) => f.held.task.id));
    const sent = entries.filter((e) => !finishing.has(e.id));
    const records = sent.map((e) => this.runningRecord(e.snapshot, me, nowMs));
    const ops = [...sent.map((e, j) => this.claimOp(e, records[j], me)), ...finishes.map((f) => this.finishOp(f, me))];
    const what = finishes.length === 0 ? 'claim' : sent.length === 0 ? 'finish' : 'claim and finish';
    // Usually one transaction; split when the records are large (a claim of
    // 64 tasks with 128 KiB environments would be refused whole by etcd's
    // request limit, every task in it, again at each try). Each item is its
    // own nested transaction, so splitting changes no item's outcome.
    const ok: boolean[] = ops.map(() => false);
    const revisions: string[] = ops.map(() => '');
    const indices = ops.map((_, i) => i);
    for (const part of chunkBySize(indices, (i) => opBytes(ops[i]), BATCH_CHUNK)) {
      const res = await this.kv.txn({ compare: [], success: part.map((i) => ops[i]) }, what, signal);
      part.forEach((i, k) => {
        ok[i] = res.responses[k]?.response_txn?.succeeded === true;
        revisions[i] = res.header.revision;
      });
    }
    const claimed = new Map(sent.map((e, j) => [e, ok[j] ? { task: records[j], revision: revisions[j] } : undefined]));
    return {
      claimed: entries.map((e) => claimed.get(e)),
      finished: finishes.map((_, k) => ok[sent.length + k]),
    };
  }

  private claimOp(e: QueuedEntry, running: Task, me: NodeIdentity): IRequestOp {
    return nested({
      compare: [
        ifModRevision(e.key, e.modRevision),
        ifModRevision(this.keys.task(e.id), e.modRevision),
        ifLease(this.keys.node(me.node), me.lease),
      ],
      success: [del(e.key), del(this.keys.queuedBy(e.snapshot.owner, e.id)), ...this.writeRecord(running)],
    });
  }

  /** The record a finished attempt leads to. */
  resultRecord(held: Task, outcome: Outcome): Task {
    const event: TaskEvent = held.cancelRequested && outcome.event === 'fail' ? 'cancel' : outcome.event;
    const failures = held.failures + (event === 'fail' ? 1 : 0);
    const state = nextState(TaskState.RUNNING, event, { ...ctxOf(held), attempt: failures });
    if (state === undefined) throw new LoomError('INTERNAL', `no transition RUNNING --${event}-->`);
    const label = outcome.signal ? `signal ${outcome.signal}` : outcome.exitCode !== undefined ? `exit ${outcome.exitCode}` : outcome.reason;
    return {
      ...held,
      state,
      lease: '',
      finishedAtMs: isTerminal(state) ? outcome.finishedAtMs : 0,
      exitCode: outcome.exitCode,
      failures,
      // A retry waits its backoff; nodes skip it in the queue until then.
      notBeforeMs: state === TaskState.QUEUED && event === 'fail' ? outcome.finishedAtMs + retryDelayMs(held.spec?.backoffMs ?? 0, held.spec?.backoffExponential ?? false, failures) : 0,
      oomKilled: outcome.oomKilled ?? false,
      result: outcome.result ?? Buffer.alloc(0),
      signal: outcome.signal ?? '',
      reason: clipReason(state === TaskState.QUEUED ? `retry after ${outcome.reason || label}` : event === 'cancel' ? 'cancelled' : outcome.reason),
      history: withAttempt(held, event === 'cancel' ? 'cancelled' : outcome.reason || label, outcome.finishedAtMs),
    };
  }

  /**
   * finish: record results of attempts this node ran (batched, nested).
   *   compare: /task/<id> at the held revision; running key = my lease;
   *            /node/<me> under my lease (a fenced node cannot write)
   *   then:    delete running key and any cancel request; put /task/<id>
   *            (terminal, or QUEUED for a retry) and its status key; put /tail/<id>
   * Returns per item whether it committed; on false the caller re-reads.
   */
  async finish(items: FinishItem[], me: NodeIdentity): Promise<boolean[]> {
    const out: boolean[] = [];
    for (let i = 0; i < items.length; i += BATCH_CHUNK) {
      out.push(...(await this.claimAndFinish([], items.slice(i, i + BATCH_CHUNK), me, 0)).finished);
    }
    return out;
  }

  private finishOp({ held, outcome }: FinishItem, me: NodeIdentity): IRequestOp {
    const t = held.task;
    const next = this.resultRecord(t, outcome);
    const ops = [del(this.keys.running(me.node, t.id)), ...this.writeRecord(next)];
    // Only what exists is deleted or written: fewer ops per task.
    if (t.cancelRequested) ops.push(del(this.keys.cancel(me.node, t.id)));
    const tail = outcome.tail;
    if (tail && (tail.stdout.length > 0 || tail.stderr.length > 0)) ops.push(put(this.keys.tail(t.id), encodeTail(tail)));
    return nested({
      compare: [
        ifModRevision(this.keys.task(t.id), held.revision),
        ifValue(this.keys.running(me.node, t.id), me.lease),
        ifLease(this.keys.node(me.node), me.lease),
      ],
      success: ops,
    });
  }

  /**
   * release: this node gives a running task back (shutdown, drain deadline,
   * or it found itself fenced while its running key survives).
   *   compare: /task/<id> at the held revision; running key = my lease
   *   then:    delete running key and cancel request; put /task/<id> QUEUED
   *            (CANCELLED if a cancel was requested; FAILED when `nodeLoss`
   *            makes it the task's --max-node-losses-th) and its status key
   * `nodeLoss`: the node fenced itself while the task ran, which counts like
   * a survivor's requeueLost (Task.node_losses).
   */
  async release(held: HeldTask, me: NodeIdentity, reason: string, nowMs: number, nodeLoss = false): Promise<boolean> {
    const t = held.task;
    const event: TaskEvent = t.cancelRequested ? 'cancel' : 'release';
    const nodeLosses = t.nodeLosses + (nodeLoss ? 1 : 0);
    const ctx = { ...ctxOf(t), nodeLosses, maxNodeLosses: this.maxNodeLosses };
    const state = nextState(TaskState.RUNNING, event, ctx)!;
    const next: Task = {
      ...t,
      state,
      lease: '',
      finishedAtMs: isTerminal(state) ? nowMs : 0,
      reason: event === 'cancel' ? 'cancelled' : state === TaskState.FAILED ? lostTooOftenReason(nodeLosses, reason) : reason,
      history: withAttempt(t, reason, nowMs),
      nodeLosses,
    };
    const res = await this.kv.txn(
      {
        compare: [
          ifModRevision(this.keys.task(t.id), held.revision),
          ifValue(this.keys.running(me.node, t.id), me.lease),
        ],
        success: [del(this.keys.running(me.node, t.id)), del(this.keys.cancel(me.node, t.id)), ...this.writeRecord(next)],
      },
      'release',
    );
    return res.succeeded;
  }

  /**
   * requeueLost: a survivor puts back a task whose node incarnation is gone.
   *   compare: /task/<id> at the revision read (still RUNNING under the dead
   *            lease); running key = the dead lease; /node/<node> NOT under
   *            that lease (the incarnation really is gone)
   *   then:    delete running key and cancel request; put /task/<id> QUEUED
   *            (LOST if restartOnNodeFailure=false, CANCELLED if cancel was
   *            requested, FAILED "lost its node N times" when this loss is
   *            its --max-node-losses-th: a task that kills its node must not
   *            go on to kill the next) and its status key
   * Exactly one survivor wins per task; the others' compares fail quietly.
   */
  async requeueLost(held: HeldTask, nowMs: number): Promise<Task | undefined> {
    const t = held.task;
    const event: TaskEvent = t.cancelRequested ? 'cancel' : 'node_lost';
    const nodeLosses = t.nodeLosses + 1;
    const ctx = { ...ctxOf(t), nodeLosses, maxNodeLosses: this.maxNodeLosses };
    const state = nextState(TaskState.RUNNING, event, ctx)!;
    const why = `node ${t.node} lost`;
    const next: Task = {
      ...t,
      state,
      lease: '',
      finishedAtMs: isTerminal(state) ? nowMs : 0,
      reason:
        event === 'cancel' ? 'cancelled'
        : state === TaskState.LOST ? `${why} (restartOnNodeFailure=false)`
        : state === TaskState.FAILED && lostTooOften(ctx) ? lostTooOftenReason(nodeLosses, why)
        : why,
      history: withAttempt(t, 'node lost', nowMs),
      nodeLosses,
    };
    const res = await this.kv.txn(
      {
        compare: [
          ifModRevision(this.keys.task(t.id), held.revision),
          ifValue(this.keys.running(t.node, t.id), t.lease),
          ifNotLease(this.keys.node(t.node), t.lease),
        ],
        success: [del(this.keys.running(t.node, t.id)), del(this.keys.cancel(t.node, t.id)), ...this.writeRecord(next)],
      },
      'requeue',
    );
    return res.succeeded ? next : undefined;
  }

  /**
   * dropStaleRunningKey: remove a running index key whose record says the
   * task is elsewhere (only possible after manual edits; keeps the index true).
   *   compare: running key still has the value seen; /node/<node> not under it
   *   then:    delete the running key
   */
  async dropStaleRunningKey(node: string, id: string, lease: string): Promise<boolean> {
    const key = this.keys.running(node, id);
    const res = await this.kv.txn(
      { compare: [ifValue(key, lease), ifNotLease(this.keys.node(node), lease)], success: [del(key)] },
      'drop stale running key',
    );
    return res.succeeded;
  }

  /**
   * cancelQueued: compare /task/<id> at the revision read and its queued key
   * exists; then delete the queued key, put /task/<id> CANCELLED + terminal key.
   * Cancels issued together share one etcd transaction (nested, each on its
   * own compares: see TxnBatcher).
   */
  async cancelQueued(held: HeldTask, nowMs: number): Promise<Task | undefined> {
    const t = held.task;
    const next = this.cancelledRecord(t, nowMs);
    const queuedKey = this.keys.queued(priorityOf(t.spec), t.id, t.queueRound);
    const ok = await this.cancels.run({
      compare: [ifModRevision(this.keys.task(t.id), held.revision), ifExists(queuedKey)],
      success: [del(queuedKey), del(this.keys.queuedBy(t.owner, t.id)), ...this.writeRecord(next)],
    });
    return ok ? next : undefined;
  }

  /**
   * cancelQueuedSeen: cancelQueued for tasks read from the queued index,
   * with no read of their records: an index entry's value is the record as
   * of the entry's revision (one transaction writes both), so
   *   compare: the queued key and /task/<id> both still at the entry's revision
   *   then:    delete the queued key, put /task/<id> CANCELLED + terminal key
   * BATCH_CHUNK entries per transaction (nested, each on its own compares),
   * SEEN_CANCELS_IN_FLIGHT transactions at once. Per entry: the record
   * written, or undefined if the task changed since it was seen (claimed,
   * most often) or the entry repeats one before it.
   */
  async cancelQueuedSeen(entries: QueuedEntry[], nowMs: number, signal?: AbortSignal): Promise<(Task | undefined)[]> {
    const out: (Task | undefined)[] = entries.map(() => undefined);
    // etcd refuses a transaction that writes a key twice: a repeat is dropped.
    const todo: { e: QueuedEntry; i: number }[] = [];
    const seen = new Set<string>();
    entries.forEach((e, i) => {
      if (seen.has(e.key)) return;
      seen.add(e.key);
      todo.push({ e, i });
    });
    const op = (e: QueuedEntry, next: Task) =>
      nested({
        compare: [ifModRevision(e.key, e.modRevision), ifModRevision(this.keys.task(e.id), e.modRevision)],
        success: [del(e.key), del(this.keys.queuedBy(e.snapshot.owner, e.id)), ...this.writeRecord(next)],
      });
    // By count and by bytes: each cancel rewrites the whole record (see txn-size.ts).
    const chunks = chunkBySize(todo, ({ e }) => opBytes(op(e, e.snapshot)), BATCH_CHUNK);
    await forEachLimited(chunks, SEEN_CANCELS_IN_FLIGHT, async (chunk) => {
      const next = chunk.map(({ e }) => this.cancelledRecord(e.snapshot, nowMs));
      const res = await this.kv.txn(
        {
          compare: [],
          success: chunk.map(({ e }, j) => op(e, next[j])),
        },
        'cancel',
        signal,
      );
      chunk.forEach(({ i }, j) => (out[i] = res.responses[j]?.response_txn?.succeeded ? next[j] : undefined));
    });
    return out;
  }

  private cancelledRecord(t: Task, nowMs: number): Task {
    return { ...t, state: TaskState.CANCELLED, finishedAtMs: nowMs, reason: 'cancelled before it ran' };
  }

  /**
   * requestCancel: ask the owner of a running task to stop it.
   *   compare: /task/<id> at the revision read (RUNNING)
   *   then:    put /task/<id> with cancel_requested; put /cancel/<node>/<id>
   * The owner watches /cancel/<node>/, kills the task and records CANCELLED;
   * the cancel key's revision is the record's new revision.
   */
  async requestCancel(held: HeldTask): Promise<Task | undefined> {
    const t = held.task;
    const next: Task = { ...t, cancelRequested: true };
    const res = await this.kv.txn(
      {
        compare: [ifModRevision(this.keys.task(t.id), held.revision)],
        success: [put(this.keys.task(t.id), encodeTask(next)), put(this.keys.cancel(t.node, t.id), t.lease)],
      },
      'cancel',
    );
    return res.succeeded ? next : undefined;
  }
}

/** RESOURCE_EXHAUSTED: the submit would take the owner's queue past --max-queued-per-owner. */
function queueFull(owner: string, max: number, queued: number, more: number): LoomError {
  return new LoomError(
    'RESOURCE_EXHAUSTED',
    `${owner} has ${queued} tasks queued; ${more} more would pass the limit of ${max} queued tasks per owner (--max-queued-per-owner): wait for some to run, or cancel some`,
  );
}
