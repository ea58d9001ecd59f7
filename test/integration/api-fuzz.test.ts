/**
 * Property-based tests (fast-check) of what faces untrusted input: the API
 * handlers, driven through a real in-process gRPC server (over an in-memory
 * stand-in for etcd), and the record codec. Whatever arrives: no crash, no
 * unhandled rejection, and every error carries a stable loom code.
 */
import * as fc from 'fast-check';
import * as grpc from '@grpc/grpc-js';
import { v7 as uuidv7 } from 'uuid';
import { fakeEtcd } from '../support/fake-etcd';
import {
  CancelRequest, DrainRequest, GetRequest, ListRequest, LogsRequest, LoomService, NodeInfo, SubmitRequest, Task, TaskState, WaitRequest,
} from '../../src/gen/loom';
import { ApiServer } from '../../src/node/api-server';
import { testEtcdMembers } from '../support/members';
import { LogService } from '../../src/node/logs';
import { Kv } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { TaskQueries } from '../../src/store/queries';
import { TaskTransitions } from '../../src/store/transitions';
import { JobStore } from '../../src/store/jobs';
import { decodeNode, decodeTail, decodeTask, encodeNode, encodeTask } from '../../src/store/codec';
import { ERROR_CODES, isErrorCode, LoomError } from '../../src/core/errors';
import { LOOM_CODE_KEY } from '../../src/wire/grpc-errors';
import { LIMITS } from '../../src/core/spec';

jest.setTimeout(120_000);

const keys = new Keys('');
const QUEUED_ID = uuidv7();
const DONE_ID = uuidv7();

function record(id: string, state: TaskState): Task {
  return Task.fromPartial({ id, spec: { command: ['true'], env: { SECRET: 'x' }, priority: 100 }, state, owner: 'local', submittedAtMs: 1, attempt: state === TaskState.QUEUED ? 0 : 1 });
}

function fakeStore(): Map<string, Buffer> {
  return new Map<string, Buffer>([
    [keys.task(QUEUED_ID), encodeTask(record(QUEUED_ID, TaskState.QUEUED))],
    [keys.task(DONE_ID), encodeTask(record(DONE_ID, TaskState.COMPLETED))],
  ]);
}

/** A client whose requests are raw bytes and whose answers stay bytes. */
function rawClient(address: string) {
  const def: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(LoomService)) {
    def[name] = {
      ...(m as grpc.MethodDefinition<unknown, unknown>),
      requestSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    } as grpc.MethodDefinition<unknown, unknown>;
  }
  const Ctor = grpc.makeGenericClientConstructor(def as grpc.ServiceDefinition, 'RawLoom');
  return { client: new Ctor(address, grpc.credentials.createInsecure()) as unknown as Record<string, (...a: unknown[]) => unknown> & grpc.Client, def };
}

interface Outcome {
  ok: boolean;
  code?: string;
  message?: string;
}

function outcomeOf(err: grpc.ServiceError | null): Outcome {
  if (!err) return { ok: true };
  const code = err.metadata?.get(LOOM_CODE_KEY)[0];
  return { ok: false, code: code === undefined ? `grpc:${err.code}` : String(code), message: err.details };
}

function call(raw: ReturnType<typeof rawClient>, method: string, bytes: Buffer): Promise<Outcome> {
  const m = raw.def[method];
  const fn = raw.client[method].bind(raw.client);
  const deadline = Date.now() + 5000;
  if (m.responseStream) {
    return new Promise((resolve) => {
      const stream = fn(bytes, new grpc.Metadata(), { deadline }) as grpc.ClientReadableStream<Buffer>;
      stream.on('data', () => undefined);
      stream.on('error', (err: grpc.ServiceError) => resolve(outcomeOf(err)));
      stream.on('end', () => resolve({ ok: true }));
    });
  }
  return new Promise((resolve) => {
    fn(bytes, new grpc.Metadata(), { deadline }, (err: grpc.ServiceError | null) => resolve(outcomeOf(err)));
  });
}

/** A failed call must say which loom code it is. */
const seen = new Map<string, number>();

