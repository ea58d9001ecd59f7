import { checkMaxLoad, loadHoldReason, MAX_TURN_SCALE, nextCommitEstimate, parseMaxLoad, preferredNode, stealAtAgeMs, takesTurn, thiefRank, turnScale, DEFAULT_STEAL_POLICY as P } from '../../src/core/steal-policy';

describe('steal policy', () => {
  it('without a thief order, lets every thief steal after the delay, later when busier, with jitter', () => {
    const at = (running: number, jitter: number) => stealAtAgeMs({ ageMs: 0, running, slots: 4 }, P, () => jitter);
    expect(at(0, 0)).toBe(P.stealDelayMs);
    expect(at(3, 0)).toBe(P.stealDelayMs + 0.75 * P.loadDelayMs);
    expect(at(0, 1)).toBe(P.stealDelayMs + P.jitterMs);
  });

  it('orders the thieves of each task: ranks 0..n-2 over the nodes but the preferred one, the same from any list order', () => {
    const nodes = Array.from({ length: 12 }, (_, i) => `node-${i}`);
    const firsts = new Map<string, number>();
    for (let i = 0; i < 600; i++) {
      const id = `job-1-${i}`;
      const pref = preferredNode(id, nodes)!;
      const ranks = nodes.filter((n) => n !== pref).map((n) => thiefRank(id, nodes, n, pref).rank);
      for (const n of nodes) if (n !== pref) expect(thiefRank(id, nodes, n, pref).of).toBe(nodes.length - 1);
      expect([...ranks].sort((a, b) => a - b)).toEqual(Array.from({ length: nodes.length - 1 }, (_, k) => k));
      const reversed = [...nodes].reverse();
      expect(nodes.filter((n) => n !== pref).map((n) => thiefRank(id, reversed, n, pref).rank)).toEqual(ranks);
      const first = nodes.find((n) => n !== pref && thiefRank(id, nodes, n, pref).rank === 0)!;
      firsts.set(first, (firsts.get(first) ?? 0) + 1);
    }
    // Each task has its own order: the first thief is spread over all nodes (50 each expected).
    expect(firsts.size).toBe(nodes.length);
    for (const count of firsts.values()) expect(count).toBeGreaterThan(20);
  });

  it('gives the thieves of a task turns one at a time, round and round, with a guard between owners', () => {
    const of = 7;
    const may = (rank: number, ageMs: number, running = 0) => stealAtAgeMs({ ageMs, running, slots: 4, thief: { rank, of } }, P) <= ageMs;
    const owners: number[][] = [];
    for (let age = 0; age < 400; age += 0.25) {
      const now = [...Array(of).keys()].filter((r) => may(r, age));
      expect(now.length).toBeLessThanOrEqual(1);
      owners.push(now);
    }
    // Two different owners are never allowed within turnGuardMs of each other.
    const step = 0.25;
    const guard = P.turnGuardMs / step;
    for (let i = 0; i < owners.length; i++) {
      for (let k = 1; k <= guard && i + k < owners.length; k++) {
        if (owners[i].length && owners[i + k].length) expect(owners[i + k]).toEqual(owners[i]);
      }
    }
    // Nobody before the steal delay; rank r first at stealDelay + r steps, and again every cycle.
    expect(owners.slice(0, P.stealDelayMs / step).flat()).toEqual([]);
    for (let r = 0; r < of; r++) {
      const first = P.stealDelayMs + r * P.thiefStepMs;
      expect(stealAtAgeMs({ ageMs: 0, running: 0, slots: 4, thief: { rank: r, of } }, P)).toBe(first);
      expect(may(r, first + of * P.thiefStepMs + 1)).toBe(true);
      expect(may(r, first + P.thiefStepMs - P.turnGuardMs)).toBe(false);
      expect(stealAtAgeMs({ ageMs: first + P.thiefStepMs, running: 0, slots: 4, thief: { rank: r, of } }, P)).toBe(first + of * P.thiefStepMs);
    }
    // Every thief owns a turn in every cycle: a task nobody else takes waits at most one cycle for a given idle thief.
    expect(new Set(owners.flat())).toEqual(new Set([...Array(of).keys()]));
  });

  it('stretches turns and guard by a power of two so a claim commits within the guard, up to MAX_TURN_SCALE', () => {
    expect(turnScale(0)).toBe(1);
    expect(turnScale(P.turnGuardMs)).toBe(1);
    expect(turnScale(P.turnGuardMs + 0.1)).toBe(2);
    expect(turnScale(P.turnGuardMs * 3)).toBe(4);
    expect(turnScale(1e6)).toBe(MAX_TURN_SCALE);
    for (const commitMs of [3, 9, 27, 60]) expect(P.turnGuardMs * turnScale(commitMs)).toBeGreaterThanOrEqual(commitMs);
    // With scale k: one owner at a time, and no two owners within k x turnGuardMs of each other.
    const of = 5;
    const k = 4;
    const may = (rank: number, ageMs: number) => stealAtAgeMs({ ageMs, running: 0, slots: 4, thief: { rank, of }, turnScale: k }, P) <= ageMs;
    let last: { rank: number; at: number } | undefined;
    for (let age = 0; age < 1000; age += 0.5) {
      const now = [...Array(of).keys()].filter((r) => may(r, age));
      expect(now.length).toBeLessThanOrEqual(1);
      if (now.length === 0) continue;
      if (last && last.rank !== now[0]) expect(age - last.at).toBeGreaterThanOrEqual(P.turnGuardMs * k);
      last = { rank: now[0], at: age };
    }
    expect(stealAtAgeMs({ ageMs: 0, running: 0, slots: 4, thief: { rank: 2, of }, turnScale: k }, P)).toBe(P.stealDelayMs + 2 * P.thiefStepMs * k);
  });

  it('raises the commit estimate at once to a slower claim and lowers it a tenth of the way to a faster one', () => {
    expect(nextCommitEstimate(2, 30)).toBe(30);
    expect(nextCommitEstimate(30, 10)).toBe(28);
    let e = 40;
    for (let i = 0; i < 100; i++) e = nextCommitEstimate(e, 2);
    expect(e).toBeCloseTo(2, 1);
  });

  it('makes a busy thief skip the turns that begin within its load delay, keeping to its own turns after', () => {
    const busy = stealAtAgeMs({ ageMs: 0, running: 3, slots: 4, thief: { rank: 1, of: 7 } }, P);
    expect(busy).toBeGreaterThanOrEqual(P.stealDelayMs + 0.75 * P.loadDelayMs);
    expect((busy - P.stealDelayMs) / P.thiefStepMs % 7).toBe(1);
    // A lone thief has no other owner to leave room for: any age past the delay.
    expect(stealAtAgeMs({ ageMs: 1000.5, running: 0, slots: 1, thief: { rank: 0, of: 1 } }, P)).toBe(P.stealDelayMs);
  });

  it('gives each sweep turn to exactly k nodes, a different k each turn, spread evenly', () => {
    const nodes = Array.from({ length: 10 }, (_, i) => `n${i}`);
    const turnsOf = new Map(nodes.map((n) => [n, 0]));
    const takers = new Set<string>();
    for (let slot = 0; slot < 500; slot++) {
      const mine = nodes.filter((n) => takesTurn(n, nodes, `orphan-sweep/${slot}`, 2));
      expect(mine).toHaveLength(2);
      mine.forEach((n) => turnsOf.set(n, turnsOf.get(n)! + 1));
      takers.add(mine.join(','));
    }
    for (const count of turnsOf.values()) expect(count).toBeGreaterThan(50); // 100 expected
    expect(takers.size).toBeGreaterThan(20);
  });

  it('lets every node take the turn when there are no more than k, and counts a node missing from its own view', () => {
    expect(takesTurn('a', [], 't', 2)).toBe(true);
    expect(takesTurn('a', ['b'], 't', 2)).toBe(true);
    const view = ['b', 'c', 'd'];
    const withSelf = ['a', ...view].filter((n) => takesTurn(n, n === 'a' ? view : ['a', ...view], 't/7', 2));
    expect(withSelf).toHaveLength(2);
  });

  it('chooses a stable preferred node, spread evenly', () => {
    const nodes = ['n1', 'n2', 'n3'];
    const counts: Record<string, number> = { n1: 0, n2: 0, n3: 0 };
    for (let i = 0; i < 3000; i++) {
      const p = preferredNode(`task-${i}`, nodes)!;
      expect(preferredNode(`task-${i}`, [...nodes].reverse())).toBe(p);
      counts[p]++;
    }
    for (const n of nodes) expect(counts[n]).toBeGreaterThan(850);
  });

  it('moves only the lost node\'s share when a node goes', () => {
    const before = Array.from({ length: 1000 }, (_, i) => preferredNode(`t${i}`, ['a', 'b', 'c']));
    const after = Array.from({ length: 1000 }, (_, i) => preferredNode(`t${i}`, ['a', 'b']));
    before.forEach((p, i) => {
      if (p !== 'c') expect(after[i]).toBe(p);
    });
    expect(preferredNode('x', [])).toBeUndefined();
  });

  it('weights the choice: a node with 3x the slots prefers ~3x the tasks', () => {
    const slots: Record<string, number> = { small: 2, big: 6 };
    const counts: Record<string, number> = { small: 0, big: 0 };
    const n = 20_000;
    for (let i = 0; i < n; i++) counts[preferredNode(`task-${i}`, ['small', 'big'], (x) => slots[x])!]++;
    expect(counts.big / n).toBeGreaterThan(0.72);
    expect(counts.big / n).toBeLessThan(0.78);
    const three: Record<string, number> = { a: 1, b: 2, c: 5 };
    const c3: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < n; i++) c3[preferredNode(`${i}`, ['a', 'b', 'c'], (x) => three[x])!]++;
    expect(c3.a / n).toBeGreaterThan(0.1);
    expect(c3.a / n).toBeLessThan(0.15);
    expect(c3.c / n).toBeGreaterThan(0.6);
    expect(c3.c / n).toBeLessThan(0.65);
  });

  it('with equal weights chooses as without, and moves only the lost node\'s share when weighted', () => {
    for (let i = 0; i < 2000; i++) expect(preferredNode(`t${i}`, ['a', 'b', 'c'], () => 4)).toBe(preferredNode(`t${i}`, ['a', 'b', 'c']));
    const w: Record<string, number> = { a: 1, b: 3, c: 8 };
    for (let i = 0; i < 2000; i++) {
      const before = preferredNode(`t${i}`, ['a', 'b', 'c'], (x) => w[x]);
      if (before !== 'c') expect(preferredNode(`t${i}`, ['a', 'b'], (x) => w[x])).toBe(before);
    }
  });

  it('never prefers a node of weight 0 while another has slots', () => {
    for (let i = 0; i < 500; i++) expect(preferredNode(`t${i}`, ['none', 'some'], (x) => (x === 'none' ? 0 : 1))).toBe('some');
    expect(preferredNode('t', ['x', 'y'], () => 0)).toBeDefined();
  });

  it('makes a steal wait longer on busy CPUs (the busier of slots and CPUs, capped at full)', () => {
    const at = (running: number, cpuBusy: number) => stealAtAgeMs({ ageMs: 0, running, slots: 4, cpuBusy }, P, () => 0);
    expect(at(0, 0)).toBe(P.stealDelayMs);
    expect(at(0, 0.9)).toBeCloseTo(P.stealDelayMs + 0.9 * P.loadDelayMs);
    expect(at(3, 0.1)).toBeCloseTo(P.stealDelayMs + 0.75 * P.loadDelayMs);
    expect(at(0, 3)).toBe(P.stealDelayMs + P.loadDelayMs);
    expect(stealAtAgeMs({ ageMs: 0, running: 0, slots: 4, cpuBusy: 0.9, thief: { rank: 0, of: 3 } }, P)).toBeGreaterThanOrEqual(P.stealDelayMs + 0.9 * P.loadDelayMs);
  });

  it('holds back at --max-load and resumes only a tenth below it', () => {
    expect(loadHoldReason(0.99, 0, false)).toBeUndefined();
    expect(loadHoldReason(0.89, 0.9, false)).toBeUndefined();
    expect(loadHoldReason(0.9, 0.9, false)).toBe('CPUs 90% busy (--max-load 90%; takes tasks again below 80%)');
    expect(loadHoldReason(0.85, 0.9, true)).toBe('CPUs 85% busy (--max-load 90%; takes tasks again below 80%)');
    expect(loadHoldReason(0.79, 0.9, true)).toBeUndefined();
  });

  it('reads --max-load as a percentage or a share, and refuses anything else', () => {
    expect(parseMaxLoad('90%')).toBeCloseTo(0.9);
    expect(parseMaxLoad(' 0.75 ')).toBe(0.75);
    expect(parseMaxLoad('0')).toBe(0);
    for (const ok of ['0', '20%', '100%', '0.9']) expect(() => parseMaxLoad(ok)).not.toThrow();
    for (const bad of ['', 'lots', '10%', '150%', '-1', '2']) {
      expect(() => parseMaxLoad(bad)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^--max-load must be a share of the CPUs.*\(got "/) }));
    }
    expect(() => checkMaxLoad(0.1)).toThrow(/got "0.1"/);
  });
});
