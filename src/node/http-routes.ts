/**
 * The routes of the HTTP/JSON API and the OpenAPI 3 document made from them
 * (served at /api/v1/openapi.json): one table, so the document cannot list
 * a route the server lacks or miss one it has. What each does: http-api.ts.
 */
import { ERROR_CODES, ErrorCode } from '../core/errors';

export interface HttpRoute {
  method: 'GET' | 'POST';
  /** OpenAPI path template: `{id}` for a path parameter. */
  path: string;
  operationId: string;
  summary: string;
  query?: Record<string, string>;
  /** A JSON request body, described. */
  body?: string;
  /** What a 200 carries. */
  returns: string;
  /** The answer is a stream, not one JSON value. */
  streams?: boolean;
  /** Its content type when not JSON (default for streams: text/plain). */
  contentType?: string;
  /** The loom error codes this route answers with, besides the ones every route may. */
  errors: ErrorCode[];
}

const TASK = 'a task record (Task in proto/loom.proto, JSON form)';

export const HTTP_ROUTES: readonly HttpRoute[] = [
  {
    method: 'POST', path: '/api/v1/tasks', operationId: 'submitTasks', summary: 'Submit one task or several',
    body: 'a task spec ({"command": ["ls", "-l"]}, TaskSpec in proto/loom.proto) or {"tasks": [spec, ...]}',
    returns: '{"ids": [...]}: the new tasks\' ids, in order', errors: ['INVALID_ARGUMENT', 'RESOURCE_EXHAUSTED'],
  },
  {
    method: 'GET', path: '/api/v1/tasks', operationId: 'listTasks', summary: 'List tasks, a page at a time',
    query: { state: 'queued, running, completed, failed, cancelled or lost (default: all)', node: 'only tasks of this node', job: 'only tasks of this job (id or name)',
      owner: 'only tasks of this owner (filters each page: a page may be short; follow nextPageToken)', page_size: 'tasks per page', page_token: 'nextPageToken of the page before' },
    returns: '{"tasks": [...], "nextPageToken": "..."} (empty token: the last page)', errors: ['INVALID_ARGUMENT'],
  },
  { method: 'GET', path: '/api/v1/tasks/{id}', operationId: 'getTask', summary: 'One task', returns: TASK, errors: ['NOT_FOUND', 'INVALID_ARGUMENT'] },
  {
    method: 'POST', path: '/api/v1/tasks/{id}/cancel', operationId: 'cancelTask', summary: 'Cancel a task (its owner or an admin)',
    returns: `${TASK}: cancelled if it was queued, cancelRequested if it runs`, errors: ['NOT_FOUND', 'INVALID_STATE', 'PERMISSION_DENIED', 'CONFLICT'],
  },
  {
    method: 'POST', path: '/api/v1/tasks/cancel-queued', operationId: 'cancelQueued', summary: 'Cancel every queued task the caller may cancel',
    returns: '{"cancelled": N, "changed": M}', errors: [],
  },
  {
    method: 'GET', path: '/api/v1/tasks/{id}/wait', operationId: 'waitTask', summary: 'Wait for a task to end',
    query: { timeout: 'milliseconds to wait (default 30000, at most 600000)' },
    returns: `${TASK} in its final state`, errors: ['NOT_FOUND', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED'],
  },
  {
    method: 'GET', path: '/api/v1/tasks/{id}/logs', operationId: 'taskLogs', summary: 'A task\'s output (its owner or an admin)',
    query: { follow: '1: keep the stream open until the task ends' },
    returns: 'text/plain: stdout and stderr as they were written; lines starting "loom: " are notices', streams: true,
    errors: ['NOT_FOUND', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED'],
  },
  { method: 'GET', path: '/api/v1/nodes', operationId: 'listNodes', summary: 'The live nodes', returns: '{"nodes": [...]} (NodeInfo)', errors: [] },
  {
    method: 'POST', path: '/api/v1/nodes/{name}/drain', operationId: 'drainNode', summary: 'Drain a node: it takes no new tasks (admins)',
    query: { deadline: 'milliseconds after which what still runs there is requeued (default: let it finish)' },
    returns: '{"control": {...}}', errors: ['NOT_FOUND', 'PERMISSION_DENIED', 'INVALID_ARGUMENT'],
  },
  { method: 'POST', path: '/api/v1/nodes/{name}/resume', operationId: 'resumeNode', summary: 'Resume a drained node (admins)', returns: '{"control": {...}}', errors: ['NOT_FOUND', 'PERMISSION_DENIED'] },
  {
    method: 'POST', path: '/api/v1/jobs', operationId: 'submitJob', summary: 'Submit a job: count tasks from a template, with overrides and dependencies',
    body: 'a job spec (JobSpec in proto/loom.proto): {"name": "render", "count": 100, "template": {"command": ["render", "{{index}}"]}, "overrides": {"0": {...}}, "after": ["prepare"]}',
    returns: 'the job\'s status: {"job": {...}, "counts": {...}}', errors: ['INVALID_ARGUMENT', 'RESOURCE_EXHAUSTED', 'CONFLICT'],
  },
  {
    method: 'GET', path: '/api/v1/jobs', operationId: 'listJobs', summary: 'List jobs, a page at a time',
    query: { page_size: 'jobs per page', page_token: 'nextPageToken of the page before' }, returns: '{"jobs": [...], "nextPageToken": "..."}', errors: ['INVALID_ARGUMENT'],
  },
  { method: 'GET', path: '/api/v1/jobs/{job}', operationId: 'getJob', summary: 'A job and its tasks\' counts by state (by id or name)', returns: '{"job": {...}, "counts": {...}}', errors: ['NOT_FOUND'] },
  {
    method: 'POST', path: '/api/v1/jobs/{job}/cancel', operationId: 'cancelJob', summary: 'Cancel a job and its open tasks (its owner or an admin)',
    returns: '{"job": {...}, "counts": {...}}', errors: ['NOT_FOUND', 'INVALID_STATE', 'PERMISSION_DENIED', 'CONFLICT'],
  },
  {
    method: 'GET', path: '/api/v1/events', operationId: 'events', summary: 'Live events (Server-Sent Events)', streams: true, contentType: 'text/event-stream',
    returns: 'events "task" ({id, state, node, revision}: each state change), "nodes" ({nodes: [...]}: at once and on each change), ' +
      '"queue" ({queued, slotsFree, atMs}: every second), "dropped" (then the stream ends: the client read too slowly)',
    errors: [],
  },
  {
    method: 'GET', path: '/api/v1/queue', operationId: 'queueHistory', summary: 'The queue over the last hour, as this node sampled it',
    returns: '{"everyMs": 10000, "samples": [{atMs, queued, slotsFree, started}, ...]} oldest first; started: tasks the live nodes started since the sample before',
    errors: [],
  },
  {
    method: 'GET', path: '/api/v1/autoscale', operationId: 'autoscaleStatus', summary: 'The autoscaler of this node\'s --autoscale policy',
    returns: '{"group", "leading", "min", "max", "state": {"target", "applied", "observed", "removing", "reason", "leader", "atMs", ...}}, or {"configured": false}',
    errors: [],
  },
  { method: 'GET', path: '/api/v1/members', operationId: 'listMembers', summary: 'The etcd members', returns: '{"members": [...]}', errors: ['UNAVAILABLE'] },
];

/** Errors any route may answer with. */
const ALWAYS: ErrorCode[] = ['PERMISSION_DENIED', 'UNAVAILABLE', 'INTERNAL'];

const ERROR_SCHEMA = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string', enum: Object.keys(ERROR_CODES), description: 'loom\'s stable error code' },
        message: { type: 'string' },
        subject: { type: 'string', description: 'the task or node the error concerns' },
      },
    },
  },
};

