/** The retention sweep deletes only what finished long enough ago. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TaskState } from '../../src/gen/loom';
import { Etcd3 } from 'etcd3';
import { connectEtcd, Kv, put, prefixEnd } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { timeBucketOf } from '../../src/core/ids';
import { TaskQueries } from '../../src/store/queries';
import { TaskTransitions } from '../../src/store/transitions';
import { JobStore } from '../../src/store/jobs';
import { sweepFinished } from '../../src/store/retention';
import { RetentionSweeper } from '../../src/node/retention-sweeper';
import { validateSpec } from '../../src/core/spec';
import { uuidAt } from '../support/ids';
import { testEtcdEndpoint, uniqueRoot } from '../support/etcd';

let client: Etcd3;
let kv: Kv;
beforeAll(() => {
  client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
  kv = new Kv(client);
});
afterAll(() => client.close());

const hour = 3_600_000;
const spec = validateSpec({ command: ['true'] });

/** A store under a fresh key root. */
function store() {
  const keys = new Keys(uniqueRoot());
  return { keys, tr: new TaskTransitions(kv, keys), q: new TaskQueries(kv, keys) };
}

test('retention deletes old finished tasks and jobs, and nothing else', async () => {
  const { keys, tr, q } = store();
  const now = Date.now();
  const finished = (ageMs: number, state: TaskState) => ({ ...tr.newRecord(spec, 'me', now), state, finishedAtMs: now - ageMs });
  const old = [finished(2 * hour, TaskState.COMPLETED), finished(3 * hour, TaskState.FAILED), finished(5 * hour, TaskState.CANCELLED)];
  const recent = [finished(10 * 60_000, TaskState.COMPLETED)];
  const queued = tr.newRecord(spec, 'me', now - 10 * hour);
  await tr.materialize([...old, ...recent]);
  await tr.submit([queued]);
  for (const t of old) await kv.txn({ compare: [], success: [{ request_put: { key: Buffer.from(keys.tail(t.id)), value: Buffer.from('x') } }] }, 'tail');

  // A job that finished long ago goes whole; one that finished recently stays.
  const jobs = new JobStore(kv, keys, tr);
  const oldJob = await jobs.create({ name: 'old-job', owner: 'me', template: spec, count: 3, overrides: {}, after: [], afterAny: [], labels: {} }, now);
  await jobs.materialize(oldJob);
  const { job } = await jobs.get('old-job');
  const { Job, JobState } = await import('../../src/gen/loom');
  await kv.txn({ compare: [], success: [{ request_put: { key: Buffer.from(keys.job(job.id)), value: Buffer.from(Job.encode({ ...job, state: JobState.JOB_COMPLETED, finishedAtMs: now - 2 * hour }).finish()) } }] }, 'age job');
  for (const id of await jobs.openTaskIds(job)) {
    const held = await q.get(id);
    await tr.cancelQueued(held, now - 2 * hour);
  }

  const res = await sweepFinished(kv, keys, hour, now);
  expect(res.jobs).toBe(1);
  expect(res.tasks).toBe(3 + 3);
  for (const t of old) await expect(q.get(t.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  for (const t of old) expect(await q.tail(t.id)).toBeUndefined();
  expect((await q.get(recent[0].id)).task.state).toBe(TaskState.COMPLETED);
  expect((await q.get(queued.id)).task.state).toBe(TaskState.QUEUED);
  await expect(jobs.get('old-job')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  const counts = await q.countByState();
  expect(counts).toMatchObject({ completed: 1, failed: 0, cancelled: 0, queued: 1 });
  // A second sweep finds nothing more.
  expect(await sweepFinished(kv, keys, hour, now)).toEqual({ tasks: 0, jobs: 0, markers: 0 });
});

test('retention deletes the time markers of old buckets once their tasks are gone, and keeps the others', async () => {
  const { keys, tr } = store();
  const now = Date.now();
  // Submitted 5 h ago and finished 2 h ago (goes), submitted 4 h ago and still
  // queued (its bucket keeps its marker), submitted now (a recent bucket).
  const gone = { ...tr.newRecord(spec, 'me', now), id: uuidAt(now - 5 * hour, 1), state: TaskState.COMPLETED, finishedAtMs: now - 2 * hour };
  const waiting = { ...tr.newRecord(spec, 'me', now), id: uuidAt(now - 4 * hour, 2) };
  const fresh = tr.newRecord(spec, 'me', now);
  await tr.materialize([gone]);
  await tr.submit([waiting, fresh]);
  const markers = async () => (await kv.range({ key: Buffer.from(keys.timeMarkerPrefix), range_end: Buffer.from(prefixEnd(keys.timeMarkerPrefix)), keys_only: true }, 'test')).kvs.map((x) => keys.parseTimeMarker(x.key.toString()));
  expect(await markers()).toEqual([timeBucketOf(gone.id), timeBucketOf(waiting.id), timeBucketOf(fresh.id)]);
  const res = await sweepFinished(kv, keys, hour, now);
  expect(res).toEqual({ tasks: 1, jobs: 0, markers: 1 });
  expect(await markers()).toEqual([timeBucketOf(waiting.id), timeBucketOf(fresh.id)]);
});

test('a sweep of touched markers checks only the buckets it deleted from; a sweep of all markers also finds stale ones', async () => {
  const { keys, tr } = store();
  const now = Date.now();
  const gone = { ...tr.newRecord(spec, 'me', now), id: uuidAt(now - 5 * hour, 1), state: TaskState.COMPLETED, finishedAtMs: now - 2 * hour };
  const waiting = { ...tr.newRecord(spec, 'me', now), id: uuidAt(now - 4 * hour, 2) };
  await tr.materialize([gone]);
  await tr.submit([waiting]);
  // A marker whose tasks went in an earlier sweep that stopped before its markers.
  const stale = timeBucketOf(uuidAt(now - 6 * hour, 3));
  await kv.txn({ compare: [], success: [put(keys.timeMarker(stale), '')] }, 'test');
  const markers = async () => (await kv.range({ key: Buffer.from(keys.timeMarkerPrefix), range_end: Buffer.from(prefixEnd(keys.timeMarkerPrefix)), keys_only: true }, 'test')).kvs.map((x) => keys.parseTimeMarker(x.key.toString()));
  const counted: string[] = [];
  const txn = jest.spyOn(kv, 'txn');
  txn.mockImplementation(async function (this: Kv, req, what, signal) {
    for (const op of req.success ?? []) {
      const r = (op as { request_range?: { key: Buffer; count_only?: boolean } }).request_range;
      if (r?.count_only) counted.push(r.key.toString());
    }
    return Kv.prototype.txn.call(this, req, what, signal);
  });
  try {
    expect(await sweepFinished(kv, keys, hour, now, undefined, 'touched')).toEqual({ tasks: 1, jobs: 0, markers: 1 });
    expect(await markers()).toEqual([stale, timeBucketOf(waiting.id)]);
    // The queued task's bucket (all of the queue, in a busy cluster) was not counted.
    expect(counted.some((k) => k.startsWith(keys.task(timeBucketOf(waiting.id))))).toBe(false);
    expect(await sweepFinished(kv, keys, hour, now, undefined, 'all')).toEqual({ tasks: 0, jobs: 0, markers: 1 });
    expect(await markers()).toEqual([timeBucketOf(waiting.id)]);
  } finally {
    txn.mockRestore();
  }
});

test("a node removes its own log files (and an older layout's directories) once untouched for longer than the retention", async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-retention-'));
  try {
    const logs = path.join(dataDir, 'logs');
    fs.mkdirSync(path.join(logs, 'old-task'), { recursive: true });
    fs.writeFileSync(path.join(logs, 'old-task', '1.log'), 'x');
    fs.writeFileSync(path.join(logs, 'old.1.log'), 'x');
    fs.writeFileSync(path.join(logs, 'fresh.1.log'), 'x');
    const past = new Date(Date.now() - 2 * hour);
    for (const p of ['old-task', 'old.1.log']) fs.utimesSync(path.join(logs, p), past, past);
    // Another node is the sweeper of etcd records: this tick only looks at this node's files.
    const sweeper = new RetentionSweeper({ kv, keys: new Keys(uniqueRoot()), self: 'me', liveNodes: () => ['other'], dataDir, retentionMs: hour, log: () => undefined });
    await sweeper.tick();
    expect(fs.readdirSync(logs)).toEqual(['fresh.1.log']);
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
});
