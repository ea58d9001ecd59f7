/** The gRPC API every node serves. Handlers return or throw; see grpc-adapter. */
import * as grpc from '@grpc/grpc-js';
import {
  CancelRequest, GetRequest, ListRequest, ListResponse, LoomService, LoomServer, NodesResponse,
  SubmitRequest, SubmitResponse, Task, TaskState, WaitRequest, LogsRequest, LogChunk, NodesRequest,
  DrainRequest, DrainResponse,
} from '../gen/loom';
import { LoomError } from '../core/errors';
import { isTerminal, stateName } from '../core/lifecycle';
import { LIMITS, validateBatch } from '../core/spec';
import { checkTaskId } from '../store/keys';
import { setNodeControl } from '../store/node-control';
import { validateNodeName } from '../core/config';
import { explainUnplaceable } from '../core/fit';
import { nextChange } from '../store/key-watch';
import { Kv } from '../store/etcd';
import { decodeTask } from '../store/codec';
import { TaskQueries } from '../store/queries';
import { HeldTask, TaskTransitions } from '../store/transitions';
import { serverStream, unary } from './grpc-adapter';
import { LogService } from './logs';

export interface ApiDeps {
  kv: Kv;
  queries: TaskQueries;
  transitions: TaskTransitions;
  logs: LogService;
  /** Claims a freshly submitted task locally when this node has room. */
  tryRunHere: (record: Task) => Promise<boolean>;
  log: (msg: string) => void;
}

const MAX_LOG_STREAMS = 10_000;

export class ApiServer {
  private server: grpc.Server | undefined;
  private logStreams = 0;

  constructor(private readonly deps: ApiDeps) {}

  async listen(address: string): Promise<number> {
    const server = new grpc.Server({
      'grpc.max_receive_message_length': LIMITS.requestBytes,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
    });
    server.addService(LoomService, this.handlers());
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(new LoomError('UNAVAILABLE', `cannot listen on ${address}: ${err.message}`)) : resolve(p),
      ),
    );
    this.server = server;
    return port;
  }

  async close(graceMs = 2000): Promise<void> {
    const s = this.server;
    if (!s) return;
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
  }

  private handlers(): LoomServer {
    const d = this.deps;
    const onError = (err: unknown) => {
      if (!(err instanceof LoomError) || err.code === 'INTERNAL') d.log(`api error: ${(err as Error).stack ?? err}`);
    };
    return {
      submit: unary(async (req: SubmitRequest): Promise<SubmitResponse> => {
        const specs = validateBatch(req.tasks);
        const now = Date.now();
        const records = specs.map((s) => d.transitions.newRecord(s, 'local', now));
        if (records.length === 1 && (await d.tryRunHere(records[0]))) return { ids: [records[0].id] };
        await d.transitions.submit(records);
        return { ids: records.map((r) => r.id) };
      }, onError),
      get: unary(async (req: GetRequest) => {
        const t = (await d.queries.get(req.id)).task;
        if (t.state !== TaskState.QUEUED) return t;
        // Say why a queued task waits, when no live node could run it.
        const why = explainUnplaceable(t.spec!, await d.queries.nodes());
        return why ? { ...t, reason: `waiting: ${why}` } : t;
      }, onError),
      list: unary(async (req: ListRequest): Promise<ListResponse> => {
        if (req.state === TaskState.UNRECOGNIZED || req.state < 0 || req.state > TaskState.LOST) {
          throw new LoomError('INVALID_ARGUMENT', `unknown state ${req.state}`);
        }
        return d.queries.list({ state: req.state, node: req.node, pageSize: req.pageSize, pageToken: req.pageToken });
      }, onError),
      cancel: unary(async (req: CancelRequest) => this.cancel(req.id), onError),
      wait: unary(async (req: WaitRequest, signal) => this.wait(req.id, signal), onError),
      logs: serverStream(async (req: LogsRequest, write: (m: LogChunk) => Promise<void>, signal) => {
        checkTaskId(req.id);
        if (this.logStreams >= MAX_LOG_STREAMS) {
          throw new LoomError('RESOURCE_EXHAUSTED', `too many log streams on this node (limit ${MAX_LOG_STREAMS})`);
        }
        this.logStreams++;
        try {
          await d.logs.stream(req.id, req.follow, req.attempt, write, signal);
        } finally {
          this.logStreams--;
        }
      }, onError),
      nodes: unary(async (_req: NodesRequest): Promise<NodesResponse> => ({ nodes: await d.queries.nodes() }), onError),
      drain: unary(async (req: DrainRequest): Promise<DrainResponse> => {
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
      }, onError),
    };
  }

  private async cancel(id: string): Promise<Task> {
    for (let i = 0; i < 10; i++) {
      const held: HeldTask = await this.deps.queries.get(id);
      const t = held.task;
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

  private async wait(id: string, signal: AbortSignal): Promise<Task> {
    let held = await this.deps.queries.get(id, signal);
    while (!isTerminal(held.task.state)) {
      const kv = await nextChange(this.deps.kv, this.deps.queries.keys.task(id), held.revision, signal);
      if (!kv) throw new LoomError('NOT_FOUND', `task ${id} was deleted`, id);
      held = { task: decodeTask(kv.value, id), revision: kv.mod_revision };
    }
    return held.task;
  }
}
