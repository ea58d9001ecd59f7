/** Read-only access to tasks, tails and nodes. */
import { AutoscaleGroup, LogTail, NodeInfo, Task, TaskState } from '../gen/loom';
import { LoomError, notFound } from '../core/errors';
import { stateName } from '../core/lifecycle';
import { decodeNode, decodeTail, decodeTask } from './codec';
import { b, IKeyValue, Kv, rangeOp, withAbort, prefixEnd } from '../etcd/client';
import { checkTaskId, jobTaskIdRange, Keys } from './keys';
import { recordsInIdOrder } from './id-order';
import { HeldTask, QueuedEntry } from './transitions';
import { listScaleGroups } from './autoscale-state';

export interface ListQuery {
  state?: TaskState;
  node?: string;
  /** A job's id: its tasks only (one range of records; with a state, a filter on the state's index). */
  jobId?: string;
  owner?: string;
  pageSize: number;
  /** Opaque: the last key of the previous page. */
  pageToken?: string;
}

export interface RunningKey {
  node: string;
  id: string;
  lease: string;
}

const MAX_PAGE = 1000;

/**
 * The queued-index entry in `kv`: key, revision, and the record as of that
 * revision (the index value; one transaction writes both). Undefined if the
 * key is not a queued key; throws if the value does not decode.
 */
export function queuedEntryOf(keys: Keys, kv: IKeyValue): (QueuedEntry & { priority: number }) | undefined {
  const key = kv.key.toString();
  const parsed = keys.parseQueued(key);
  if (!parsed) return undefined;
  return { id: parsed.id, key, modRevision: kv.mod_revision, snapshot: decodeTask(kv.value, parsed.id), priority: parsed.priority };
}

export class TaskQueries {
  private readonly inFlight = new Map<string, Promise<HeldTask>>();

  constructor(
    private readonly kv: Kv,
    readonly keys: Keys,
  ) {}

  async get(id: string, signal?: AbortSignal): Promise<HeldTask> {
    checkTaskId(id);
    const kv = await this.kv.get(this.keys.task(id), 'get task', signal);
    if (!kv) throw notFound(`no task ${id}`, id);
    return { task: decodeTask(kv.value, id), revision: kv.mod_revision };
  }

  /**
   * A read that only feeds a transaction guarded by the revision it returns:
   * the first try reads the local member's state (serializable: no leader
   * round), since a stale record only fails the guard; later tries, and a
   * "no such task" (maybe just not replicated here yet), read linearizably.
   */
  async getForUpdate(id: string, attempt: number, signal?: AbortSignal): Promise<HeldTask> {
    if (attempt === 0) {
      checkTaskId(id);
      const kv = await this.kv.get(this.keys.task(id), 'get task', signal, true);
      if (kv) return { task: decodeTask(kv.value, id), revision: kv.mod_revision };
    }
    return this.get(id, signal);
  }

  /**
   * Like get, but concurrent callers for the same id share one read (the
   * first caller's; it is not aborted by another caller's signal). For
   * readers that only follow a task (log streams): many followers of one
   * task cost one etcd read, not one each. Not for compare-and-set paths.
   */
  getShared(id: string, signal?: AbortSignal): Promise<HeldTask> {
    checkTaskId(id);
    let shared = this.inFlight.get(id);
    if (!shared) {
      shared = this.get(id).finally(() => this.inFlight.delete(id));
      this.inFlight.set(id, shared);
    }
    return withAbort(shared, signal, 'get task');
  }

  async tail(id: string): Promise<LogTail | undefined> {
    const kv = await this.kv.get(this.keys.tail(id), 'get log tail');
    return kv ? decodeTail(kv.value) : undefined;
  }

  /**
   * One page of tasks. Without a state, pages through the records in id
   * (= submit time) order, by bounded ranges (see id-order.ts); with a state,
   * through that state's index in dispatch (queued) or finish-time order,
   * fetching the records in one txn.
   */
  async list(q: ListQuery, signal?: AbortSignal): Promise<{ tasks: Task[]; nextPageToken: string }> {
    const limit = Math.min(Math.max(1, q.pageSize || 100), MAX_PAGE);
    let start: string;
    let end: string;
    const state = q.state ?? TaskState.TASK_STATE_UNSPECIFIED;
    const byId = state === TaskState.TASK_STATE_UNSPECIFIED;
    const ofJob = byId && q.jobId ? jobTaskIdRange(q.jobId) : undefined;
    if (ofJob) {
      start = this.keys.task(ofJob[0]);
      end = this.keys.task(ofJob[1]);
    } else if (byId) {
      start = this.keys.taskRangeStart;
      end = this.keys.taskRangeEnd;
    } else {
      const prefix =
        state === TaskState.RUNNING
          ? q.node ? this.keys.runningOf(q.node) : this.keys.runningPrefix
          : state === TaskState.QUEUED ? this.keys.queuedPrefix : this.keys.terminalPrefix(state);
      start = prefix;
      end = prefixEnd(prefix);
    }
    if (q.pageToken) {
      const after = Buffer.from(q.pageToken, 'base64url').toString('utf8');
      if (after < start || after >= end) throw new LoomError('INVALID_ARGUMENT', 'invalid page token');
      start = after + '\0';
    }
    const res = ofJob
      ? await this.kv.range({ key: b(start), range_end: b(end), limit }, 'list tasks', signal)
      : byId
      ? await recordsInIdOrder(this.kv, this.keys, start, limit, signal)
      : await this.kv.range({ key: b(start), range_end: b(end), limit, keys_only: true }, 'list tasks', signal);
    let tasks: Task[];
    if (byId) {
      tasks = res.kvs.map((kv) => decodeTask(kv.value));
    } else {
      const ids = res.kvs.map((kv) => kv.key.toString().split('/').pop()!);
      tasks = await this.getMany(ids, signal);
    }
    if (q.node) tasks = tasks.filter((t) => t.node === q.node);
    if (q.owner) tasks = tasks.filter((t) => t.owner === q.owner);
    if (q.jobId && !ofJob) tasks = tasks.filter((t) => t.jobId === q.jobId);
    const last = res.kvs[res.kvs.length - 1];
    return {
      tasks,
      nextPageToken: res.more && last ? Buffer.from(last.key).toString('base64url') : '',
    };
  }

