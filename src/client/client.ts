/**
 * LoomApi: a typed promise client for a loom cluster, through one node at a
 * time. Every method rejects with a LoomError only (see fromGrpcError).
 *
 * Given several node addresses ("a:8080,b:8080"), it talks to the first and
 * moves to the next when a node cannot be reached: a call that never reached
 * the node (no connection) is sent to the next one at once; a read (get,
 * list, wait, nodes, logs) is sent again there after any connection failure,
 * since reading twice is harmless. A change (submit, cancel, ...) that may
 * have reached a node is never sent twice: its error goes to the caller, and
 * the next call goes to the next node.
 */
import * as grpc from '@grpc/grpc-js';
import { LIMITS } from '../core/spec';
import { invalid, LoomError } from '../core/errors';
import {
  type LogChunk,
  ListRequest,
  LogsRequest,
  LoomClient,
  RunRequest,
  type RunEvent,
  type ListResponse,
  type DrainResponse,
  type MembersResponse,
  type RemoveMemberResponse,
  type CancelQueuedResponse,
  JobSpec,
  type JobStatus,
  type ListJobsResponse,
  type NodeInfo,
  type NodesResponse,
  type Task,
  TaskSpec,
} from '../gen/loom';
import { cancelledError, fromGrpcError, LOOM_CODE_KEY } from '../wire/grpc-errors';
import { channelCredentials, defaultClientTls, type TlsMaterial } from '../wire/tls';

export const DEFAULT_DEADLINE_MS = 10_000;

export interface LoomApiOptions {
  /** Deadline of unary calls other than Wait (default 10 s). */
  deadlineMs?: number;
  /**
   * Mutual TLS identity (see ./tls). Default: the process-wide one
   * (setDefaultClientTls; the CLI sets it from LOOM_TLS_*), else plaintext.
   * null: plaintext whatever the default.
   */
  tls?: TlsMaterial | null;
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

interface CallOpts {
  /** Apply the unary deadline (false for Wait). */
  deadline: boolean;
  signal?: AbortSignal;
  /** 'read': safe to send again to another node after any connection failure; 'change': only if it never left. */
  kind: 'read' | 'change';
}

/** A gRPC failure after which another node may be tried: the node could not be reached or stopped answering. */
function unreachable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED;
}

/**
 * A failure that certainly happened before the request reached the node: gRPC
 * found no connection. Not an error the node sent (it carries loom-code), whose
 * text may mention connections of the node's own.
 */
function neverSent(err: unknown): boolean {
  const e = err as { code?: unknown; details?: unknown; metadata?: grpc.Metadata };
  if (e?.code !== grpc.status.UNAVAILABLE || (e.metadata?.get(LOOM_CODE_KEY).length ?? 0) > 0) return false;
  return /No connection established|ECONNREFUSED|connect ECONN|failed to connect|Name resolution failed/i.test(String(e.details ?? ''));
}

/** "a:1,b:2" (or an array) → the addresses, in order, without blanks or repeats. */
export function splitAddresses(address: string | string[]): string[] {
  const list = (Array.isArray(address) ? address : address.split(',')).map((a) => a.trim()).filter(Boolean);
  if (list.length === 0) throw invalid('no node address given');
  return [...new Set(list)];
}

export class LoomApi {
  /** Every node this client may talk to, in the order given. */
  readonly addresses: string[];
  /** Does this client speak TLS? (Error messages differ.) */
  readonly secure: boolean;
  private readonly clients = new Map<string, LoomClient>();
  private current = 0;
  private readonly deadlineMs: number;
  private readonly credentials: grpc.ChannelCredentials;

  constructor(address: string | string[], opts: LoomApiOptions = {}) {
    this.addresses = splitAddresses(address);
    this.deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
    const tls = opts.tls === undefined ? defaultClientTls() : opts.tls;
    this.secure = Boolean(tls);
    this.credentials = tls ? channelCredentials(tls) : grpc.credentials.createInsecure();
  }

  /** The node this client talks to now. */
  get address(): string {
    return this.addresses[this.current];
  }

  private get client(): LoomClient {
    const address = this.address;
    let c = this.clients.get(address);
    if (!c) {
      c = new LoomClient(address, this.credentials, {
        'grpc.max_receive_message_length': LIMITS.requestBytes,
        'grpc.max_send_message_length': LIMITS.requestBytes,
        // Notice a silently dead node during a long Wait / Logs follow.
        'grpc.keepalive_time_ms': 30_000,
        'grpc.keepalive_timeout_ms': 10_000,
        // Per-call bookkeeping nothing here uses: channelz, and grpc-js's own retry
        // layer (no retry policy is configured; loom retries where it is safe).
        'grpc.enable_channelz': 0,
        'grpc.enable_retries': 0,
      });
      this.clients.set(address, c);
    }
    return c;
  }

