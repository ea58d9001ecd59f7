/**
 * Wait against a real etcd: a task held by the node answering is answered
 * from the result the node commits, with no read; any other task is read
 * and watched.
 */
import { Etcd3 } from 'etcd3';
import { Task, TaskState } from '../../src/gen/loom';
import { LoomApi } from '../../src/client/client';
import { validateSpec } from '../../src/core/spec';
import { ApiServer } from '../../src/node/api-server';
import { testEtcdMembers } from '../support/members';
import { LogService } from '../../src/node/logs';
import { connectEtcd, Kv } from '../../src/etcd/client';
import { JobStore } from '../../src/store/jobs';
import { Keys } from '../../src/store/keys';
import { TaskQueries } from '../../src/store/queries';
import { TaskTransitions } from '../../src/store/transitions';
import { testEtcdEndpoint, uniqueRoot } from '../support/etcd';

let client: Etcd3;
let server: ApiServer;
let api: LoomApi;
let tr: TaskTransitions;
const reads: string[] = [];
/** Tasks "held here": the result the node will commit, released by the test. */
const held = new Map<string, { result: Promise<Task | undefined>; settle: (t: Task | undefined) => void }>();

let etcdMembers: ReturnType<typeof testEtcdMembers>;
beforeAll(async () => {
  client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
  const kv = new Kv(client);
  const spy: Kv = Object.create(kv);
  spy.range = (req, what, signal) => {
    reads.push(what);
    return kv.range(req, what, signal);
  };
  const keys = new Keys(uniqueRoot());
  tr = new TaskTransitions(kv, keys);
  etcdMembers = testEtcdMembers();
  server = new ApiServer({
    members: etcdMembers.members,
    kv: spy, queries: new TaskQueries(spy, keys), transitions: tr, log: () => undefined,
    logs: { stream: async () => undefined, close: () => undefined } as unknown as LogService,
    jobs: new JobStore(kv, keys, tr),
    tryRunHere: async () => false,
    settledHere: (id) => held.get(id)?.result,
  });
  api = new LoomApi(`127.0.0.1:${await server.listen('127.0.0.1:0')}`);
});

afterAll(async () => {
  api.close();
  await server.close(0);
  etcdMembers.close();
  client.close();
});

const spec = () => validateSpec({ name: '', command: ['true'], env: {}, cwd: '', timeoutMs: 0, retries: 0 });

function holdHere(id: string) {
  let settle!: (t: Task | undefined) => void;
  const result = new Promise<Task | undefined>((resolve) => (settle = resolve));
  held.set(id, { result, settle });
  return settle;
}

/** A queued task held here, and a Wait on it (reads counted from the call on). */
async function waitOnHeldTask() {
  const record = tr.newRecord(spec(), 'me', Date.now());
  await tr.submit([record]);
  const settle = holdHere(record.id);
  reads.length = 0;
  return { record, settle, waiting: api.wait(record.id) };
}

test('a task held here is answered from the result this node commits, with no read', async () => {
  const { record, settle, waiting } = await waitOnHeldTask();
  const done: Task = { ...record, state: TaskState.COMPLETED, exitCode: 0, reason: 'exit 0' };
  settle(done);
  expect(await waiting).toMatchObject({ id: record.id, state: TaskState.COMPLETED, exitCode: 0 });
  expect(reads).toEqual([]);
});

test('a task held here that ends without a result of this node (handed back) is read and watched', async () => {
  const { record, settle, waiting } = await waitOnHeldTask();
  settle(undefined);
  held.delete(record.id);
  // Cancelled elsewhere: the wait must see it through etcd.
  const cancelled = await tr.cancelQueued(await new TaskQueries(new Kv(client), tr.keys).get(record.id), Date.now());
  expect(cancelled).toBeDefined();
  expect(await waiting).toMatchObject({ id: record.id, state: TaskState.CANCELLED });
  expect(reads.length).toBeGreaterThan(0);
});
