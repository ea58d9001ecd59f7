import { NodeInfo } from '../../src/gen/loom';
import { slotsFree, startedSince } from '../../src/core/cluster-view';

const node = (name: string, o: Partial<NodeInfo>) => NodeInfo.fromPartial({ name, slots: 4, startedAtMs: 1_000, ...o });

describe('slotsFree', () => {
  it('counts the free slots of nodes that take work, never below zero on one node', () => {
    expect(slotsFree([node('a', { running: 1 }), node('b', { running: 4 }), node('c', { running: 6 })])).toBe(3);
    expect(slotsFree([node('a', { running: 0, draining: true }), node('b', { running: 2 })])).toBe(2);
    expect(slotsFree([])).toBe(0);
  });
});

describe('startedSince', () => {
  it('sums what each node claimed since the look before, from the queue and in submits', () => {
    const first = startedSince(new Map(), [node('a', { claimed: 10, claimedAtSubmit: 5 }), node('b', { claimed: 3 })], 2_000);
    // Nodes that were up before the first look: their past is not this interval's.
    expect(first.started).toBe(0);
    const next = startedSince(first.counts, [node('a', { claimed: 12, claimedAtSubmit: 6 }), node('b', { claimed: 3 })], 3_000);
    expect(next.started).toBe(3);
  });

  it('counts a node that (re)started since the look before from zero, and a gone node not at all', () => {
    const before = startedSince(new Map(), [node('a', { claimed: 50 }), node('b', { claimed: 7 })], 2_000).counts;
    // a restarted at 2,500 (its counter began again), b is gone, c is new since the last look.
    const now = startedSince(before, [node('a', { claimed: 4, startedAtMs: 2_500 }), node('c', { claimed: 2, startedAtMs: 2_600 })], 2_000);
    expect(now.started).toBe(6);
    expect([...now.counts.keys()].sort()).toEqual(['a', 'c']);
  });

  it('never counts backwards', () => {
    const before = startedSince(new Map(), [node('a', { claimed: 9 })], 2_000).counts;
    expect(startedSince(before, [node('a', { claimed: 8 })], 3_000).started).toBe(0);
  });
});