  /** After a failure at `address` that says the node is gone: the next call goes to the next node. */
  private moveOn(address: string, err: unknown): boolean {
    if (this.addresses.length < 2 || !unreachable(err) || this.address !== address) return false;
    this.current = (this.current + 1) % this.addresses.length;
    return true;
  }

  /** Submits up to LIMITS.tasksPerSubmit specs; returns their ids in order. */
  async submit(specs: TaskSpec[], signal?: AbortSignal): Promise<string[]> {
    if (specs.length === 0) throw invalid('no tasks given');
    if (specs.length > LIMITS.tasksPerSubmit) {
      throw invalid(`${specs.length} tasks in one submit > limit ${LIMITS.tasksPerSubmit}`);
    }
    const res = await this.unary((c) => c.submit, { tasks: specs.map((t) => TaskSpec.fromPartial(t)) }, { deadline: true, signal, kind: 'change' });
    if (res.ids.length !== specs.length) {
      throw new LoomError(
        'INTERNAL',
        `node returned ${res.ids.length} ids for ${specs.length} tasks`,
      );
    }
    return res.ids;
  }

  get(id: string, signal?: AbortSignal): Promise<Task> {
    return this.unary((c) => c.get, { id }, { deadline: true, signal, kind: 'read' });
  }

  list(req: Partial<ListRequest>, signal?: AbortSignal): Promise<ListResponse> {
    return this.unary((c) => c.list, ListRequest.fromPartial(req), { deadline: true, signal, kind: 'read' });
  }

  cancel(id: string, signal?: AbortSignal): Promise<Task> {
    return this.unary((c) => c.cancel, { id }, { deadline: true, signal, kind: 'change' });
  }

  /**
   * Cancels every queued task of the caller (an admin's: every queued task).
   * No fixed deadline: the work grows with the queue (the scale benchmark: 100,000 in
   * about 40 s on 2 busy cores).
   */
  cancelQueued(signal?: AbortSignal): Promise<CancelQueuedResponse> {
    return this.unary((c) => c.cancelQueued, {}, { deadline: false, signal, kind: 'change' });
  }

  /** Resolves with the task once it is terminal. No deadline. */
  wait(id: string, signal?: AbortSignal): Promise<Task> {
    return this.unary((c) => c.wait, { id }, { deadline: false, signal, kind: 'read' });
  }

  /**
   * Submits one task and resolves with it once it is terminal, in one call
   * (Submit then Wait without the second round trip). `onId` gets the task's
   * id as soon as it is recorded. No deadline. If the call fails after the
   * submit, the error names the id (in its message and LoomError.subject):
   * the task exists and runs on; `wait(id)` picks it up again.
   */
  run(spec: TaskSpec, opts: { signal?: AbortSignal; onId?: (id: string) => void } = {}): Promise<Task> {
    const { signal, onId } = opts;
    return new Promise<Task>((resolve, reject) => {
      if (signal?.aborted) return reject(cancelledError());
      const address = this.address;
      let call: grpc.ClientReadableStream<RunEvent>;
      try {
        call = this.client.run(RunRequest.fromPartial({ task: TaskSpec.fromPartial(spec) }));
      } catch (err) {
        return reject(fromGrpcError(err, address, this.secure));
      }
      let id: string | undefined;
      let settled = false;
      const finish = (err: LoomError | undefined, task?: Task) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (err) reject(id && err.code !== 'CANCELLED' ? new LoomError(err.code, `task ${id}: ${err.message}`, id) : err);
        else resolve(task!);
      };
      const onAbort = () => {
        call.cancel();
        finish(cancelledError());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      call.on('data', (ev: RunEvent) => {
        if (id === undefined && ev.id) {
          id = ev.id;
          onId?.(id);
        }
        if (ev.task) finish(undefined, ev.task);
      });
      call.on('error', (err) => {
        // wait(id) or the next run goes to the next node if this one is gone.
        this.moveOn(address, err);
        finish(fromGrpcError(err, address, this.secure));
      });
      call.on('end', () => finish(new LoomError('UNAVAILABLE', `${address} ended the run before the task ended`)));
    });
  }

  async nodes(signal?: AbortSignal): Promise<NodeInfo[]> {
    return (await this.cluster(signal)).nodes;
  }

  /** The nodes, and each autoscaled group's last decision. */
  async cluster(signal?: AbortSignal): Promise<NodesResponse> {
    return this.unary((c) => c.nodes, {}, { deadline: true, signal, kind: 'read' });
  }

