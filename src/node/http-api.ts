/**
 * The HTTP/JSON API (`loom node --http-listen HOST:PORT`): the same calls as
 * the gRPC API (task-ops.ts, so the same rules and permissions), for curl and
 * for programs without loom's proto. Served by fastify.
 *
 * Identity: with the node's TLS set-up (--tls-*) it is mutual TLS, the
 * client certificate names the caller as on the gRPC API, and a request
 * without an accepted certificate gets 403 PERMISSION_DENIED saying why.
 * Without TLS every caller is the local user (and the address must be
 * loopback unless --insecure, config.ts plaintextExposure).
 *
 * Errors: `{"error": {"code", "message", "subject"}}` with the HTTP status of
 * the code (core/errors.ts, the one table). Records are the proto messages'
 * JSON form (ts-proto toJSON: camelCase fields, enum names, bytes base64).
 */
import type { TLSSocket } from 'tls';
import type { IncomingMessage, ServerResponse } from 'http';
import fastify, { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  CancelQueuedResponse, DrainResponse, JobSpec, JobStatus, ListJobsResponse, ListResponse, LogStream, MembersResponse, NodesResponse, SubmitResponse, Task, TaskSpec,
  TaskState, taskStateFromJSON,
} from '../gen/loom';
import { ERROR_CODES, invalid, LoomError, toLoomError } from '../core/errors';
import { LIMITS } from '../core/spec';
import { parseHostPort } from '../core/config';
import type { TlsMaterial } from '../wire/tls';
import { CallContext } from './grpc-adapter';
import { TaskOps } from './task-ops';
import { JobOps } from './job-api';
import { EventHub } from './event-hub';
import type { ClusterSampler } from './cluster-sampler';
import type { AutoscaleStatus } from './autoscaler';
import { Identity, identityOf, LOCAL_IDENTITY } from './tls';
import { HTTP_ROUTES, openApiDocument, HttpRoute } from './http-routes';
import { DASHBOARD_HEADERS, dashboardAssets } from './dashboard';

type ApiOps = TaskOps & JobOps;

export interface HttpApiOptions {
  ops: ApiOps;
  /** The node's mutual TLS; unset: plaintext, every caller is the local user. */
  tls?: TlsMaterial;
  onError: (err: unknown) => void;
  nodeName: string;
  /** The live events of /api/v1/events. */
  events?: EventHub;
  /** The queue's last hour (/api/v1/queue). */
  sampler?: ClusterSampler;
  /** The autoscaler's status, when this node has a policy (/api/v1/autoscale). */
  autoscale?: () => AutoscaleStatus | undefined;
}

/** Longest `?timeout=` a wait may ask for (the default is 30 s). */
const MAX_WAIT_MS = 10 * 60_000;

type Query = Record<string, string | undefined>;
type Params = Record<string, string>;

interface Call {
  params: Params;
  query: Query;
  body: unknown;
  ctx: CallContext;
  raw: ServerResponse;
  events?: EventHub;
  sampler?: ClusterSampler;
  autoscale?: () => AutoscaleStatus | undefined;
}

