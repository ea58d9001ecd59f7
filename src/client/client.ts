/**
 * LoomApi: a typed promise client for one loom node. Every method rejects
 * with a LoomError only (see fromGrpcError).
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
  type CancelQueuedResponse,
  JobSpec,
  type JobStatus,
  type ListJobsResponse,
  type NodeInfo,
  type Task,
  TaskSpec,
} from '../gen/loom';
import { cancelledError, fromGrpcError } from './errors';
import { channelCredentials, defaultClientTls, type TlsMaterial } from './tls';

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
}

export class LoomApi {
  readonly address: string;
  /** Does this client speak TLS? (Error messages differ.) */
  readonly secure: boolean;
  private readonly client: LoomClient;
  private readonly deadlineMs: number;

  constructor(address: string, opts: LoomApiOptions = {}) {
    this.address = address;
    this.deadlineMs = opts.deadlineMs ?? DEFAULT_DEADLINE_MS;
    const tls = opts.tls === undefined ? defaultClientTls() : opts.tls;
    this.secure = Boolean(tls);
    this.client = new LoomClient(address, tls ? channelCredentials(tls) : grpc.credentials.createInsecure(), {
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
  }

  /** Submits up to LIMITS.tasksPerSubmit specs; returns their ids in order. */
  async submit(specs: TaskSpec[], signal?: AbortSignal): Promise<string[]> {
    if (specs.length === 0) throw invalid('no tasks given');
    if (specs.length > LIMITS.tasksPerSubmit) {
      throw invalid(`${specs.length} tasks in one submit > limit ${LIMITS.tasksPerSubmit}`);
    }
    const res = await this.unary(this.client.submit, { tasks: specs.map((t) => TaskSpec.fromPartial(t)) }, { deadline: true, signal });
    if (res.ids.length !== specs.length) {
      throw new LoomError(
        'INTERNAL',
        `node returned ${res.ids.length} ids for ${specs.length} tasks`,
      );
    }
    return res.ids;
  }

  get(id: string, signal?: AbortSignal): Promise<Task> {
    return this.unary(this.client.get, { id }, { deadline: true, signal });
  }

  list(req: Partial<ListRequest>, signal?: AbortSignal): Promise<ListResponse> {
    return this.unary(this.client.list, ListRequest.fromPartial(req), { deadline: true, signal });
  }

  cancel(id: string, signal?: AbortSignal): Promise<Task> {
    return this.unary(this.client.cancel, { id }, { deadline: true, signal });
  }

  /**
   * Cancels every queued task of the caller (an admin's: every queued task).
   * No fixed deadline: the work grows with the queue (the scale benchmark: 100,000 in
   * about 40 s on 2 busy cores).
   */
  cancelQueued(signal?: AbortSignal): Promise<CancelQueuedResponse> {
    return this.unary(this.client.cancelQueued, {}, { deadline: false, signal });
  }

  /** Resolves with the task once it is terminal. No deadline. */
  wait(id: string, signal?: AbortSignal): Promise<Task> {
    return this.unary(this.client.wait, { id }, { deadline: false, signal });
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
      let call: grpc.ClientReadableStream<RunEvent>;
      try {
        call = this.client.run(RunRequest.fromPartial({ task: TaskSpec.fromPartial(spec) }));
      } catch (err) {
        return reject(fromGrpcError(err, this.address, this.secure));
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
      call.on('error', (err) => finish(fromGrpcError(err, this.address, this.secure)));
      call.on('end', () => finish(new LoomError('UNAVAILABLE', `${this.address} ended the run before the task ended`)));
    });
  }

  async nodes(signal?: AbortSignal): Promise<NodeInfo[]> {
    const res = await this.unary(this.client.nodes, {}, { deadline: true, signal });
    return res.nodes;
  }

  async submitJob(spec: JobSpec, signal?: AbortSignal): Promise<JobStatus> {
    return this.unary(this.client.submitJob, { spec: JobSpec.fromPartial(spec) }, { deadline: false, signal });
  }

  async getJob(job: string, signal?: AbortSignal): Promise<JobStatus> {
    return this.unary(this.client.getJob, { job }, { deadline: true, signal });
  }

  async listJobs(pageSize: number, pageToken: string, signal?: AbortSignal): Promise<ListJobsResponse> {
    return this.unary(this.client.listJobs, { pageSize, pageToken }, { deadline: true, signal });
  }

  async cancelJob(job: string, signal?: AbortSignal): Promise<JobStatus> {
    // Like submitJob: the work grows with the job (one guarded transaction
    // per open task), so no fixed deadline; the node finishes it either way.
    return this.unary(this.client.cancelJob, { job }, { deadline: false, signal });
  }

  /** Drain (or resume) the node named `name`; deadlineMs 0 = let tasks finish. */
  async drain(name: string, drain: boolean, deadlineMs = 0, signal?: AbortSignal): Promise<DrainResponse> {
    return this.unary(this.client.drain, { name, drain, deadlineMs }, { deadline: true, signal });
  }

  /**
   * The task's output as a stream of chunks. With `follow` it lasts until the
   * task is terminal. The call is cancelled when `signal` aborts (the
   * iterator then throws CANCELLED) or when the consumer stops iterating.
   */
  async *logs(id: string, follow: boolean, signal?: AbortSignal): AsyncIterable<LogChunk> {
    if (signal?.aborted) throw cancelledError();
    let call: grpc.ClientReadableStream<LogChunk>;
    try {
      call = this.client.logs(LogsRequest.fromPartial({ id, follow }));
    } catch (err) {
      throw fromGrpcError(err, this.address, this.secure);
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
      throw fromGrpcError(err, this.address, this.secure);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      // The consumer stopped early: tell the node we are gone.
      if (!finished) call.cancel();
    }
  }

  close(): void {
    this.client.close();
  }

  private unary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, opts: CallOpts): Promise<Res> {
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
        call = method.call(this.client, request, new grpc.Metadata(), options, (err, res) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(signal?.aborted ? cancelledError() : fromGrpcError(err, this.address, this.secure));
          else resolve(res);
        });
      } catch (err) {
        reject(fromGrpcError(err, this.address, this.secure));
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