function expectStable(o: Outcome, what: string): void {
  const k = `${what}:${o.ok ? 'ok' : o.code}`;
  seen.set(k, (seen.get(k) ?? 0) + 1);
  if (o.ok) return;
  if (!o.code || !isErrorCode(o.code)) throw new Error(`${what}: no stable loom code (${o.code}: ${o.message})`);
  expect(o.message).toBeTruthy();
}

describe('API handlers under arbitrary input', () => {
  let server: ApiServer;
  let raw: ReturnType<typeof rawClient>;
  const unhandled: unknown[] = [];
  const logs: string[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);

  let etcdMembers: ReturnType<typeof testEtcdMembers>;
  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    const kv = new Kv(fakeEtcd(fakeStore()));
    const queries = new TaskQueries(kv, keys);
    const transitions = new TaskTransitions(kv, keys);
    const logService = { stream: async () => undefined, close: () => undefined } as unknown as LogService;
    etcdMembers = testEtcdMembers();
  server = new ApiServer({
      members: etcdMembers.members,
      kv, queries, transitions, logs: logService, log: (m) => logs.push(m),
      jobs: new JobStore(kv, keys, transitions),
      tryRunHere: async () => false,
    });
    const port = await server.listen('127.0.0.1:0');
    raw = rawClient(`127.0.0.1:${port}`);
  });

  afterAll(async () => {
    if (process.env.LOOM_TEST_VERBOSE) process.stderr.write(`outcomes: ${JSON.stringify([...seen].sort())}\n`);
    raw.client.close();
    await server.close(0);
    etcdMembers.close();
    process.removeListener('unhandledRejection', onUnhandled);
  });

  afterEach(() => {
    expect(unhandled).toEqual([]);
  });

  it('answers arbitrary bytes on every method with a stable code', async () => {
    const methods = Object.keys(raw.def);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...methods), fc.uint8Array({ maxLength: 512 }), async (method, bytes) => {
        expectStable(await call(raw, method, Buffer.from(bytes)), method);
      }),
      { numRuns: 400 },
    );
  });

  const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom('', '\0', 'a'.repeat(300), '../..', 'ls'));
  const id = fc.oneof(fc.constantFrom(QUEUED_ID, DONE_ID, 'not-an-id', ''), fc.uuid(), text);
  const int = fc.oneof(fc.integer(), fc.constantFrom(0, -1, 2 ** 31 - 1, -(2 ** 31)));
  const spec = fc.record(
    {
      name: text,
      command: fc.array(text, { maxLength: 6 }),
      env: fc.dictionary(text, text, { maxKeys: 5 }),
      cwd: text,
      timeoutMs: fc.oneof(int, fc.constantFrom(Number.MAX_SAFE_INTEGER, 31 * 86_400_000)),
      retries: fc.nat({ max: 1000 }),
      priority: int,
      restartOnNodeFailure: fc.boolean(),
      resources: fc.record({ cpu: fc.double(), memoryBytes: fc.nat(), diskBytes: fc.nat() }, { requiredKeys: [] }),
      constraints: fc.array(fc.record({ key: text, op: fc.constantFrom('=', '!=', '', '~'), value: text }), { maxLength: 3 }),
      pinNode: text,
      container: fc.option(fc.record({ image: text, pull: text, network: text, mounts: fc.array(fc.record({ host: text, container: text, readOnly: fc.boolean() }), { maxLength: 2 }) }), { nil: undefined }),
    },
    { requiredKeys: [] },
  );
  const requests: fc.Arbitrary<[string, Buffer]>[] = [
    fc.array(fc.oneof(spec, fc.record({ command: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }).map((a) => ['true', ...a]), priority: fc.nat({ max: 999 }), env: fc.dictionary(fc.stringMatching(/^[A-Z_][A-Z0-9_]{0,8}$/), fc.string({ maxLength: 8 }), { maxKeys: 3 }) })), { maxLength: 4 }).map((tasks) => ['submit', Buffer.from(SubmitRequest.encode(SubmitRequest.fromPartial({ tasks } as never)).finish())]),
    id.map((i) => ['get', Buffer.from(GetRequest.encode({ id: i }).finish())]),
    id.map((i) => ['cancel', Buffer.from(CancelRequest.encode({ id: i }).finish())]),
    id.map((i) => ['wait', Buffer.from(WaitRequest.encode({ id: i }).finish())]),
    fc.record({ id, follow: fc.boolean(), attempt: fc.nat() }).map((r) => ['logs', Buffer.from(LogsRequest.encode(r).finish())]),
    fc.record({ state: fc.integer({ min: -3, max: 20 }), node: text, pageSize: fc.nat(), pageToken: fc.oneof(text, text.map((t) => Buffer.from(t).toString('base64url'))) }).map((r) => [
      'list',
      Buffer.from(ListRequest.encode(r as ListRequest).finish()),
    ]),
    fc.record({ name: text, drain: fc.boolean(), deadlineMs: int }).map((r) => ['drain', Buffer.from(DrainRequest.encode(r).finish())]),
  ];

  it('answers arbitrary well-formed requests without an internal error', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(...requests), async ([method, bytes]) => {
        const o = await call(raw, method, bytes);
        expectStable(o, method);
        if (!o.ok && o.code === 'INTERNAL') throw new Error(`${method}: INTERNAL: ${o.message}`);
      }),
      { numRuns: 400 },
    );
    expect(logs.filter((l) => l.startsWith('api error'))).toEqual([]);
  });

  it('refuses a request over the size limit with RESOURCE_EXHAUSTED and the limit', async () => {
    const o = await call(raw, 'submit', Buffer.alloc(LIMITS.requestBytes + 1));
    expect(o).toMatchObject({ ok: false, code: `grpc:${grpc.status.RESOURCE_EXHAUSTED}` });
    expect(o.message).toContain(String(LIMITS.requestBytes));
  });

  it('maps a malformed request to INVALID_ARGUMENT, not a bare INTERNAL', async () => {
    const o = await call(raw, 'submit', Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]));
    expect(o).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
    expect(o.message).toMatch(/malformed request/);
  });

  it('maps a malformed large request (decoded in a turn of its own) to INVALID_ARGUMENT too', async () => {
    // A valid 2 MiB name field, then a truncated varint: over the size decoded later.
    const name = Buffer.alloc(2 * 1024 * 1024, 'n');
    const spec = Buffer.concat([Buffer.from([0x0a]), varint(name.length), name]);
    const bytes = Buffer.concat([Buffer.from([0x0a]), varint(spec.length), spec, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])]);
    const o = await call(raw, 'submit', bytes);
    expect(o).toMatchObject({ ok: false, code: 'INVALID_ARGUMENT' });
    expect(o.message).toMatch(/malformed request/);
  });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n > 0x7f; n >>>= 7) out.push((n & 0x7f) | 0x80);
  out.push(n);
  return Buffer.from(out);
}