/** What each route does; the paths, methods and documentation are in http-routes.ts. */
const HANDLERS: Record<string, (ops: ApiOps, c: Call) => Promise<unknown>> = {
  submitTasks: async (ops, c) => SubmitResponse.toJSON(await ops.submit({ tasks: specsOf(c.body) }, c.ctx)),
  listTasks: async (ops, c) => ListResponse.toJSON(await ops.list({
    state: c.query.state ? stateOf(c.query.state) : TaskState.TASK_STATE_UNSPECIFIED,
    node: c.query.node ?? '',
    job: c.query.job ?? '',
    owner: c.query.owner ?? '',
    pageSize: c.query.page_size ? wholeNumber(c.query.page_size, 'page_size') : 0,
    pageToken: c.query.page_token ?? '',
  }, c.ctx)),
  getTask: async (ops, c) => Task.toJSON(await ops.get({ id: c.params.id }, c.ctx)),
  cancelTask: async (ops, c) => Task.toJSON(await ops.cancel({ id: c.params.id }, c.ctx)),
  cancelQueued: async (ops, c) => CancelQueuedResponse.toJSON(await ops.cancelQueued({}, c.ctx)),
  waitTask: async (ops, c) => {
    const ms = c.query.timeout ? wholeNumber(c.query.timeout, 'timeout') : 30_000;
    if (ms < 1 || ms > MAX_WAIT_MS) throw invalid(`timeout must be from 1 to ${MAX_WAIT_MS} ms (got ${ms})`);
    const timeout = AbortSignal.timeout(ms);
    const signal = AbortSignal.any([c.ctx.signal, timeout]);
    try {
      return Task.toJSON(await ops.wait({ id: c.params.id }, { ...c.ctx, signal }));
    } catch (err) {
      if (!timeout.aborted || c.ctx.signal.aborted) throw err;
      throw new LoomError('DEADLINE_EXCEEDED', `task ${c.params.id} did not end within ${ms} ms`, c.params.id);
    }
  },
  taskLogs: (ops, c) => streamLogs(ops, c),
  events: (_ops, c) => streamEvents(c),
  listNodes: async (ops, c) => NodesResponse.toJSON(await ops.nodes({}, c.ctx)),
  drainNode: async (ops, c) => DrainResponse.toJSON(await ops.drain({ name: c.params.name, drain: true, deadlineMs: c.query.deadline ? wholeNumber(c.query.deadline, 'deadline') : 0 }, c.ctx)),
  resumeNode: async (ops, c) => DrainResponse.toJSON(await ops.drain({ name: c.params.name, drain: false, deadlineMs: 0 }, c.ctx)),
  autoscaleStatus: async (_ops, c) => c.autoscale?.() ?? { configured: false },
  queueHistory: async (_ops, c) => ({ everyMs: c.sampler?.everyMs ?? 0, samples: c.sampler?.history() ?? [] }),
  listMembers: async (ops, c) => MembersResponse.toJSON(await ops.members({}, c.ctx)),
  submitJob: async (ops, c) => JobStatus.toJSON(await ops.submitJob({ spec: jobSpecOf(c.body) }, c.ctx)),
  listJobs: async (ops, c) => ListJobsResponse.toJSON(await ops.listJobs({
    pageSize: c.query.page_size ? wholeNumber(c.query.page_size, 'page_size') : 0, pageToken: c.query.page_token ?? '',
  }, c.ctx)),
  getJob: async (ops, c) => JobStatus.toJSON(await ops.getJob({ job: c.params.job }, c.ctx)),
  cancelJob: async (ops, c) => JobStatus.toJSON(await ops.cancelJob({ job: c.params.job }, c.ctx)),
};

/** Fields a task spec and a job spec may have in JSON (their messages' own). */
const SPEC_FIELDS = new Set(Object.keys(TaskSpec.fromJSON({})));
const JOB_FIELDS = new Set(Object.keys(JobSpec.fromJSON({})));

/** A JSON object with only the fields of `known`: a misspelt field is refused by name, not ignored. */
function checkFields(item: unknown, known: Set<string>, what: string): Record<string, unknown> {
  if (!item || typeof item !== 'object' || Array.isArray(item)) throw invalid(`${what}: expected a JSON object`);
  const unknown = Object.keys(item).filter((k) => !known.has(k));
  if (unknown.length) throw invalid(`${what}: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 5).map((k) => `"${k.slice(0, 40)}"`).join(', ')} (it has ${[...known].join(', ')})`);
  return item as Record<string, unknown>;
}

function checkSpec(item: unknown, what: string): TaskSpec {
  const cmd = checkFields(item, SPEC_FIELDS, what).command;
  if (cmd !== undefined && (!Array.isArray(cmd) || cmd.some((a) => typeof a !== 'string'))) throw invalid(`${what}: "command" must be an array of strings`);
  return TaskSpec.fromJSON(item);
}

/** A job spec (JobSpec's JSON form: name, count, template, overrides by index, after, afterAny, labels). */
function jobSpecOf(body: unknown): JobSpec {
  const b = checkFields(body, JOB_FIELDS, 'job spec');
  if (b.template === undefined) throw invalid('job spec: "template" (the task spec of every task) is missing');
  checkSpec(b.template, 'job spec template');
  const overrides = b.overrides ?? {};
  if (typeof overrides !== 'object' || Array.isArray(overrides)) throw invalid('job spec: "overrides" must map task indexes to task specs');
  for (const [k, o] of Object.entries(overrides as object)) checkSpec(o, `job spec override ${k.slice(0, 20)}`);
  return JobSpec.fromJSON(b);
}