  /**
   * One page of the queued index in dispatch order (priority, then submit
   * order), starting after the key `after` (undefined: from the head).
   * Entries whose value does not decode are skipped (never claimable
   * either); `last` is the page's last key, for the next call.
   */
  async queuedPage(after: string | undefined, limit: number, signal?: AbortSignal): Promise<{ entries: QueuedEntry[]; last?: string; more: boolean }> {
    const prefix = this.keys.queuedPrefix;
    const res = await this.kv.range(
      { key: b(after === undefined ? prefix : `${after}\0`), range_end: b(prefixEnd(prefix)), limit: Math.min(Math.max(1, limit), MAX_PAGE) },
      'list queued tasks',
      signal,
    );
    const entries: QueuedEntry[] = [];
    for (const kv of res.kvs) {
      try {
        const e = queuedEntryOf(this.keys, kv);
        if (e) entries.push(e);
      } catch {
        // corrupt value: skipped, as the queue window skips it
      }
    }
    const last = res.kvs[res.kvs.length - 1];
    return { entries, last: last ? last.key.toString() : undefined, more: res.more };
  }

  /** Records for ids, in order, skipping any that vanished. */
  async getMany(ids: string[], signal?: AbortSignal): Promise<Task[]> {
    const out: Task[] = [];
    for (let i = 0; i < ids.length; i += 128) {
      const chunk = ids.slice(i, i + 128);
      const res = await this.kv.txn({ compare: [], success: chunk.map((id) => rangeOp(this.keys.task(id))) }, 'get tasks', signal);
      for (const r of res.responses) {
        const kv = r.response_range?.kvs[0];
        if (kv) out.push(decodeTask(kv.value));
      }
    }
    return out;
  }

  /** Each autoscaled group's last decision and leader (store/autoscale-state.ts). */
  autoscaleGroups(signal?: AbortSignal): Promise<AutoscaleGroup[]> {
    return listScaleGroups(this.kv, this.keys, signal);
  }

  async nodes(signal?: AbortSignal): Promise<NodeInfo[]> {
    const res = await this.kv.range(
      { key: b(this.keys.nodePrefix), range_end: b(prefixEnd(this.keys.nodePrefix)) },
      'list nodes',
      signal,
    );
    const out: NodeInfo[] = [];
    for (const kv of res.kvs) {
      const name = this.keys.parseNode(kv.key.toString());
      if (name === undefined) continue;
      try {
        out.push({ ...decodeNode(kv.value, name), lease: kv.lease });
      } catch {
        // a corrupt node record is skipped, not fatal
      }
    }
    return out;
  }

  /** node name -> lease id of its live incarnation. */
  async liveLeases(): Promise<Map<string, string>> {
    const res = await this.kv.range(
      { key: b(this.keys.nodePrefix), range_end: b(prefixEnd(this.keys.nodePrefix)), keys_only: true },
      'list nodes',
    );
    const out = new Map<string, string>();
    for (const kv of res.kvs) {
      const name = this.keys.parseNode(kv.key.toString());
      if (name !== undefined) out.set(name, String(kv.lease));
    }
    return out;
  }

  /** Every running index key (bounded by the cluster's total slots). */
  async runningKeys(node?: string): Promise<RunningKey[]> {
    const prefix = node ? this.keys.runningOf(node) : this.keys.runningPrefix;
    const res = await this.kv.range({ key: b(prefix), range_end: b(prefixEnd(prefix)) }, 'list running');
    const out: RunningKey[] = [];
    for (const kv of res.kvs) {
      const parsed = this.keys.parseRunning(kv.key.toString());
      if (parsed) out.push({ ...parsed, lease: kv.value.toString() });
    }
    return out;
  }

  /** Counts of index keys per state (keys only; cheap enough for status). */
  async countByState(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const state of [TaskState.QUEUED, TaskState.RUNNING, TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.LOST]) {
      const prefix = state === TaskState.QUEUED ? this.keys.queuedPrefix : state === TaskState.RUNNING ? this.keys.runningPrefix : this.keys.terminalPrefix(state);
      const res = await this.kv.range({ key: b(prefix), range_end: b(prefixEnd(prefix)), count_only: true }, 'count');
      out[stateName(state)] = Number(res.count);
    }
    return out;
  }
}
