/**
 * The gRPC API every node serves. Handlers return or throw; see grpc-adapter.
 *
 * Who may do what (identities come from client certificates, src/node/tls.ts;
 * without TLS everyone is the same local user and may do everything):
 *  - anyone authenticated: submit and run (and own what they submit), get, list, wait, nodes, members;
 *    urgent priorities (>= --urgent-priority) only admins and --urgent-submitter identities;
 *    a task's env values and its result (output, like its logs) are shown to its owner and admins only;
 *  - the task's owner or an admin (--admin, or any node certificate): cancel, logs;
 *  - an admin: drain/resume a node, remove the etcd member of a node that is gone;
 *  - a node certificate only: Logs of one attempt (attempt > 0), the node-to-node log proxy.
 */
import * as grpc from '@grpc/grpc-js';
import {
  CancelRequest, GetRequest, ListRequest, ListResponse, LoomService, LoomServer, NodesResponse,
  SubmitRequest, SubmitResponse, Task, TaskState, WaitRequest, LogsRequest, LogChunk, NodesRequest,
  DrainRequest, DrainResponse, CancelQueuedRequest, NodeInfo, CancelQueuedResponse, RunRequest, RunEvent, TaskSpec,
  MembersResponse, RemoveMemberRequest, RemoveMemberResponse,
} from '../gen/loom';
import type { EtcdMembers } from '../etcd/members';
import { LoomError } from '../core/errors';
import { isTerminal, stateName } from '../core/lifecycle';
import { LIMITS } from '../core/spec';
import { checkTaskId } from '../store/keys';
import { setNodeControl } from '../store/node-control';
import { validateNodeName } from '../core/config';
import type { TlsMaterial } from '../wire/tls';
import { explainUnplaceable } from '../core/fit';
import { secretsHidden } from '../core/redact';
import { UrgencyPolicy } from '../core/urgency';
import { nextChange } from '../etcd/key-watch';
import { Kv, withAbort } from '../etcd/client';
import { decodeTask } from '../store/codec';
import { TaskQueries } from '../store/queries';
import { HeldTask, TaskTransitions } from '../store/transitions';
import { AdapterOptions, tolerantService } from './grpc-adapter';
import { TaskOps, taskHandlers } from './task-ops';
import { ClientSlots } from './client-slots';
import { ConnectionLimits, Identity, identityOfCall, RateLimitedLog, SecureListener } from './tls';
import { LogService } from './logs';
import { jobHandlers, JobOps, jobOps } from './job-api';
import { JobStore } from '../store/jobs';
import { SubmitChecks } from './submit-checks';

export interface ApiDeps {
  kv: Kv;
  queries: TaskQueries;
  transitions: TaskTransitions;
  logs: LogService;
  /** Claims a freshly submitted task locally when this node has room. */
  tryRunHere: (record: Task) => Promise<boolean>;
  log: (msg: string) => void;
  jobs: JobStore;
  /** Settles when a task held by this node has its result recorded (undefined if not held here). */
  settledHere?: (id: string) => Promise<Task | undefined> | undefined;
  /** This node's name, for messages. */
  nodeName?: string;
  /** Mutual TLS: the node's own identity. Unset: plaintext, every caller is 'local'. */
  tls?: TlsMaterial;
  /** Identities that may cancel any task, read any task's logs, drain nodes and remove etcd members (--admin). */
  admins?: string[];
  /** Who may submit urgent priorities besides the admins (--urgent-priority, --urgent-submitter); unset: anyone. */
  urgency?: UrgencyPolicy;
  /** --max-queued-per-owner: queued tasks one owner may have after a submit; 0 or unset: no limit. */
  maxQueuedPerOwner?: number;
  /** Overrides of API_LIMITS (tests). */
  limits?: Partial<ApiLimits>;
  /** Overrides of CONNECTION_LIMITS (tests). */
  connectionLimits?: Partial<ConnectionLimits>;
  /** The etcd cluster's members (loom members). */
  members: EtcdMembers;
  /** The live nodes as this node's watch sees them (for the container policy check); unset: read from etcd. */
  nodes?: () => NodeInfo[];
  /** etcd's space: refuses submits (RESOURCE_EXHAUSTED, "cluster storage full") near the quota; unset: no gate. */
  storage?: { checkSubmit(bytes: number): void };
}

