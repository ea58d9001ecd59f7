import { AHEAD_PER_SLOT, aheadRoom, chooseAhead, ChooseInput, chooseClaims, ClaimCandidate, freeSlots } from '../../src/core/choose-claims';
import { Resources, TaskSpec } from '../../src/gen/loom';

interface E extends ClaimCandidate {
  id: string;
  mine: boolean;
  stealAtMs: number;
  /** This node's steal order for the entry (lower first). */
  rank: number;
}

const NOW = 1_000_000;
const CAP: Resources = { cpu: 4, memoryBytes: 8e9, diskBytes: 0 };

function entry(id: string, o: Partial<{ priority: number; mine: boolean; stealAtMs: number; seenAtMs: number; notBeforeMs: number; cpu: number; rank: number }> = {}): E {
  const spec = TaskSpec.fromPartial({ command: ['true'], resources: o.cpu ? { cpu: o.cpu } : undefined });
  return {
    id,
    priority: o.priority ?? 0,
    seenAtMs: o.seenAtMs ?? NOW - 5,
    snapshot: { notBeforeMs: o.notBeforeMs ?? 0, spec },
    mine: o.mine ?? true,
    stealAtMs: o.stealAtMs ?? NOW + 20,
    rank: o.rank ?? 0,
  };
}

/** chooseClaims with the entries' own answers, counting how many entries were looked at. */
function choose(entries: E[], freeSlots: number, extra: Partial<ChooseInput<E>> = {}) {
  const looked = new Set<string>();
  const res = chooseClaims(entries, {
    freeSlots,
    free: CAP,
    now: NOW,
    starveAfterMs: 1000,
    refused: (e) => (looked.add(e.id), false),
    preferred: (e) => e.mine,
    stealAt: (e) => e.stealAtMs,
    stealRank: (e) => e.rank,
    ...extra,
  });
  return { ids: res.chosen.map((e) => e.id), nextAt: res.nextAt, looked: looked.size };
}

describe('chooseClaims', () => {
  it('takes its preferred entries from the front, in order', () => {
    const es = [entry('a', { mine: false }), entry('b'), entry('c'), entry('d')];
    expect(choose(es, 2).ids).toEqual(['b', 'c']);
  });

  it('stops looking once the free slots are filled', () => {
    const es = Array.from({ length: 1000 }, (_, i) => entry(`t${i}`, { mine: i % 3 === 0 }));
    const r = choose(es, 2);
    expect(r.ids).toEqual(['t0', 't3']);
    expect(r.looked).toBe(4);
  });

  it('steals once the steal time has passed, and only then', () => {
    const es = [entry('a', { mine: false, stealAtMs: NOW - 1 }), entry('c', { mine: false, stealAtMs: NOW + 7 })];
    expect(choose(es, 1).ids).toEqual(['a']);
    const none = choose([entry('c', { mine: false, stealAtMs: NOW + 7 })], 1);
    expect(none.ids).toEqual([]);
    expect(none.nextAt).toBe(NOW + 7);
  });

  it('steals in its own rank order, so thieves seeing the same entries start at different ones', () => {
    const ranks: Record<string, [number, number]> = { a: [3, 1], b: [1, 2], c: [2, 3] };
    const es = Object.keys(ranks).map((id) => entry(id, { mine: false, stealAtMs: NOW - 1 }));
    const thief = (k: 0 | 1, slots: number) => choose(es, slots, { stealRank: (e) => ranks[e.id][k] }).ids;
    expect(thief(0, 1)).toEqual(['b']);
    expect(thief(1, 1)).toEqual(['a']);
    expect(thief(0, 2)).toEqual(['b', 'c']);
  });

  it('does not look at a lower band while a higher one has an entry waiting to be stolen', () => {
    const es = [entry('hi', { priority: 9, mine: false, stealAtMs: NOW + 5 }), entry('lo', { priority: 1 })];
    const r = choose(es, 2);
    expect(r.ids).toEqual([]);
    expect(r.nextAt).toBe(NOW + 5);
    // Once the higher band has nothing waiting, the lower band is next.
    expect(choose([entry('hi', { priority: 9 }), entry('lo', { priority: 1 })], 2).ids).toEqual(['hi', 'lo']);
  });

  it('skips entries that must not start yet and those this node cannot run, and says when to look again', () => {
    const es = [entry('later', { notBeforeMs: NOW + 50 }), entry('no'), entry('ok')];
    const r = choose(es, 2, { refused: (e) => e.id === 'no' });
    expect(r.ids).toEqual(['ok']);
    expect(choose([entry('later', { notBeforeMs: NOW + 50 })], 1).nextAt).toBe(NOW + 50);
  });

  it('takes only what fits the free resources, in every dimension', () => {
    const es = [entry('big', { cpu: 3 }), entry('big2', { cpu: 3 }), entry('small', { cpu: 1 })];
    expect(choose(es, 3).ids).toEqual(['big', 'small']);
  });

  it('a starving preferred entry that does not fit holds back what is behind it', () => {
    const starving = entry('huge', { cpu: 3, seenAtMs: NOW - 5000 });
    const small = entry('small', { cpu: 1 });
    const free: Resources = { cpu: 2, memoryBytes: 8e9, diskBytes: 0 };
    expect(choose([starving, small], 2, { free }).ids).toEqual([]);
    // Not starving yet: the small one may pass it.
    expect(choose([entry('huge', { cpu: 3 }), small], 2, { free }).ids).toEqual(['small']);
  });
});

