/**
 * A node hands back a task that is RUNNING under its lease but that it does
 * not hold (a claim whose reply was lost) — only while its incarnation lives.
 * A fenced node's lease outlives the fence for a few seconds; it must not act
 * on task keys then (the chaos harness caught one handing back, as never
 * started, a task that ran and whose result the fence lost). And a node that
 * fences while a task runs hands it back counted as a loss of its node.
 */
import { TaskState } from '../../src/gen/loom';
import { QueueWindow } from '../../src/store/queue-window';
import { uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';

const LOST = 'claim outcome lost in an etcd error; requeued';

/** The node's internals this test drives (private in LoomNode). */
interface Inside {
  me: { node: string; lease: string };
  inc: unknown;
  kv: never;
  keys: never;
  steal: { setPaused(p: boolean): void };
  membership: { fence(reason: string): void };
  transitions: {
    newRecord(s: unknown, owner: string, nowMs: number): { id: string };
    submit(records: unknown[]): Promise<void>;
    claim(entries: unknown[], me: { node: string; lease: string }, nowMs: number): Promise<unknown[]>;
  };
  queries: { get(id: string): Promise<{ task: { state: TaskState; lease: string; history: { outcome: string }[] } }> };
  reconcileOwn(): Promise<void>;
}

let t: TestNode;
afterEach(async () => {
  if (t) await stopNode(t);
});

/** Submits a task and claims it as the node did 20 s ago, without its executor: what a lost claim reply leaves. */
async function lostClaim(n: Inside): Promise<string> {
  const rec = n.transitions.newRecord(spec(['true']), 'test', Date.now() - 20_000);
  await n.transitions.submit([rec]);
  const window = new QueueWindow(n.kv, n.keys, 100);
  await window.start();
  const entry = [...window.view()].find((e) => e.id === rec.id);
  await window.stop();
  const [held] = await n.transitions.claim([entry], n.me, Date.now() - 20_000);
  expect(held).toBeDefined();
  return rec.id;
}

it('a live node hands back a claim it does not hold; a fenced one does not', async () => {
  t = await startNode(uniqueRoot(), 'rc');
  const n = t.node as unknown as Inside;
  n.steal.setPaused(true);

  const first = await lostClaim(n);
  await n.reconcileOwn();
  const back = (await n.queries.get(first)).task;
  expect(back.state).toBe(TaskState.QUEUED);
  expect(back.history.map((h) => h.outcome)).toContain(LOST);

  const second = await lostClaim(n);
  const lease = n.me.lease;
  n.membership.fence('test: fenced');
  expect(n.inc).toBeUndefined();
  await n.reconcileOwn();
  const kept = (await n.queries.get(second)).task;
  expect(kept.state).toBe(TaskState.RUNNING);
  expect(kept.lease).toBe(lease);
  expect(kept.history.map((h) => h.outcome)).not.toContain(LOST);
  // The node rejoins under a new lease (and its tasks of the old one go back by the usual way).
  await waitFor(() => (n.me.lease !== lease && n.inc ? true : undefined), { timeoutMs: 15_000, what: 'the node rejoined' });
});

it('a node that fences itself while running a task hands it back as a loss of its node; at --max-node-losses it fails', async () => {
  t = await startNode(uniqueRoot(), 'fz', { maxNodeLosses: 2 });
  const n = t.node as unknown as Inside;
  const [id] = await t.api.submit([spec(['sleep', '30'])]);
  for (const attempt of [1, 2]) {
    await waitFor(async () => {
      const task = await t.api.get(id);
      return task.state === TaskState.RUNNING && task.attempt === attempt && n.inc ? true : undefined;
    }, { timeoutMs: 15_000, what: `attempt ${attempt} running on the rejoined node` });
    // What the reaper's watchdog does when the node stalls (a task that starves its node, say).
    n.membership.fence('test: fenced');
  }
  const done = await t.api.wait(id);
  expect(done).toMatchObject({ state: TaskState.FAILED, nodeLosses: 2, reason: 'lost its node 2 times (last: node fz fenced)' });
  expect(done.history.map((h) => h.outcome)).toEqual(['node fz fenced', 'node fz fenced']);
});