export interface ApiLimits {
  logStreamsPerNode: number;
  streamsPerClient: number;
  /** A connection with no call for this long is closed (a client reconnects on its next call). */
  idleConnectionMs: number;
}

/** How long a Run waits for its task to end before sending the id alone. */
const RUN_ID_DELAY_MS = 10;

/** Queued-index entries read per page by a cancel of every queued task. */
const CANCEL_QUEUED_PAGE = 1000;

/** Per-node and per-client limits of the API (documented in the README). */
export const API_LIMITS: Readonly<ApiLimits> = {
  /** Concurrent log streams served by one node. */
  logStreamsPerNode: 10_000,
  /** Concurrent log streams, waits and runs of one client identity (TLS mode). */
  streamsPerClient: 1_000,
  /**
   * Idle connections: each costs the node a descriptor and an HTTP/2 session.
   * 5 minutes keeps a CLI's or a peer's connection across bursts of calls.
   */
  idleConnectionMs: 5 * 60_000,
};

export class ApiServer {
  private server: grpc.Server | undefined;
  private listener: SecureListener | undefined;
  private logStreams = 0;
  private readonly clientSlots: ClientSlots;
  private readonly jobs: JobOps;
  private readonly checks: SubmitChecks;
  private readonly admins: Set<string>;
  private readonly denials: RateLimitedLog;
  private readonly limits: ApiLimits;

  constructor(private readonly deps: ApiDeps) {
    this.admins = new Set(deps.admins ?? []);
    this.checks = new SubmitChecks({ urgency: deps.urgency, nodes: deps.nodes, readNodes: () => deps.queries.nodes(), storage: deps.storage });
    this.limits = { ...API_LIMITS, ...deps.limits };
    this.clientSlots = new ClientSlots(this.limits.streamsPerClient, Boolean(deps.tls));
    this.jobs = jobOps({
      jobs: deps.jobs, cancelTask: (id, identity) => this.cancel(id, identity), isAdmin: (i) => this.isAdmin(i),
      // A job's tasks are checked like a submit's: urgent priorities too.
      checkContainers: (specs, identity, admin) => this.checks.policy(specs, identity, admin),
      checkQueueRoom: (owner, count) => this.checkQueueRoom(owner, count),
      storage: deps.storage,
    });
    this.denials = new RateLimitedLog(deps.log, 'permission denials');
  }

  async listen(address: string): Promise<number> {
    const server = new grpc.Server({
      'grpc.max_receive_message_length': LIMITS.requestBytes,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      // No channelz registry: its per-call bookkeeping is paid on every call and nothing reads it.
      'grpc.enable_channelz': 0,
      'grpc.max_connection_idle_ms': this.limits.idleConnectionMs,
    });
    server.addService(tolerantService(LoomService), this.handlers());
    const tls = this.deps.tls;
    // Connections come through SecureListener, with TLS or without: it
    // terminates TLS (and explains every refusal), and it bounds connections
    // and handshakes, which grpc-js' own listener does not.
    const listener = new SecureListener({ tls, server, nodeName: this.deps.nodeName ?? '', log: this.deps.log, limits: this.deps.connectionLimits });
    const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(address);
    if (!m) throw new LoomError('INVALID_ARGUMENT', `invalid listen address "${address}": expected host:port`);
    try {
      const port = await listener.listen(m[1], Number(m[2]));
      this.server = server;
      this.listener = listener;
      return port;
    } catch (err) {
      await listener.close();
      throw new LoomError('UNAVAILABLE', `cannot listen on ${address}: ${(err as Error).message}`);
    }
  }

  /** The API's connections now (tests). */
  get connections(): { open: number; pending: number } {
    return this.listener?.connections ?? { open: 0, pending: 0 };
  }

  /** May this identity act on every task and node? Without TLS everyone may. */
  private isAdmin(id: Identity): boolean {
    return !this.deps.tls || id.role === 'node' || this.admins.has(id.name);
  }

  /** Throws PERMISSION_DENIED unless `id` owns the task or is an admin. */
  private checkOwner(t: Task, id: Identity, what: string): void {
    if (this.isAdmin(id) || t.owner === id.name) return;
    throw new LoomError(
      'PERMISSION_DENIED',
      `${id.name} may not ${what} task ${t.id}: it belongs to ${t.owner || 'nobody'} (only its owner or an admin, see --admin, may)`,
      t.id,
    );
  }

