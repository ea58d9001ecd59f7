/**
 * A job's tasks are written by one node at a time (the holder of its writer
 * key), and `loom job cancel` ends a job whose tasks are still being written.
 */
import { Etcd3 } from 'etcd3';
import { JobSpec, JobState, Task } from '../../src/gen/loom';
import { JobStore } from '../../src/store/jobs';
import { connectEtcd, Kv } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { TaskTransitions } from '../../src/store/transitions';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { spec } from '../support/nodes';
import { TaskQueries } from '../../src/store/queries';

jest.setTimeout(120_000);

/**
 * A real TaskTransitions that counts the task batches it writes and, when
 * given `pauseAfter`, holds every later batch until `resume()`: the test
 * acts between two batches of a materialization.
 */
class CountingTransitions extends TaskTransitions {
  batches = 0;
  pauseAfter = Infinity;
  private gate: Promise<void> | undefined;
  private open: () => void = () => undefined;

  hold(after: number): void {
    this.pauseAfter = after;
    this.gate = new Promise((res) => (this.open = res));
  }

  resume(): void {
    this.open();
  }

  override async materialize(records: Task[], guard?: Parameters<TaskTransitions['materialize']>[1]): Promise<boolean> {
    if (++this.batches > this.pauseAfter) await this.gate;
    return super.materialize(records, guard);
  }
}

let client: Etcd3;
let kv: Kv;
beforeAll(() => {
  client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
  kv = new Kv(client);
});
afterAll(() => client.close());

const unplaceable = spec(['true'], { constraints: [{ key: 'zone', op: '=', value: 'nowhere' }] });
const job = (name: string, count: number): JobSpec => ({ name, owner: 'me', template: unplaceable, count, overrides: {}, after: [], afterAny: [], labels: {} });

test('two nodes sweeping one submitting job: only the writer key holder writes its tasks', async () => {
  const keys = new Keys(uniqueRoot());
  const leases = await Promise.all([client.lease(30), client.lease(30)].map(async (l) => ({ l, id: await l.grant() })));
  const tr = [new CountingTransitions(kv, keys), new CountingTransitions(kv, keys)];
  const stores = [0, 1].map((i) => new JobStore(kv, keys, tr[i], () => undefined, () => leases[i].id));
  const held = await stores[0].create(job('one-writer', 3000), Date.now());
  expect(held.job.state).toBe(JobState.SUBMITTING);
  const [a, b] = await Promise.all(stores.map((s) => s.materialize(held)));
  // One of them wrote every task and activated the job; the other found the key held and returned.
  expect([a.job.state, b.job.state].sort()).toEqual([JobState.SUBMITTING, JobState.ACTIVE].sort());
  expect(tr.map((t) => t.batches > 0).filter(Boolean).length).toBe(1);
  expect((await stores[0].counts((await stores[0].get('one-writer')).job)).queued).toBe(3000);
  // Released at the end: nothing holds the key.
  expect(await kv.get(keys.jobWriter(held.job.id), 'writer')).toBeUndefined();
  await Promise.all(leases.map((x) => x.l.revoke()));
});

test('a job cancelled while its tasks are being written ends KILLED: the writer writes the rest CANCELLED', async () => {
  const keys = new Keys(uniqueRoot());
  const lease = client.lease(30);
  const id = await lease.grant();
  const tr = new CountingTransitions(kv, keys);
  const store = new JobStore(kv, keys, tr, () => undefined, () => id);
  const count = 3000;
  const held = await store.create(job('cancel-mid-write', count), Date.now());
  // The first 1,000 tasks (16 batches of 64) are written, then the writer waits.
  tr.hold(16);
  const writing = store.materialize(held);
  await waitFor(() => tr.batches > 16, { what: 'the writer paused after its first 1,000 tasks' });

  // What the cancel handler does: mark the job, cancel what is queued.
  const stopped = await store.cancelSubmitting(await store.get(held.job.id));
  expect(stopped).toBeDefined();
  const queries = new TaskQueries(kv, keys);
  const open = await store.openTaskIds(held.job);
  expect(open.length).toBe(1000);
  for (const taskId of open) expect(await tr.cancelQueued(await queries.get(taskId), Date.now())).toBeDefined();

  tr.resume();
  await writing;
  // Activated, then finalized by the writer: every task has its mark.
  const end = await store.get(held.job.id);
  expect(end.job.state).toBe(JobState.KILLED);
  const counts = await store.counts(end.job);
  expect(counts.cancelled).toBe(count);
  expect(counts.queued).toBe(0);
  await lease.revoke();
});