/** The OpenAPI 3.0 document of HTTP_ROUTES. */
export function openApiDocument(nodeName: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of HTTP_ROUTES) {
    const params = [
      ...[...r.path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } })),
      ...Object.entries(r.query ?? {}).map(([name, description]) => ({ name, in: 'query', required: false, description, schema: { type: 'string' } })),
    ];
    const responses: Record<string, unknown> = {
      200: { description: r.returns, content: r.streams ? { [r.contentType ?? 'text/plain']: { schema: { type: 'string' } } } : { 'application/json': { schema: { type: 'object' } } } },
    };
    for (const code of new Set([...r.errors, ...ALWAYS])) {
      const status = String(ERROR_CODES[code].http);
      const seen = responses[status] as { description: string } | undefined;
      responses[status] = { description: seen ? `${seen.description}, ${code}` : code, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
    }
    paths[r.path] = {
      ...paths[r.path],
      [r.method.toLowerCase()]: {
        operationId: r.operationId,
        summary: r.summary,
        ...(params.length ? { parameters: params } : {}),
        ...(r.body ? { requestBody: { required: true, description: r.body, content: { 'application/json': { schema: { type: 'object' } } } } } : {}),
        responses,
      },
    };
  }
  return {
    openapi: '3.0.3',
    info: { title: 'loom HTTP API', version: '1', description: `Served by every loom node (this one: ${nodeName}). Same calls and permissions as the gRPC API.` },
    paths,
    components: { schemas: { Error: ERROR_SCHEMA } },
  };
}
