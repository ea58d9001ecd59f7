/**
 * Claims ahead of free slots (aheadRoom, Executor.startWhenFree), on a real
 * node with one slot: short tasks are claimed several per transaction and
 * still run one at a time; a task waiting for the slot can be cancelled
 * without running; a node that stops hands its waiting tasks back, and so
 * does one whose slot-holder turns out long (aheadStaleMs).
 */
import * as fs from 'fs';
import * as path from 'path';
import { TaskState } from '../../src/gen/loom';
import { DEFAULT_STEAL_POLICY } from '../../src/core/steal-policy';
import { AHEAD_PER_SLOT } from '../../src/core/choose-claims';
import { uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode, sharedTmpDir } from '../support/nodes';

jest.setTimeout(60_000);

/**
 * How many tasks a node claims ahead is sized by what it measures (aheadRoom):
 * with the default policy a claim ahead must start within a busy peer's steal
 * delay (55 ms), so a machine whose `true` takes over ~7 ms claims fewer than
 * AHEAD_PER_SLOT. These tests are about what happens to tasks once claimed
 * ahead, not about this machine's speed: their nodes get a wait budget
 * (stealDelayMs + loadDelayMs) that a short task fits AHEAD_PER_SLOT times on
 * any machine, so they claim the full AHEAD_PER_SLOT.
 */
const ROOMY = { ...DEFAULT_STEAL_POLICY, loadDelayMs: 4_000 - DEFAULT_STEAL_POLICY.stealDelayMs };

/** Short tasks that fail (exit 9) if another of them runs at the same time. */
function exclusive(lockDir: string) {
  return spec(['sh', '-c', `mkdir "${lockDir}" 2>/dev/null || exit 9; rmdir "${lockDir}"`]);
}

async function warmUp(n: TestNode, count = 5): Promise<void> {
  // Short tasks give the node a short typical run time (a moving average):
  // claims ahead start after that, and after a long task only once enough
  // short ones have ended since.
  const ids = await n.api.submit(Array.from({ length: count }, () => spec(['true'])));
  for (const id of ids) expect((await n.api.wait(id)).state).toBe(TaskState.COMPLETED);
}