describe('record codec under arbitrary bytes', () => {
  const stable = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      if (!(err instanceof LoomError)) throw new Error(`not a LoomError: ${String(err)}`);
      expect(ERROR_CODES[err.code]).toBeDefined();
    }
  };

  it('decodeTask, decodeNode and decodeTail return or throw a LoomError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1024 }), fc.option(fc.string(), { nil: undefined }), (bytes, expected) => {
        stable(() => decodeTask(bytes, expected));
        stable(() => decodeNode(bytes, expected));
        stable(() => decodeTail(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it('decodes mutated valid records without crashing', () => {
    const valid = encodeTask(record(uuidv7(), TaskState.RUNNING));
    const node = encodeNode(NodeInfo.fromPartial({ name: 'n1', address: '127.0.0.1:1', labels: { a: 'b' } }));
    fc.assert(
      fc.property(fc.nat({ max: valid.length - 1 }), fc.nat({ max: 255 }), fc.nat({ max: node.length - 1 }), (at, byte, nodeAt) => {
        const t = Buffer.from(valid);
        t[at] = byte;
        stable(() => decodeTask(t));
        const n = Buffer.from(node);
        n[nodeAt] = byte;
        stable(() => decodeNode(n, 'n1'));
      }),
      { numRuns: 2000 },
    );
  });
});
