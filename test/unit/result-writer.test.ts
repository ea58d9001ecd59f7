/**
 * ResultWriter: results wait one event-loop turn so a claim transaction can
 * take them; what nobody took goes out in one batched finish. With a shared
 * WriteLane, results wait while another transaction is out.
 */
import { HOLD_MAX_MS, ResultWriter } from '../../src/node/result-writer';
import { WriteLane } from '../../src/node/write-lane';
import { FinishItem, NodeIdentity, TaskTransitions } from '../../src/store/transitions';
import { Task } from '../../src/gen/loom';

const me: NodeIdentity = { node: 'n1', lease: '7' };
const item = (id: string): FinishItem => ({
  held: { task: { id } as Task, revision: '1' },
  outcome: { event: 'succeed', exitCode: 0, reason: 'exit 0', finishedAtMs: 0 },
});

function fakeTransitions() {
  const calls: string[][] = [];
  const t = {
    finish: async (items: FinishItem[]) => {
      calls.push(items.map((i) => i.held.task.id));
      return items.map(() => true);
    },
  } as unknown as TaskTransitions;
  return { t, calls };
}

describe('ResultWriter', () => {
  it('batches results written in the same turn into one finish', async () => {
    const { t, calls } = fakeTransitions();
    const w = new ResultWriter(t);
    const done = await Promise.all([w.write(item('a').held, item('a').outcome, me), w.write(item('b').held, item('b').outcome, me)]);
    expect(done).toEqual([true, true]);
    expect(calls).toEqual([['a', 'b']]);
  });

  it('lets a claim take pending results of its lease before they are flushed', async () => {
    const { t, calls } = fakeTransitions();
    const w = new ResultWriter(t);
    const pa = w.write(item('a').held, item('a').outcome, me);
    const pb = w.write(item('b').held, item('b').outcome, { node: 'n1', lease: 'old' });
    const taken = w.take(me.lease, 10);
    expect(taken.map((p) => p.held.task.id)).toEqual(['a']);
    taken[0].resolve(true); // the claim transaction settles what it took
    expect(await pa).toBe(true);
    expect(await pb).toBe(true); // flushed on its own (another lease)
    expect(calls).toEqual([['b']]);
  });

  it('take respects its limit and an empty queue', () => {
    const { t } = fakeTransitions();
    const w = new ResultWriter(t);
    expect(w.take(me.lease, 5)).toEqual([]);
    for (const id of ['a', 'b', 'c']) void w.write(item(id).held, item(id).outcome, me);
    expect(w.take(me.lease, 2).map((p) => p.held.task.id)).toEqual(['a', 'b']);
    expect(w.take(me.lease, 0)).toEqual([]);
  });

  it('waits while the lane is taken, then sends what piled up in one batch', async () => {
    const { t, calls } = fakeTransitions();
    const lane = new WriteLane();
    const w = new ResultWriter(t, lane);
    expect(lane.tryAcquire()).toBe(true); // a claim is out
    const pa = w.write(item('a').held, item('a').outcome, me);
    await new Promise((r) => setImmediate(r));
    const pb = w.write(item('b').held, item('b').outcome, me);
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    expect(calls).toEqual([]);
    lane.release();
    expect(await Promise.all([pa, pb])).toEqual([true, true]);
    expect(calls).toEqual([['a', 'b']]);
    expect(lane.idle).toBe(true);
  });

  it('holds the lane while its own batch is out', async () => {
    let finishing: (v: boolean[]) => void = () => undefined;
    const t = { finish: () => new Promise<boolean[]>((r) => (finishing = r)) } as unknown as TaskTransitions;
    const lane = new WriteLane();
    const w = new ResultWriter(t, lane);
    const pa = w.write(item('a').held, item('a').outcome, me);
    await new Promise((r) => setImmediate(r));
    let woken = false;
    expect(lane.tryAcquire(() => (woken = true))).toBe(false);
    finishing([true]);
    expect(await pa).toBe(true);
    expect(woken).toBe(true);
    expect(lane.idle).toBe(true);
  });
});

describe('ResultWriter hold (a claim is sure to come soon)', () => {
  const turns = async (n: number) => {
    for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
  };

  it('keeps results for the coming claim while held, and sends them at once when kicked after the hold ends', async () => {
    const { t, calls } = fakeTransitions();
    let held = true;
    const w = new ResultWriter(t, new WriteLane(), () => held);
    const pa = w.write(item('a').held, item('a').outcome, me);
    const pb = w.write(item('b').held, item('b').outcome, me);
    await turns(3);
    expect(calls).toEqual([]);
    const taken = w.take(me.lease, 10); // the claim rides them
    expect(taken.map((p) => p.held.task.id)).toEqual(['a', 'b']);
    taken.forEach((p) => p.resolve(true));
    expect(await Promise.all([pa, pb])).toEqual([true, true]);
    const pc = w.write(item('c').held, item('c').outcome, me);
    await turns(3);
    expect(calls).toEqual([]);
    held = false;
    w.kick();
    expect(await pc).toBe(true);
    expect(calls).toEqual([['c']]);
  });

  it('sends a held result on its own once it has waited HOLD_MAX_MS', async () => {
    const { t, calls } = fakeTransitions();
    const w = new ResultWriter(t, new WriteLane(), () => true);
    const t0 = Date.now();
    expect(await w.write(item('a').held, item('a').outcome, me)).toBe(true);
    expect(calls).toEqual([['a']]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(HOLD_MAX_MS - 1);
  });
});

describe('WriteLane', () => {
  it('runs the retries of refused callers once each, in order, at the next release', () => {
    const lane = new WriteLane();
    const seen: string[] = [];
    expect(lane.tryAcquire()).toBe(true);
    expect(lane.tryAcquire()).toBe(false);
    expect(lane.tryAcquire(() => seen.push('a'))).toBe(false);
    expect(lane.tryAcquire(() => seen.push('b'))).toBe(false);
    lane.release();
    lane.release();
    expect(seen).toEqual(['a', 'b']);
  });

  it('runs a retry passed to failed tryAcquire calls once at the next release', () => {
    const lane = new WriteLane();
    let retries = 0;
    const retry = () => retries++;
    expect(lane.tryAcquire(retry)).toBe(true);
    expect(lane.tryAcquire(retry)).toBe(false);
    expect(lane.tryAcquire(retry)).toBe(false);
    lane.release();
    expect(retries).toBe(1);
    lane.release();
    expect(retries).toBe(1);
  });
});