/** One spec (`{"command": [...]}`) or several (`{"tasks": [...]}`), with unknown fields refused by name. */
function specsOf(body: unknown): TaskSpec[] {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw invalid('expected a JSON object: a task spec ({"command": ["ls", "-l"]}) or {"tasks": [spec, ...]}');
  const b = body as Record<string, unknown>;
  const list = 'tasks' in b ? b.tasks : [b];
  if (!Array.isArray(list) || list.length === 0) throw invalid('"tasks" must be a non-empty array of task specs');
  return list.map((item, i) => checkSpec(item, `task ${i}`));
}

function stateOf(text: string): TaskState {
  const s = taskStateFromJSON(text.toUpperCase());
  if (s === TaskState.UNRECOGNIZED || s === TaskState.TASK_STATE_UNSPECIFIED) {
    throw invalid(`unknown state "${text.slice(0, 40)}": expected queued, running, completed, failed, cancelled or lost`);
  }
  return s;
}

function wholeNumber(text: string, what: string): number {
  const n = /^\d{1,12}$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) throw invalid(`${what} must be a whole number (got "${text.slice(0, 40)}")`);
  return n;
}

/**
 * A task's output as text/plain, both streams as they come (`?follow=1`:
 * until the task ends). Notices (output that is not available) are lines
 * of their own starting `loom: `; an error after the output began ends the
 * stream with such a line, since the status is already sent.
 */
async function streamLogs(ops: ApiOps, c: Call): Promise<undefined> {
  const out = c.raw;
  const begin = () => {
    if (!out.headersSent) out.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
  };
  const write = (data: Buffer | string): Promise<void> => {
    begin();
    if (out.destroyed) return Promise.reject(new LoomError('CANCELLED', 'client went away'));
    if (out.write(data)) return Promise.resolve();
    // Full: wait for the client to read, and give up when it goes (else the stream, and its slot, would wait forever).
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        out.off('drain', onDrain);
        out.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onDrain = () => done();
      const onClose = () => done(new LoomError('CANCELLED', 'client went away'));
      out.once('drain', onDrain);
      out.once('close', onClose);
    });
  };
  try {
    await ops.logs({ id: c.params.id, follow: c.query.follow === '1' || c.query.follow === 'true', attempt: 0 }, async (chunk) => {
      if (chunk.notice) await write(`loom: ${chunk.notice}\n`);
      if (chunk.data.length > 0 && chunk.stream !== LogStream.UNRECOGNIZED) await write(chunk.data);
    }, c.ctx);
  } catch (err) {
    if (!out.headersSent) throw err;
    const e = toLoomError(err);
    if (!out.destroyed) out.write(`\nloom: ${e.code}: ${e.message}\n`);
  }
  begin();
  out.end();
  return undefined;
}

/** Keep-alive comments on an idle event stream, so proxies and clients see it open. */
const EVENT_PING_MS = 15_000;

/** /api/v1/events: the node's EventHub, as text/event-stream, until the client goes (or is dropped). */
async function streamEvents(c: Call): Promise<undefined> {
  if (!c.events) throw new LoomError('UNAVAILABLE', 'this node serves no event stream');
  const out = c.raw;
  // Listened for before anything is awaited: a client that leaves at once must still end this.
  const gone = new Promise<void>((resolve) => {
    out.once('close', () => resolve());
    c.ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    if (c.ctx.signal.aborted) resolve();
  });
  out.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store' });
  out.write(': loom events\n\n');
  const remove = await c.events.add({
    buffered: () => out.writableLength,
    write: (text) => void (out.destroyed || out.write(text)),
    close: () => out.end(),
  });
  const ping = setInterval(() => void (out.destroyed || out.write(': ping\n\n')), EVENT_PING_MS);
  await gone;
  clearInterval(ping);
  remove();
  return undefined;
}

/** The error body and status of anything thrown. */
function errorReply(err: unknown): { status: number; body: { error: { code: string; message: string; subject?: string } } } {
  const fe = err as FastifyError;
  if (!(err instanceof LoomError) && typeof fe?.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    // fastify's own refusals: malformed JSON, a body over the limit, a wrong content type.
    return { status: fe.statusCode, body: { error: { code: 'INVALID_ARGUMENT', message: fe.message } } };
  }
  const e = toLoomError(err);
  return { status: ERROR_CODES[e.code].http, body: { error: { code: e.code, message: e.message, ...(e.subject ? { subject: e.subject } : {}) } } };
}

