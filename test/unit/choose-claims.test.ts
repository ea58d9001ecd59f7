import { ChooseInput, chooseClaims, ClaimCandidate } from '../../src/core/choose-claims';
import { Resources, TaskSpec } from '../../src/gen/loom';

interface E extends ClaimCandidate {
  id: string;
  mine: boolean;
  stealAtMs: number;
}

const NOW = 1_000_000;
const CAP: Resources = { cpu: 4, memoryBytes: 8e9, diskBytes: 0 };

function entry(id: string, o: Partial<{ priority: number; mine: boolean; stealAtMs: number; seenAtMs: number; notBeforeMs: number; cpu: number }> = {}): E {
  const spec = TaskSpec.fromPartial({ command: ['true'], resources: o.cpu ? { cpu: o.cpu } : undefined });
  return {
    id,
    priority: o.priority ?? 0,
    seenAtMs: o.seenAtMs ?? NOW - 5,
    snapshot: { notBeforeMs: o.notBeforeMs ?? 0, spec },
    mine: o.mine ?? true,
    stealAtMs: o.stealAtMs ?? NOW + 20,
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

  it('steals from the back of the band once the steal time has passed, and only then', () => {
    const es = [entry('a', { mine: false, stealAtMs: NOW - 1 }), entry('b', { mine: false, stealAtMs: NOW - 1 }), entry('c', { mine: false, stealAtMs: NOW + 7 })];
    const r = choose(es, 1);
    expect(r.ids).toEqual(['b']);
    const none = choose([entry('c', { mine: false, stealAtMs: NOW + 7 })], 1);
    expect(none.ids).toEqual([]);
    expect(none.nextAt).toBe(NOW + 7);
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