describe('claims ahead of free slots', () => {
  const root = uniqueRoot();
  let n: TestNode;
  let tmp: string;
  beforeAll(async () => {
    tmp = sharedTmpDir('loom-ahead-');
    // Waiting tasks are not handed back for 10 s here (the last test covers that).
    n = await startNode(root, 'ahead1', { slots: 1, metricsListen: '127.0.0.1:0', steal: { ...ROOMY, aheadStaleMs: 10_000 } });
    await warmUp(n);
  });
  afterAll(async () => {
    if (n) await stopNode(n);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('takes several short tasks per claim transaction and still runs one at a time', async () => {
    const counters = async () => {
      const text = await (await fetch(`http://127.0.0.1:${n.node.metricsPort}/metrics`)).text();
      const value = (name: string) => Number(new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
      return { claimed: value('loom_claims_total{via="queue"}'), txns: value('loom_claim_transactions_total') };
    };
    const before = await counters();
    const ids = await n.api.submit(Array.from({ length: 60 }, () => exclusive(path.join(tmp, 'lock'))));
    for (const id of ids) {
      const t = await n.api.wait(id);
      expect([t.id, t.state, t.exitCode]).toEqual([id, TaskState.COMPLETED, 0]);
    }
    const after = await counters();
    const claimed = after.claimed - before.claimed;
    const txns = after.txns - before.txns;
    expect(claimed).toBe(60);
    // One slot: without claims ahead every transaction claims at most one task.
    expect(txns).toBeLessThan(claimed / 2);
  });

  it('cancels a task waiting for the slot without running it; the others run after the slot frees', async () => {
    await warmUp(n);
    const marker = path.join(tmp, 'ran');
    const gate = path.join(tmp, 'gate');
    // The long one takes the slot until the test opens the gate; the rest (a
    // deep enough queue for one node with one slot: AHEAD_PER_SLOT) are
    // claimed ahead, b among them.
    const [long, b, ...rest] = await n.api.submit([
      spec(['sh', '-c', `until [ -e "${gate}" ]; do sleep 0.05; done`]),
      spec(['sh', '-c', `touch "${marker}"`]),
      ...Array.from({ length: AHEAD_PER_SLOT - 1 }, () => spec(['true'])),
    ]);
    // All claimed (RUNNING on this node) while the sleep holds the only slot.
    await waitFor(async () => {
      const ts = await Promise.all([long, b, ...rest].map((id) => n.api.get(id)));
      return ts.every((t) => t.state === TaskState.RUNNING);
    }, { what: 'the short tasks claimed ahead' });
    await n.api.cancel(b);
    const cancelled = await n.api.wait(b);
    expect(cancelled.state).toBe(TaskState.CANCELLED);
    expect(cancelled.exitCode).toBeUndefined();
    expect((await n.api.get(long)).state).toBe(TaskState.RUNNING);
    fs.writeFileSync(gate, '');
    for (const id of [long, ...rest]) expect((await n.api.wait(id)).state).toBe(TaskState.COMPLETED);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it('hands the tasks waiting for a slot back when the node stops; another node runs them', async () => {
    await warmUp(n, 20); // the previous test's long task weighs on the average
    // As many short ones as one node with one slot may claim ahead (a deep enough queue).
    const ids = await n.api.submit([spec(['sleep', '30']), ...Array.from({ length: AHEAD_PER_SLOT }, () => spec(['true']))]);
    await waitFor(async () => (await Promise.all(ids.map((id) => n.api.get(id)))).every((t) => t.state === TaskState.RUNNING), {
      what: 'all claimed by ahead1',
    });
    const other = await startNode(root, 'ahead2', { slots: 3 });
    try {
      await stopNode(n);
      n = undefined as unknown as TestNode;
      for (const id of ids.slice(1)) {
        const t = await other.api.wait(id);
        expect(t.state).toBe(TaskState.COMPLETED);
        expect(t.node).toBe('ahead2');
        // Handed back unstarted, then one run on ahead2.
        expect(t.history.map((h) => [h.node, h.outcome])).toEqual([['ahead1', 'node ahead1 shut down'], ['ahead2', 'exit 0']]);
      }
      await other.api.cancel(ids[0]);
    } finally {
      await stopNode(other);
    }
  });

  it('hands back tasks that waited aheadStaleMs for a slot held by a long task, and claims no more ahead', async () => {
    // The long task's age counts in the typical run time, so once it is past
    // the wait budget nothing more is claimed ahead; a budget below
    // aheadStaleMs (still roomy for short tasks) makes that so by the time
    // the waiting tasks are handed back.
    const policy = { ...DEFAULT_STEAL_POLICY, loadDelayMs: 2_000 - DEFAULT_STEAL_POLICY.stealDelayMs, aheadStaleMs: 3_000 };
    const m = await startNode(uniqueRoot(), 'ahead3', { slots: 1, steal: policy });
    try {
      await warmUp(m);
      const [long, ...short] = await m.api.submit([spec(['sleep', '30']), ...Array.from({ length: AHEAD_PER_SLOT }, () => spec(['true']))]);
      await waitFor(async () => (await Promise.all(short.map((id) => m.api.get(id)))).every((t) => t.state === TaskState.QUEUED && t.history.length === 1), {
        what: 'the short tasks handed back',
      });
      const why = `not started on node ahead3: no slot freed within ${policy.aheadStaleMs} ms`;
      for (const id of short) expect((await m.api.get(id)).history.map((h) => h.outcome)).toEqual([why]);
      // Not claimed again while the long task holds the slot: nothing to wait
      // for here, only a window in which nothing may happen.
      await new Promise((r) => setTimeout(r, 1_000));
      for (const id of short) expect((await m.api.get(id)).state).toBe(TaskState.QUEUED);
      await m.api.cancel(long);
      for (const id of short) expect((await m.api.wait(id)).state).toBe(TaskState.COMPLETED);
    } finally {
      await stopNode(m);
    }
  });
});