export class HttpApi {
  private app: FastifyInstance | undefined;

  constructor(private readonly o: HttpApiOptions) {}

  async listen(address: string): Promise<number> {
    const { host, port } = parseHostPort(address, '--http-listen');
    const tls = this.o.tls;
    const app = fastify({
      logger: false,
      bodyLimit: LIMITS.requestBytes,
      // A stopping node closes every connection, event streams and followed logs too, instead of waiting for them.
      forceCloseConnections: true,
      ...(tls ? { https: { key: tls.key, cert: tls.cert, ca: tls.ca, requestCert: true, rejectUnauthorized: false } } : {}),
    }) as unknown as FastifyInstance;
    app.setErrorHandler((err, _req, reply) => {
      const { status, body } = errorReply(err);
      // A client's bad request is not the node's failure: logged (or not) as loom's own refusals are.
      this.o.onError(err instanceof LoomError || status >= 500 ? err : new LoomError('INVALID_ARGUMENT', body.error.message));
      void reply.code(status).send(body);
    });
    app.setNotFoundHandler((req, reply) => {
      const { status, body } = errorReply(new LoomError('NOT_FOUND', `no such endpoint: ${req.method} ${req.url.split('?')[0].slice(0, 200)} (see /api/v1/openapi.json)`));
      void reply.code(status).send(body);
    });
    const doc = openApiDocument(this.o.nodeName);
    app.get('/api/v1/openapi.json', async () => doc);
    for (const route of HTTP_ROUTES) this.register(app, route);
    for (const [url, asset] of dashboardAssets()) {
      app.get(url, async (_req, reply) => reply.headers(DASHBOARD_HEADERS).type(asset.type).send(asset.body));
    }
    try {
      await app.listen({ host: host.replace(/^\[|\]$/g, ''), port });
    } catch (err) {
      await app.close().catch(() => undefined);
      throw new LoomError('UNAVAILABLE', `cannot listen on ${address} (--http-listen): ${(err as Error).message}`);
    }
    this.app = app;
    const addr = app.server.address();
    return typeof addr === 'object' && addr ? addr.port : port;
  }

  private register(app: FastifyInstance, route: HttpRoute): void {
    const handler = HANDLERS[route.operationId];
    app.route({
      method: route.method,
      url: route.path.replace(/\{(\w+)\}/g, ':$1'),
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        const identity = this.identify(req.raw);
        const controller = new AbortController();
        reply.raw.on('close', () => {
          if (!reply.raw.writableFinished) controller.abort(new LoomError('CANCELLED', 'client went away'));
        });
        const call: Call = { params: req.params as Params, query: req.query as Query, body: req.body, ctx: { signal: controller.signal, identity }, raw: reply.raw, events: this.o.events, sampler: this.o.sampler, autoscale: this.o.autoscale };
        if (route.streams) {
          reply.hijack();
          try {
            await handler(this.o.ops, call);
          } catch (err) {
            this.o.onError(err);
            const { status, body } = errorReply(err);
            if (!reply.raw.headersSent) reply.raw.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
            reply.raw.end(JSON.stringify(body));
          }
          return reply;
        }
        return handler(this.o.ops, call);
      },
    });
  }

  /** The caller: the local user without TLS; with it, the accepted client certificate's identity. */
  private identify(req: IncomingMessage): Identity {
    if (!this.o.tls) return LOCAL_IDENTITY;
    const socket = req.socket as TLSSocket;
    const cert = socket.getPeerCertificate?.();
    if (!cert || !cert.raw) throw new LoomError('PERMISSION_DENIED', `node ${this.o.nodeName} requires a client certificate (see \`loom certs issue\`)`);
    if (!socket.authorized) {
      throw new LoomError('PERMISSION_DENIED', `node ${this.o.nodeName} refused the client certificate CN=${String(cert.subject?.CN ?? '?').slice(0, 64)}: ${String(socket.authorizationError ?? 'not signed by the cluster CA')}`);
    }
    const id = identityOf(cert);
    if (typeof id === 'string') throw new LoomError('PERMISSION_DENIED', `not authenticated: ${id}`);
    return id;
  }

  async close(): Promise<void> {
    const app = this.app;
    this.app = undefined;
    await app?.close();
  }
}
