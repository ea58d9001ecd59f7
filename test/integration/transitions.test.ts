/** The store's transactions against a real etcd, each test under its own key root. */
import { Etcd3 } from 'etcd3';
import { NodeInfo, TaskState } from '../../src/gen/loom';
import { connectEtcd, Kv, prefixEnd } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { jobTaskId, nextTimeBucket, timeBucketAt, timeBucketOf } from '../../src/core/ids';
import { TaskQueries } from '../../src/store/queries';
import { QueueWindow } from '../../src/store/queue-window';
import { QueuedEntry, TaskTransitions } from '../../src/store/transitions';
import { validateSpec } from '../../src/core/spec';
import { encodeNode } from '../../src/store/codec';
import { uuidAt } from '../support/ids';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { TcpProxy } from '../support/tcp-proxy';

let client: Etcd3;
let kv: Kv;
const leases: { revoke(): Promise<void> }[] = [];

beforeAll(() => {
  client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
  kv = new Kv(client);
});
afterAll(async () => {
  await Promise.all(leases.map((l) => l.revoke().catch(() => undefined)));
  client.close();
});

function setup() {
  const keys = new Keys(uniqueRoot());
  return { keys, tr: new TaskTransitions(kv, keys), q: new TaskQueries(kv, keys) };
}

async function register(keys: Keys, name: string): Promise<string> {
  const lease = client.lease(30, { autoKeepAlive: true });
  leases.push(lease);
  const id = await lease.grant();
  await lease.put(keys.node(name)).value(encodeNode(NodeInfo.fromPartial({ name, slots: 1, lease: id })));
  return id;
}

const spec = (cmd = ['true']) => validateSpec({ name: '', command: cmd, env: {}, cwd: '', timeoutMs: 0, retries: 0 });

async function queuedEntries(keys: Keys): Promise<QueuedEntry[]> {
  const w = new QueueWindow(kv, keys, 100);
  await w.start();
  const out = [...w.view()];
  await w.stop();
  return out;
}

/** Every task id, page by page (`size` per page), in list order. */
async function listAllIds(q: TaskQueries, size: number): Promise<string[]> {
  const ids: string[] = [];
  let token = '';
  let n = 0;
  do {
    const page = await q.list({ pageSize: size, pageToken: token });
    ids.push(...page.tasks.map((t) => t.id));
    token = page.nextPageToken;
    if (++n > 100) throw new Error('paging does not end');
  } while (token);
  return ids;
}