  /** The task as `id` may see it: its secrets (core/redact.ts) and result are its owner's and admins' business. */
  private visible(t: Task, id: Identity): Task {
    if (this.isAdmin(id) || t.owner === id.name) return t;
    return { ...t, result: Buffer.alloc(0), spec: t.spec && secretsHidden(t.spec) };
  }

  async close(graceMs = 2000): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.listener?.stopAccepting();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.forceShutdown();
        resolve();
      }, graceMs);
      s.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    await this.listener?.close();
  }

  /** The node's mutual TLS, for the HTTP API (the same identities); unset: plaintext. */
  get tls(): TlsMaterial | undefined {
    return this.deps.tls;
  }

  /** What an error costs the log: unexpected ones in full, denials rate-limited (one rule for every transport). */
  readonly onError = (err: unknown): void => {
    if (!(err instanceof LoomError) || err.code === 'INTERNAL') this.deps.log(`api error: ${(err as Error).stack ?? err}`);
    else if (err.code === 'PERMISSION_DENIED') this.denials.write(`denied: ${err.message}`);
  };

  private handlers(): LoomServer {
    const opts: AdapterOptions = { onError: this.onError, identify: this.deps.tls ? identityOfCall : undefined };
    return { ...jobHandlers(this.jobs, opts), ...taskHandlers(this.ops(), opts) };
  }

  /** The API's calls, transport-free: gRPC (handlers) and HTTP (http-api.ts) serve the same. */
  ops(): TaskOps & JobOps {
    const d = this.deps;
    return {
      ...this.jobs,
      submit: async (req: SubmitRequest, { identity }): Promise<SubmitResponse> => ({ ids: await this.submit(req.tasks, identity) }),
      run: async (req: RunRequest, write: (m: RunEvent) => Promise<void>, { signal, identity }) => {
        if (!req.task) throw new LoomError('INVALID_ARGUMENT', 'run: no task given');
        // Taken before the submit: a caller over its limit gets an error and no task.
        const release = this.clientSlots.hold(identity);
        try {
          const [id] = await this.submit([req.task], identity);
          const ended = this.wait(id, signal);
          // A task that ends within RUN_ID_DELAY_MS gets one event with both (no
          // write and client wake-up while it starts); a longer one its id first.
          let timer: NodeJS.Timeout | undefined;
          let soon: Task | undefined;
          try {
            soon = await Promise.race([ended, new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), RUN_ID_DELAY_MS)))]);
          } catch (err) {
            // The task exists: the caller gets its id before the error.
            await write({ id, task: undefined }).catch(() => undefined);
            throw err;
          } finally {
            clearTimeout(timer);
          }
          if (!soon) await write({ id, task: undefined });
          await write({ id, task: this.visible(soon ?? (await ended), identity) });
        } finally {
          release();
        }
      },
      // Reads take the call's signal: a read queued behind others (Kv's cap
      // on reads in flight) for a caller that went away leaves the queue.
      get: async (req: GetRequest, { signal, identity }) => {
        const t = this.visible((await d.queries.get(req.id, signal)).task, identity);
        if (t.state !== TaskState.QUEUED) return t;
        // Say why a queued task waits, when no live node could run it.
        const why = explainUnplaceable(t.spec!, await d.queries.nodes(signal), t.submittedByAdmin);
        return why ? { ...t, reason: `waiting: ${why}` } : t;
      },
      list: async (req: ListRequest, { signal, identity }): Promise<ListResponse> => {
        if (req.state === TaskState.UNRECOGNIZED || req.state < 0 || req.state > TaskState.LOST) {
          throw new LoomError('INVALID_ARGUMENT', `unknown state ${req.state}`);
        }
        const res = await d.queries.list({ ...req, jobId: req.job ? (await d.jobs.get(req.job)).job.id : undefined }, signal);
        return { ...res, tasks: res.tasks.map((t) => this.visible(t, identity)) };
      },
      cancel: async (req: CancelRequest, { identity }) => this.visible(await this.cancel(req.id, identity), identity),
      cancelQueued: async (_req: CancelQueuedRequest, { signal, identity }) => this.cancelAllQueued(identity, signal),
      wait: async (req: WaitRequest, { signal, identity }) => {
        checkTaskId(req.id);
        const release = this.clientSlots.hold(identity);
        try {
          return this.visible(await this.wait(req.id, signal), identity);
        } finally {
          release();
        }
      },
      logs: async (req: LogsRequest, write: (m: LogChunk) => Promise<void>, { signal, identity }) => {
        checkTaskId(req.id);
        if (req.attempt > 0) {
          // One attempt's file, straight from this node: the log proxy between nodes.
          if (d.tls && identity.role !== 'node') {
            throw new LoomError(
              'PERMISSION_DENIED',
              `Logs of one attempt is a node-to-node call; ${identity.name} presented a ${identity.role} certificate, not a node certificate`,
              req.id,
            );
          }
        } else if (!this.isAdmin(identity)) {
          this.checkOwner((await d.queries.getShared(req.id, signal)).task, identity, 'read the logs of');
        }
        if (this.logStreams >= this.limits.logStreamsPerNode) {
          throw new LoomError('RESOURCE_EXHAUSTED', `too many log streams on this node (limit ${this.limits.logStreamsPerNode})`);
        }
        const release = this.clientSlots.hold(identity);
        this.logStreams++;
        try {
          await d.logs.stream(req.id, req.follow, req.attempt, write, signal);
        } finally {
          this.logStreams--;
          release();
        }
      },
      nodes: async (_req: NodesRequest, { signal }): Promise<NodesResponse> => Promise.all([d.queries.nodes(signal), d.queries.autoscaleGroups(signal)]).then(([nodes, autoscale]) => ({ nodes, autoscale })),
      drain: async (req: DrainRequest, { identity }): Promise<DrainResponse> => {
        if (!this.isAdmin(identity)) {
          throw new LoomError('PERMISSION_DENIED', `${identity.name} may not drain or resume nodes (only an admin, see --admin, may)`);
        }
        validateNodeName(req.name);
        const live = await d.queries.nodes();
        if (!live.some((n) => n.name === req.name)) {
          throw new LoomError('NOT_FOUND', `no live node named "${req.name}"`, req.name);
        }
        const deadline = Number(req.deadlineMs ?? 0);
        if (!Number.isFinite(deadline) || deadline < 0) throw new LoomError('INVALID_ARGUMENT', 'deadline must be >= 0');
        const control = { drain: req.drain, deadlineMs: req.drain && deadline > 0 ? Date.now() + deadline : 0 };
        await setNodeControl(d.kv, d.queries.keys, req.name, control);
        return { control };
      },
      members: async (_req, { signal }): Promise<MembersResponse> => {
        const [members, live] = await Promise.all([d.members.list(), d.queries.nodes(signal)]);
        const up = new Set(live.map((n) => n.name));
        return { members: members.map((m) => ({ ...m, nodeUp: up.has(m.name) })) };
      },
      removeMember: async (req: RemoveMemberRequest, { identity }): Promise<RemoveMemberResponse> => {
        if (!this.isAdmin(identity)) {
          throw new LoomError('PERMISSION_DENIED', `${identity.name} may not remove etcd members (only an admin, see --admin, may)`);
        }
        const which = (req.member ?? '').trim();
        if (!which) throw new LoomError('INVALID_ARGUMENT', 'name the etcd member to remove (its name, or its hex id)');
        const live = (await d.queries.nodes()).map((n) => n.name);
        const { removed, members } = await d.members.remove(which, live);
        d.log(`etcd member ${removed.name ? `"${removed.name}" ` : ''}(id ${removed.id}) removed from the cluster by ${identity.name}`);
        return { removed, members };
      },
    };
  }

  /** Cancels a task; with `identity`, only for its owner or an admin (internal callers pass none). */
  private async cancel(id: string, identity?: Identity): Promise<Task> {
    for (let i = 0; i < 10; i++) {
      const held: HeldTask = await this.deps.queries.getForUpdate(id, i);
      const t = held.task;
      if (identity) this.checkOwner(t, identity, 'cancel');
      if (isTerminal(t.state)) {
        throw new LoomError('INVALID_STATE', `task ${id} is already ${stateName(t.state)}`, id);
      }
      if (t.state === TaskState.RUNNING && t.cancelRequested) return t;
      const next =
        t.state === TaskState.QUEUED
          ? await this.deps.transitions.cancelQueued(held, Date.now())
          : await this.deps.transitions.requestCancel(held);
      if (next) return next;
    }
    throw new LoomError('CONFLICT', `task ${id} kept changing; try again`, id);
  }

  /**
   * Cancels every task queued when the scan reaches it that `identity` may
   * cancel (its own; an admin's: all). Reads the queued index a page at a
   * time (the next page while the current one is cancelled) and cancels
   * from the entries' snapshots (TaskTransitions.cancelQueuedSeen): no read
   * per task, and the cancels of a page share a few transactions.
   */
  private async cancelAllQueued(identity: Identity, signal: AbortSignal): Promise<CancelQueuedResponse> {
    const { queries, transitions } = this.deps;
    const admin = this.isAdmin(identity);
    const out: CancelQueuedResponse = { cancelled: 0, changed: 0 };
    let page = await queries.queuedPage(undefined, CANCEL_QUEUED_PAGE, signal);
    for (;;) {
      const next = page.more && page.last !== undefined ? queries.queuedPage(page.last, CANCEL_QUEUED_PAGE, signal) : undefined;
      next?.catch(() => undefined); // awaited below; this only keeps an early throw from leaving it unhandled
      const mine = admin ? page.entries : page.entries.filter((e) => e.snapshot.owner === identity.name);
      for (const t of await transitions.cancelQueuedSeen(mine, Date.now(), signal)) {
        if (t) out.cancelled++;
        else out.changed++;
      }
      if (!next) return out;
      page = await next;
    }
  }

  /** Records the tasks (one with room here is claimed in the same transaction); their ids in order. */
  private async submit(tasks: TaskSpec[], identity: Identity): Promise<string[]> {
    const d = this.deps;
    const admin = this.isAdmin(identity);
    const specs = await this.checks.specs(tasks, identity, admin);
    const now = Date.now();
    const records = specs.map((s) => d.transitions.newRecord(s, identity.name, now, admin));
    if (records.length === 1 && (await d.tryRunHere(records[0]))) return [records[0].id];
    await d.transitions.submit(records, undefined, d.maxQueuedPerOwner ?? 0);
    return records.map((r) => r.id);
  }

  /**
   * A job's tasks count against --max-queued-per-owner when they are queued,
   * but a job is queued later (after its dependencies) by whichever node
   * gets there, so it is checked once, at its submit, against the owner's
   * queue then: unlike a task submit, not guarded against the owner's
   * concurrent submits.
   */
  private async checkQueueRoom(owner: string, count: number): Promise<void> {
    const max = this.deps.maxQueuedPerOwner ?? 0;
    if (max <= 0) return;
    const { count: queued } = await this.deps.transitions.queuedOf(owner);
    if (queued + count > max) {
      throw new LoomError(
        'RESOURCE_EXHAUSTED',
        `${owner} has ${queued} tasks queued; a job of ${count} more would pass the limit of ${max} queued tasks per owner (--max-queued-per-owner): wait for some to run, or cancel some`,
      );
    }
  }

  private async wait(id: string, signal: AbortSignal): Promise<Task> {
    // Held here (the usual case right after a submit this node claimed): the
    // result this node commits is the answer, with no read before it.
    const here = this.deps.settledHere?.(id);
    if (here) {
      const written = await withAbort(here, signal, `wait for task ${id}`);
      if (written && isTerminal(written.state)) return written;
    }
    let held = await this.deps.queries.get(id, signal);
    while (!isTerminal(held.task.state)) {
      // A task running here: its result is known locally first (no watch round trip).
      const local = this.deps.settledHere?.(id);
      if (local) {
        // The record this node just committed: no read when it is final.
        const written = await local;
        if (written && isTerminal(written.state)) return written;
        held = await this.deps.queries.get(id, signal);
        continue;
      }
      const kv = await nextChange(this.deps.kv, this.deps.queries.keys.task(id), held.revision, signal);
      if (!kv) throw new LoomError('NOT_FOUND', `task ${id} was deleted`, id);
      held = { task: decodeTask(kv.value, id), revision: kv.mod_revision };
    }
    return held.task;
  }
}
