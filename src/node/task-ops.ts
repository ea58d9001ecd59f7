/**
 * The task, node and member calls of the API as plain async functions
 * (ApiServer.ops): gRPC (taskHandlers, through grpc-adapter) and HTTP
 * (http-api.ts) serve the same functions, so a rule lives in one place
 * whatever the transport.
 */
import type { LoomServer } from '../gen/loom';
import {
  CancelQueuedRequest, CancelQueuedResponse, CancelRequest, DrainRequest, DrainResponse, GetRequest, ListRequest, ListResponse,
  LogChunk, LogsRequest, MembersRequest, MembersResponse, NodesRequest, NodesResponse, RemoveMemberRequest, RemoveMemberResponse,
  RunEvent, RunRequest, SubmitRequest, SubmitResponse, Task, WaitRequest,
} from '../gen/loom';
import { AdapterOptions, CallContext, serverStream, unary } from './grpc-adapter';

export type UnaryOp<Req, Res> = (req: Req, ctx: CallContext) => Promise<Res>;
export type StreamOp<Req, Res> = (req: Req, write: (msg: Res) => Promise<void>, ctx: CallContext) => Promise<void>;

export interface TaskOps {
  submit: UnaryOp<SubmitRequest, SubmitResponse>;
  run: StreamOp<RunRequest, RunEvent>;
  get: UnaryOp<GetRequest, Task>;
  list: UnaryOp<ListRequest, ListResponse>;
  cancel: UnaryOp<CancelRequest, Task>;
  cancelQueued: UnaryOp<CancelQueuedRequest, CancelQueuedResponse>;
  wait: UnaryOp<WaitRequest, Task>;
  logs: StreamOp<LogsRequest, LogChunk>;
  nodes: UnaryOp<NodesRequest, NodesResponse>;
  drain: UnaryOp<DrainRequest, DrainResponse>;
  members: UnaryOp<MembersRequest, MembersResponse>;
  removeMember: UnaryOp<RemoveMemberRequest, RemoveMemberResponse>;
}

type TaskHandlers = Pick<LoomServer, keyof TaskOps>;

export function taskHandlers(ops: TaskOps, opts: AdapterOptions): TaskHandlers {
  return {
    submit: unary(ops.submit, opts),
    run: serverStream(ops.run, opts),
    get: unary(ops.get, opts),
    list: unary(ops.list, opts),
    cancel: unary(ops.cancel, opts),
    cancelQueued: unary(ops.cancelQueued, opts),
    wait: unary(ops.wait, opts),
    logs: serverStream(ops.logs, opts),
    nodes: unary(ops.nodes, opts),
    drain: unary(ops.drain, opts),
    members: unary(ops.members, opts),
    removeMember: unary(ops.removeMember, opts),
  };
}