  async submitJob(spec: JobSpec, signal?: AbortSignal): Promise<JobStatus> {
    return this.unary((c) => c.submitJob, { spec: JobSpec.fromPartial(spec) }, { deadline: false, signal, kind: 'change' });
  }

  async getJob(job: string, signal?: AbortSignal): Promise<JobStatus> {
    return this.unary((c) => c.getJob, { job }, { deadline: true, signal, kind: 'read' });
  }

  async listJobs(pageSize: number, pageToken: string, signal?: AbortSignal): Promise<ListJobsResponse> {
    return this.unary((c) => c.listJobs, { pageSize, pageToken }, { deadline: true, signal, kind: 'read' });
  }

  async cancelJob(job: string, signal?: AbortSignal): Promise<JobStatus> {
    // Like submitJob: the work grows with the job (one guarded transaction
    // per open task), so no fixed deadline; the node finishes it either way.
    return this.unary((c) => c.cancelJob, { job }, { deadline: false, signal, kind: 'change' });
  }

  /** The etcd cluster's members, and whether each answers the node asked. */
  async members(signal?: AbortSignal): Promise<MembersResponse> {
    return this.unary((c) => c.members, {}, { deadline: true, signal, kind: 'read' });
  }

  /** Removes the etcd member (name or hex id) of a node that is gone for good. */
  async removeMember(member: string, signal?: AbortSignal): Promise<RemoveMemberResponse> {
    return this.unary((c) => c.removeMember, { member }, { deadline: true, signal, kind: 'change' });
  }

  /** Drain (or resume) the node named `name`; deadlineMs 0 = let tasks finish. */
  async drain(name: string, drain: boolean, deadlineMs = 0, signal?: AbortSignal): Promise<DrainResponse> {
    return this.unary((c) => c.drain, { name, drain, deadlineMs }, { deadline: true, signal, kind: 'change' });
  }

  /**
   * The task's output as a stream of chunks. With `follow` it lasts until the
   * task is terminal. The call is cancelled when `signal` aborts (the
   * iterator then throws CANCELLED) or when the consumer stops iterating.
   */
  async *logs(id: string, follow: boolean, signal?: AbortSignal): AsyncIterable<LogChunk> {
    if (signal?.aborted) throw cancelledError();
    const address = this.address;
    let call: grpc.ClientReadableStream<LogChunk>;
    try {
      call = this.client.logs(LogsRequest.fromPartial({ id, follow }));
    } catch (err) {
      throw fromGrpcError(err, address, this.secure);
    }
    const onAbort = () => call.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    let finished = false;
    try {
      for await (const chunk of call) {
        yield chunk as LogChunk;
      }
      finished = true;
    } catch (err) {
      finished = true;
      if (signal?.aborted) throw cancelledError();
      // The caller resumes (attach.ts): through the next node if this one is gone.
      this.moveOn(address, err);
      throw fromGrpcError(err, address, this.secure);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // The consumer stopped early: tell the node we are gone.
      if (!finished) call.cancel();
    }
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  /**
   * One call, to the current node; on to the next ones (each tried once)
   * while the failure allows it (see the header).
   */
  private async unary<Req, Res>(method: (c: LoomClient) => UnaryMethod<Req, Res>, request: Req, opts: CallOpts): Promise<Res> {
    const failed: LoomError[] = [];
    for (let tried = 1; ; tried++) {
      const address = this.address;
      const client = this.client;
      try {
        return await this.unaryOnce(client, method(client), request, opts);
      } catch (err) {
        if (opts.signal?.aborted) throw cancelledError();
        const e = fromGrpcError(err, address, this.secure);
        const again = opts.kind === 'read' || neverSent(err);
        if (!this.moveOn(address, err) || !again) throw e;
        failed.push(e);
        if (tried >= this.addresses.length) {
          throw new LoomError(e.code, `no loom node answers (${failed.map((f) => f.message).join('; ')})`);
        }
      }
    }
  }

  /** Rejects with the raw gRPC error (unary maps it). */
  private unaryOnce<Req, Res>(client: LoomClient, method: UnaryMethod<Req, Res>, request: Req, opts: CallOpts): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      const { signal } = opts;
      if (signal?.aborted) {
        reject(cancelledError());
        return;
      }
      const options: Partial<grpc.CallOptions> = opts.deadline
        ? { deadline: Date.now() + this.deadlineMs }
        : {};
      let call: grpc.ClientUnaryCall | undefined;
      const onAbort = () => call?.cancel();
      try {
        call = method.call(client, request, new grpc.Metadata(), options, (err, res) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(signal?.aborted ? cancelledError() : err);
          else resolve(res);
        });
      } catch (err) {
        reject(err);
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