describe('store transitions', () => {
  it('submits tasks in dispatch order and lets exactly one of two claimers win', async () => {
    const { keys, tr, q } = setup();
    const lo = tr.newRecord(spec(), 'me', Date.now());
    const hi = tr.newRecord({ ...spec(), priority: 500 }, 'me', Date.now());
    await tr.submit([lo, hi]);
    const entries = await queuedEntries(keys);
    expect(entries.map((e) => e.id)).toEqual([hi.id, lo.id]);

    const l1 = await register(keys, 'n1');
    const l2 = await register(keys, 'n2');
    const [a, b] = await Promise.all([
      tr.claim([entries[0]], { node: 'n1', lease: l1 }, Date.now()),
      tr.claim([entries[0]], { node: 'n2', lease: l2 }, Date.now()),
    ]);
    const winners = [a[0], b[0]].filter(Boolean);
    expect(winners).toHaveLength(1);
    const held = await q.get(hi.id);
    expect(held.task.state).toBe(TaskState.RUNNING);
    expect(held.task.attempt).toBe(1);
    expect((await q.runningKeys()).map((r) => r.id)).toEqual([hi.id]);
    expect((await queuedEntries(keys)).map((e) => e.id)).toEqual([lo.id]);
  });

  it('refuses a claim from a node whose /node key is not under its lease (fenced)', async () => {
    const { keys, tr } = setup();
    const t = tr.newRecord(spec(), 'me', Date.now());
    await tr.submit([t]);
    const [entry] = await queuedEntries(keys);
    const res = await tr.claim([entry], { node: 'ghost', lease: '12345' }, Date.now());
    expect(res[0]).toBeUndefined();
  });

  it('writes a result only while the node holds the task, and retries a failure', async () => {
    const { keys, tr, q } = setup();
    const lease = await register(keys, 'n1');
    const me = { node: 'n1', lease };
    const t = tr.newRecord({ ...spec(['false']), retries: 1 }, 'me', Date.now());
    await tr.submit([t]);
    let [held] = await tr.claim(await queuedEntries(keys), me, Date.now());
    const fail = { event: 'fail' as const, exitCode: 1, reason: 'exit 1', finishedAtMs: Date.now() };
    expect(await tr.finish([{ held: held!, outcome: fail }], me)).toEqual([true]);
    expect((await q.get(t.id)).task.state).toBe(TaskState.QUEUED);
    // A stale result for the same attempt is refused.
    expect(await tr.finish([{ held: held!, outcome: fail }], me)).toEqual([false]);
    [held] = await tr.claim(await queuedEntries(keys), me, Date.now());
    expect(held!.task.attempt).toBe(2);
    // Another lease (a fenced incarnation) cannot write.
    expect(await tr.finish([{ held: held!, outcome: fail }], { node: 'n1', lease: '999' })).toEqual([false]);
    expect(await tr.finish([{ held: held!, outcome: fail }], me)).toEqual([true]);
    const final = (await q.get(t.id)).task;
    expect(final.state).toBe(TaskState.FAILED);
    expect(final.history.map((h) => h.number)).toEqual([1, 2]);
    const counts = await q.countByState();
    expect(counts).toMatchObject({ queued: 0, running: 0, failed: 1 });
  });

  it('records a result and claims the next task in one transaction, each part committing on its own', async () => {
    const { keys, tr, q } = setup();
    const lease = await register(keys, 'n1');
    const me = { node: 'n1', lease };
    const [a, b, c] = [tr.newRecord(spec(), 'me', Date.now()), tr.newRecord(spec(), 'me', Date.now()), tr.newRecord(spec(), 'me', Date.now())];
    await tr.submit([a, b, c]);
    const [first] = await queuedEntries(keys);
    const [heldA] = await tr.claim([first], me, Date.now());
    const ok = { event: 'succeed' as const, exitCode: 0, reason: 'exit 0', finishedAtMs: Date.now() };
    const rev = await tr.claimAndFinish([(await queuedEntries(keys))[0]], [{ held: heldA!, outcome: ok }], me, Date.now());
    expect(rev.finished).toEqual([true]);
    expect(rev.claimed[0]!.task.id).toBe(b.id);
    expect((await q.get(a.id)).task.state).toBe(TaskState.COMPLETED);
    expect((await q.get(b.id)).task.state).toBe(TaskState.RUNNING);
    // A stale result (already recorded) fails its own compare; the claim beside it still commits.
    const again = await tr.claimAndFinish([(await queuedEntries(keys))[0]], [{ held: heldA!, outcome: ok }], me, Date.now());
    expect(again.finished).toEqual([false]);
    expect(again.claimed[0]!.task.id).toBe(c.id);
    expect((await q.get(c.id)).task.state).toBe(TaskState.RUNNING);
    expect((await q.runningKeys()).map((r) => r.id).sort()).toEqual([b.id, c.id].sort());
  });

  it('a stale queued entry of a task whose result rides in the same transaction is dropped, not sent: etcd would refuse the whole transaction', async () => {
    const { keys, tr, q } = setup();
    const me = { node: 'n1', lease: await register(keys, 'n1') };
    const [a, b] = [tr.newRecord(spec(), 'me', Date.now()), tr.newRecord(spec(), 'me', Date.now())];
    await tr.submit([a, b]);
    const entries = await queuedEntries(keys);
    const staleA = entries.find((e) => e.id === a.id)!;
    const entryB = entries.find((e) => e.id === b.id)!;
    const [heldA] = await tr.claim([staleA], me, Date.now());
    const ok = { event: 'succeed' as const, exitCode: 0, reason: 'exit 0', finishedAtMs: Date.now() };
    // A's queued entry (as read before its claim) beside A's own result and a live claim of B.
    const res = await tr.claimAndFinish([staleA, entryB], [{ held: heldA!, outcome: ok }], me, Date.now());
    expect(res.finished).toEqual([true]);
    expect(res.claimed[0]).toBeUndefined();
    expect(res.claimed[1]!.task.id).toBe(b.id);
    expect((await q.get(a.id)).task.state).toBe(TaskState.COMPLETED);
    expect((await q.get(b.id)).task.state).toBe(TaskState.RUNNING);
  });

  it('requeues the task of a lost incarnation exactly once', async () => {
    const { keys, tr, q } = setup();
    const lease = await register(keys, 'n1');
    const t = tr.newRecord(spec(), 'me', Date.now());
    await tr.submit([t]);
    const [held] = await tr.claim(await queuedEntries(keys), { node: 'n1', lease }, Date.now());
    // While the owner is live, requeue is refused.
    expect(await tr.requeueLost(held!, Date.now())).toBeUndefined();
    await client.leaseClient.leaseRevoke({ ID: lease });
    const results = await Promise.all([tr.requeueLost(held!, Date.now()), tr.requeueLost(held!, Date.now())]);
    expect(results.filter(Boolean)).toHaveLength(1);
    const after = (await q.get(t.id)).task;
    expect(after.state).toBe(TaskState.QUEUED);
    expect(after.reason).toMatch(/node n1 lost/);
    expect(await q.runningKeys()).toEqual([]);
  });

  it('a task whose node died or fenced while running it 3 times ends FAILED instead of taking down a 4th node', async () => {
    const { keys, tr, q } = setup();
    const t = tr.newRecord(spec(), 'me', Date.now());
    await tr.submit([t]);
    const claimOn = async (node: string) => {
      const lease = await register(keys, node);
      const [held] = await tr.claim(await queuedEntries(keys), { node, lease }, Date.now());
      expect(held).toBeDefined();
      return { held: held!, me: { node, lease } };
    };
    // n1 dies with it: a survivor requeues it.
    let c = await claimOn('n1');
    await client.leaseClient.leaseRevoke({ ID: c.me.lease });
    expect(await tr.requeueLost(c.held, Date.now())).toMatchObject({ state: TaskState.QUEUED, nodeLosses: 1 });
    // n2 shuts down and hands it back: not a loss of its node.
    c = await claimOn('n2');
    expect(await tr.release(c.held, c.me, 'node n2 shut down', Date.now())).toBe(true);
    expect((await q.get(t.id)).task).toMatchObject({ state: TaskState.QUEUED, nodeLosses: 1 });
    // n3 fences itself while running it and hands it back: a loss.
    c = await claimOn('n3');
    expect(await tr.release(c.held, c.me, 'node n3 fenced', Date.now(), true)).toBe(true);
    expect((await q.get(t.id)).task).toMatchObject({ state: TaskState.QUEUED, nodeLosses: 2 });
    // n4 dies with it: the third loss ends it.
    c = await claimOn('n4');
    await client.leaseClient.leaseRevoke({ ID: c.me.lease });
    const last = await tr.requeueLost(c.held, Date.now());
    expect(last).toMatchObject({ state: TaskState.FAILED, nodeLosses: 3, reason: 'lost its node 3 times (last: node n4 lost)' });
    expect((await q.get(t.id)).task).toMatchObject({ state: TaskState.FAILED, nodeLosses: 3 });
    expect((await q.get(t.id)).task.history.map((a) => `${a.node}: ${a.outcome}`)).toEqual([
      'n1: node lost', 'n2: node n2 shut down', 'n3: node n3 fenced', 'n4: node lost',
    ]);
    expect(await q.runningKeys()).toEqual([]);
    expect(await queuedEntries(keys)).toEqual([]);
    expect((await q.list({ state: TaskState.FAILED, pageSize: 10 })).tasks.map((x) => x.id)).toEqual([t.id]);
  });

  it('the limit is the cluster\'s to set (--max-node-losses), and a fence can be the last loss', async () => {
    const keys = new Keys(uniqueRoot());
    const tr = new TaskTransitions(kv, keys, 1);
    const t = tr.newRecord(spec(), 'me', Date.now());
    await tr.submit([t]);
    const lease = await register(keys, 'n1');
    const [held] = await tr.claim(await queuedEntries(keys), { node: 'n1', lease }, Date.now());
    expect(await tr.release(held!, { node: 'n1', lease }, 'node n1 fenced', Date.now(), true)).toBe(true);
    expect((await new TaskQueries(kv, keys).get(t.id)).task).toMatchObject({
      state: TaskState.FAILED, nodeLosses: 1, reason: 'lost its node once (last: node n1 fenced)',
    });
  });

  it('cancels a queued task, and marks a running one for its owner', async () => {
    const { keys, tr, q } = setup();
    const lease = await register(keys, 'n1');
    const a = tr.newRecord(spec(), 'me', Date.now());
    const b = tr.newRecord(spec(), 'me', Date.now());
    await tr.submit([a, b]);
    expect((await tr.cancelQueued(await q.get(a.id), Date.now()))!.state).toBe(TaskState.CANCELLED);
    const [held] = await tr.claim(await queuedEntries(keys), { node: 'n1', lease }, Date.now());
    expect(held!.task.id).toBe(b.id);
    const marked = await tr.requestCancel(await q.get(b.id));
    expect(marked!.cancelRequested).toBe(true);
    const cancelKey = await kv.get(keys.cancel('n1', b.id), 'test');
    expect(cancelKey).toBeDefined();
  });

  it('pages through tasks by state and overall', async () => {
    const { tr, q } = setup();
    const records = Array.from({ length: 130 }, () => tr.newRecord(spec(), 'me', Date.now()));
    await tr.submit(records);
    const seen: string[] = [];
    let token = '';
    do {
      const page = await q.list({ state: TaskState.QUEUED, pageSize: 50, pageToken: token });
      seen.push(...page.tasks.map((t) => t.id));
      token = page.nextPageToken;
    } while (token);
    expect(seen).toEqual(records.map((r) => r.id));
    const all = await q.list({ pageSize: 1000 });
    expect(all.tasks).toHaveLength(130);
    expect(all.nextPageToken).toBe('');
  });

  it('lists every task once, in id order, across ids years apart and an older id that appears after a first page', async () => {
    const { tr, q } = setup();
    const now = Date.now();
    const times = [
      ...Array.from({ length: 7 }, (_, i) => now - 3 * 365 * 86_400_000 + i), // three years ago
      ...Array.from({ length: 5 }, (_, i) => now - 40 * 86_400_000 + i * 3_600_000), // forty days ago, hourly
      ...Array.from({ length: 30 }, (_, i) => now - 5000 + i), // a burst just now
    ];
    const records = times.map((ms, i) => ({ ...tr.newRecord(spec(), 'me', now), id: uuidAt(ms, i) }));
    await tr.submit(records);
    const pages = (size: number) => listAllIds(q, size);
    const sorted = records.map((r) => r.id).sort();
    for (const size of [1, 4, 10, 42, 100]) expect(await pages(size)).toEqual(sorted);
    // A task whose id is older than everything the last first page saw (a resumed job
    // submit rewrites ids minted long ago) is on the next first page.
    const older = { ...tr.newRecord(spec(), 'me', now), id: uuidAt(now - 4 * 365 * 86_400_000, 99) };
    await tr.submit([older]);
    expect((await q.list({ pageSize: 3 })).tasks.map((t) => t.id)).toEqual([older.id, ...sorted.slice(0, 2)]);
    expect(await pages(5)).toEqual([older.id, ...sorted]);
  });

  it('sends cancels issued together as one transaction each keeping its own guard, and two cancels of one task in separate ones', async () => {
    const { keys, q } = setup();
    const txns: number[] = [];
    const spy: Kv = Object.create(kv);
    spy.txn = (req, what, signal) => {
      if (what === 'cancel') txns.push(req.success!.length);
      return kv.txn(req, what, signal);
    };
    const tr = new TaskTransitions(spy, keys);
    const records = Array.from({ length: 100 }, () => tr.newRecord(spec(), 'me', Date.now()));
    await tr.submit(records);
    const held = await Promise.all(records.map((r) => q.get(r.id)));
    // One stale revision: its guard fails, the others still commit.
    const stale = { ...held[7], revision: String(Number(held[7].revision) - 1) };
    const results = await Promise.all([...held.map((h, i) => tr.cancelQueued(i === 7 ? stale : h, Date.now())), tr.cancelQueued(held[3], Date.now())]);
    expect(results.filter((r) => r?.state === TaskState.CANCELLED)).toHaveLength(99);
    expect(results[7]).toBeUndefined();
    expect(results[100]).toBeUndefined(); // the second cancel of task 3 found it cancelled
    expect(txns.reduce((a, b) => a + b, 0)).toBe(101);
    expect(txns.length).toBeLessThanOrEqual(3);
    const counts = await q.countByState();
    expect(counts).toMatchObject({ cancelled: 99, queued: 1 });
  });

  it('cancels queued tasks from the queued index snapshots with no read per task, and not one claimed since it was seen', async () => {
    const { keys, q } = setup();
    const txns: number[] = [];
    const reads: string[] = [];
    const spy: Kv = Object.create(kv);
    spy.txn = (req, what, signal) => {
      if (what === 'cancel') txns.push(req.success!.length);
      return kv.txn(req, what, signal);
    };
    spy.range = (req, what, signal) => {
      reads.push(what);
      return kv.range(req, what, signal);
    };
    const tr = new TaskTransitions(spy, keys);
    const queries = new TaskQueries(spy, keys);
    const records = Array.from({ length: 150 }, (_, i) => tr.newRecord({ ...spec(), priority: i % 3 === 0 ? 200 : 100 }, 'me', Date.now()));
    await tr.submit(records);
    // Pages of the queued index come in dispatch order: priority, then submit order.
    const seen: QueuedEntry[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const page = await queries.queuedPage(after, 64);
      seen.push(...page.entries);
      after = page.more ? page.last : undefined;
      if (++pages > 10) throw new Error('paging does not end');
    } while (after !== undefined);
    expect(pages).toBe(3);
    const byDispatch = [...records].sort((a, b) => b.spec!.priority! - a.spec!.priority! || (a.id < b.id ? -1 : 1));
    expect(seen.map((e) => e.id)).toEqual(byDispatch.map((r) => r.id));
    expect(seen[0].snapshot).toEqual(byDispatch[0]);

    // Claimed after it was seen: the cancel's guard must keep it running.
    const me = { node: 'n1', lease: await register(keys, 'n1') };
    const [claimed] = await tr.claim([seen[10]], me, Date.now());
    expect(claimed).toBeDefined();
    reads.length = 0;
    // The first entry twice: etcd refuses a transaction writing a key twice, so the repeat is dropped.
    const results = await tr.cancelQueuedSeen([...seen, seen[0]], Date.now());
    expect(reads).toEqual([]);
    expect(results[10]).toBeUndefined();
    expect(results[150]).toBeUndefined();
    expect(results.filter((r) => r?.state === TaskState.CANCELLED)).toHaveLength(149);
    expect(txns.reduce((a, b) => a + b, 0)).toBe(150);
    expect(txns.length).toBeLessThanOrEqual(4);
    expect(await q.countByState()).toMatchObject({ cancelled: 149, running: 1, queued: 0 });
    expect((await q.get(seen[0].id)).task).toMatchObject({ state: TaskState.CANCELLED, reason: 'cancelled before it ran' });
    expect((await q.get(seen[10].id)).task).toMatchObject({ state: TaskState.RUNNING, node: 'n1' });
  });

  it('reads for an update from the local member first, and confirms a missing task linearizably', async () => {
    const { keys, tr } = setup();
    const reads: boolean[] = [];
    const spy: Kv = Object.create(kv);
    spy.range = (req, what, signal) => {
      reads.push(!!req.serializable);
      return kv.range(req, what, signal);
    };
    const q = new TaskQueries(spy, keys);
    const t = tr.newRecord(spec(), 'me', Date.now());
    await tr.submit([t]);
    const held = await q.getForUpdate(t.id, 0);
    expect(held.task.id).toBe(t.id);
    expect(reads).toEqual([true]);
    await q.getForUpdate(t.id, 1);
    expect(reads).toEqual([true, false]);
    reads.length = 0;
    const missing = tr.newRecord(spec(), 'me', Date.now()).id;
    await expect(q.getForUpdate(missing, 0)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    expect(reads).toEqual([true, false]);
  });

  it('lists by bounded ranges ending at marked time buckets, and lists every task even when markers are missing or stale', async () => {
    const { keys, tr } = setup();
    const now = Date.now();
    // 12 buckets a minute apart, 5 tasks each, all 5 well inside one 4,096 ms
    // bucket (unaligned, a bucket edge could fall between them: seen once).
    const base = Math.floor((now - 3_600_000) / 4096) * 4096 + 100;
    const records = Array.from({ length: 60 }, (_, i) => ({
      ...tr.newRecord(spec(), 'me', now),
      id: uuidAt(base + Math.floor(i / 5) * 61_440 + (i % 5), i),
    }));
    await tr.submit(records);
    const sorted = records.map((r) => r.id).sort();
    const markers = async () => (await kv.range({ key: Buffer.from(keys.timeMarkerPrefix), range_end: Buffer.from(prefixEnd(keys.timeMarkerPrefix)), keys_only: true }, 'test')).kvs.map((x) => x.key.toString());
    expect(await markers()).toEqual([...new Set(records.map((r) => keys.timeMarker(timeBucketOf(r.id))))].sort());

    // Record the ranges a list asks for.
    const ranges: string[] = [];
    const spy: Kv = Object.create(kv);
    spy.range = (req, what, signal) => {
      // Ranges over task records (the marker reads go under /tasktime/).
      if (what === 'list tasks' && !req.key!.toString().startsWith(keys.timeMarkerPrefix)) ranges.push(req.range_end!.toString());
      return kv.range(req, what, signal);
    };
    const q = new TaskQueries(spy, keys);
    const first = await q.list({ pageSize: 5 });
    expect(first.tasks.map((t) => t.id)).toEqual(sorted.slice(0, 5));
    // One range, up to the end of the first bucket: not over every record.
    expect(ranges).toEqual([keys.task(nextTimeBucket(timeBucketOf(sorted[0])))]);
    const pages = (size: number) => listAllIds(q, size);
    for (const size of [1, 7, 60, 100]) expect(await pages(size)).toEqual(sorted);

    // Markers are hints: drop every other one and add stale ones (buckets with no task).
    const all = await markers();
    await kv.txn({ compare: [], success: all.filter((_, i) => i % 2 === 0).map((k) => ({ request_delete_range: { key: Buffer.from(k) } })) }, 'test');
    const stale = [now - 7_200_000, now - 1_800_000 + 30_000, now + 3_600_000].map((ms) => keys.timeMarker(timeBucketAt(ms)));
    await kv.txn({ compare: [], success: stale.map((k) => ({ request_put: { key: Buffer.from(k), value: Buffer.from('') } })) }, 'test');
    for (const size of [1, 4, 5, 13, 100]) expect(await pages(size)).toEqual(sorted);
    // No markers at all: one range over the rest, still every task.
    await kv.txn({ compare: [], success: [{ request_delete_range: { key: Buffer.from(keys.timeMarkerPrefix), range_end: Buffer.from(prefixEnd(keys.timeMarkerPrefix)) } }] }, 'test');
    for (const size of [3, 100]) expect(await pages(size)).toEqual(sorted);
  });
});

describe('queue window', () => {
  it('sees tasks queued before it started, then new ones by watch', async () => {
    const { keys, tr } = setup();
    const before = tr.newRecord(spec(), 'me', Date.now());
    await tr.submit([before]);
    const w = new QueueWindow(kv, keys, 100);
    await w.start();
    expect(w.view().map((e) => e.id)).toEqual([before.id]);
    const after = tr.newRecord(spec(), 'me', Date.now());
    await tr.submit([after]);
    await waitFor(() => w.length === 2, { what: 'watch delivers the new task' });
    await w.stop();
  });

  it('tells whether it holds queued tasks of a job', async () => {
    const { keys, tr } = setup();
    const jobId = '01a24e39-5a60-72fc-a539-d9ef8d9ac8fd';
    const [first, second] = [0, 1].map((i) => Object.assign(tr.newRecord(spec(), 'me', Date.now()), { id: jobTaskId(jobId, i), jobId, index: i }));
    const other = tr.newRecord(spec(), 'me', Date.now());
    await tr.submit([first, second, other]);
    const w = new QueueWindow(kv, keys, 100);
    await w.start();
    expect(w.holdsJob(jobId)).toBe(true);
    expect(w.holdsJob('01a24e39-5a60-72fc-a540-d9ef8d9ac8fd')).toBe(false); // another job
    for (const e of w.view().filter((x) => x.id !== other.id)) await client.delete().key(e.key).exec();
    await waitFor(() => w.length === 1, { what: 'the deletes reach the window' });
    expect(w.holdsJob(jobId)).toBe(false);
    await w.stop();
  });

  it('decodes a record when first read; a corrupt one reads as never due and is reported', async () => {
    const { keys, tr } = setup();
    const [good, bad] = [tr.newRecord(spec(['echo', 'hi']), 'me', Date.now()), tr.newRecord(spec(), 'me', Date.now())];
    await tr.submit([good, bad]);
    const logs: string[] = [];
    const w = new QueueWindow(kv, keys, 100, (m) => logs.push(m));
    await w.start();
    const entryOf = (id: string) => w.view().find((e) => e.id === id)!;
    const written = await client.put(entryOf(bad.id).key).value(Buffer.from([0xff, 0xff, 0xff])).exec();
    await waitFor(() => entryOf(bad.id).modRevision === written.header.revision, { what: 'the corrupt put reaches the window' });
    expect(logs).toEqual([]); // nothing decoded yet
    expect(entryOf(good.id).snapshot.spec?.command).toEqual(['echo', 'hi']);
    expect(entryOf(bad.id).snapshot.notBeforeMs).toBe(Infinity);
    expect(logs.join('\n')).toMatch(/corrupt queued key/);
    await w.stop();
  });

  it('stays bounded and refills in order when more are queued than it holds', async () => {
    const { keys, tr } = setup();
    const records = Array.from({ length: 30 }, () => tr.newRecord(spec(), 'me', Date.now()));
    await tr.submit(records);
    const w = new QueueWindow(kv, keys, 10);
    await w.start();
    expect(w.view().map((e) => e.id)).toEqual(records.slice(0, 10).map((r) => r.id));
    expect(w.hasMore).toBe(true);
    const urgent = tr.newRecord({ ...spec(), priority: 900 }, 'me', Date.now());
    await tr.submit([urgent]);
    await waitFor(() => w.view()[0]?.id === urgent.id, { what: 'high priority task enters the full window' });
    expect(w.length).toBe(10);
    await w.stop();
  });

  it('re-lists after its watch resumes past a compaction', async () => {
    const { keys, tr } = setup();
    const proxy = TcpProxy.fromUrl(testEtcdEndpoint());
    await proxy.start();
    const viaProxy = connectEtcd({ endpoints: [proxy.url] });
    const w = new QueueWindow(new Kv(viaProxy), keys, 100);
    try {
      await w.start();
      const first = tr.newRecord(spec(), 'me', Date.now());
      await tr.submit([first]);
      await waitFor(() => w.length === 1, { what: 'first task' });
      proxy.partition();
      const second = tr.newRecord(spec(), 'me', Date.now());
      await tr.submit([second]);
      const rev = (await kv.range({ key: Buffer.from(keys.task(second.id)) }, 'rev')).header.revision;
      await client.kv.compact({ revision: rev, physical: true });
      proxy.heal();
      await waitFor(() => w.view().some((e) => e.id === second.id), { what: 'task queued during the partition', timeoutMs: 20_000 });
    } finally {
      await w.stop();
      viaProxy.close();
      await proxy.stop();
    }
  });
});