describe('aheadRoom', () => {
  const room = (o: Partial<Parameters<typeof aheadRoom>[0]>) =>
    aheadRoom({ slots: 2, backlog: 0, typicalRunMs: 3, waitBudgetMs: 55, ...o });

  it('is zero until a run time is known, and for tasks as long as the wait budget', () => {
    expect(room({ typicalRunMs: NaN })).toBe(0);
    expect(room({ typicalRunMs: 55 })).toBe(0);
    expect(room({ typicalRunMs: 500 })).toBe(0);
  });

  it('fills up to AHEAD_PER_SLOT per slot for short tasks, less what already waits', () => {
    expect(room({})).toBe(2 * AHEAD_PER_SLOT);
    expect(room({ backlog: 1 })).toBe(2 * AHEAD_PER_SLOT - 1);
  });

  it('refills only below the low-water mark (fewer waiting than slots)', () => {
    expect(room({ backlog: 2 })).toBe(0);
    expect(room({ backlog: 5 })).toBe(0);
  });

  it('keeps the last one’s wait for a slot within the budget', () => {
    // 2 slots, 20 ms tasks, 55 ms budget: 5 ahead wait at most 2.5 runs = 50 ms.
    expect(room({ typicalRunMs: 20 })).toBe(5);
    expect(room({ typicalRunMs: 20, backlog: 1 })).toBe(4);
  });
});

describe('chooseAhead', () => {
  const pick = (es: E[], n: number, taken: E[] = []) =>
    chooseAhead(es, n, { now: NOW, taken: new Set(taken), refused: () => false, preferred: (e) => e.mine }).map((e) => e.id);

  it('takes only this node’s preferred entries, in order, up to the room', () => {
    const es = [entry('a'), entry('b', { mine: false }), entry('c'), entry('d'), entry('e')];
    expect(pick(es, 3)).toEqual(['a', 'c', 'd']);
  });

  it('skips what is already chosen, not yet due, asks for resources or a container, or must not restart', () => {
    const boxed = entry('x');
    boxed.snapshot = { ...boxed.snapshot, spec: TaskSpec.fromPartial({ command: ['true'], container: { image: 'busybox' } }) };
    const once = entry('y');
    once.snapshot = { ...once.snapshot, spec: TaskSpec.fromPartial({ command: ['true'], restartOnNodeFailure: false }) };
    const es = [entry('a'), entry('b', { notBeforeMs: NOW + 10 }), entry('c', { cpu: 1 }), boxed, once, entry('d')];
    expect(pick(es, 6, [es[0]])).toEqual(['d']);
  });
});

describe('freeSlots', () => {
  it('counts tasks waiting ahead as running for ordinary tasks, not for urgent ones', () => {
    expect(freeSlots({ slots: 2, urgentSlots: 1, running: 0, backlog: 0 })).toEqual({ free: 2, urgentFree: 3 });
    expect(freeSlots({ slots: 2, urgentSlots: 1, running: 2, backlog: 5 })).toEqual({ free: -5, urgentFree: 1 });
    expect(freeSlots({ slots: 2, urgentSlots: 1, running: 3, backlog: 0 })).toEqual({ free: -1, urgentFree: 0 });
    expect(freeSlots({ slots: 4, urgentSlots: 0, running: 1, backlog: 2 })).toEqual({ free: 1, urgentFree: 3 });
  });
});
