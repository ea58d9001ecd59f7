import { checkMaxLoad, claimDelayMs, loadHoldReason, parseMaxLoad, preferredNode, stealOrder, takesTurn, thiefRank, DEFAULT_STEAL_POLICY as P } from '../../src/core/steal-policy';

describe('steal policy', () => {
  it('lets the preferred, not-full node claim at once', () => {
    expect(claimDelayMs({ preferred: true, running: 0, slots: 4 }, P, () => 0.5)).toBe(0);
    expect(claimDelayMs({ preferred: true, running: 3, slots: 4 }, P, () => 0.5)).toBe(0);
  });

  it('makes others wait, longer when busier', () => {
    const idle = claimDelayMs({ preferred: false, running: 0, slots: 4 }, P, () => 0);
    const busy = claimDelayMs({ preferred: false, running: 3, slots: 4 }, P, () => 0);
    expect(idle).toBe(P.stealDelayMs);
    expect(busy).toBeGreaterThan(idle);
    expect(claimDelayMs({ preferred: false, running: 0, slots: 4 }, P, () => 1)).toBe(P.stealDelayMs + P.jitterMs);
  });

  it('orders the thieves of each task: ranks 0..n-2 over the nodes but the preferred one, the same from any list order', () => {
    const nodes = Array.from({ length: 12 }, (_, i) => `node-${i}`);
    const firsts = new Map<string, number>();
    for (let i = 0; i < 600; i++) {
      const id = `job-1-${i}`;
      const pref = preferredNode(id, nodes)!;
      const ranks = nodes.filter((n) => n !== pref).map((n) => thiefRank(id, nodes, n, pref));
      expect([...ranks].sort((a, b) => a - b)).toEqual(Array.from({ length: nodes.length - 1 }, (_, k) => k));
      const reversed = [...nodes].reverse();
      expect(nodes.filter((n) => n !== pref).map((n) => thiefRank(id, reversed, n, pref))).toEqual(ranks);
      const first = nodes.find((n) => n !== pref && thiefRank(id, nodes, n, pref) === 0)!;
      firsts.set(first, (firsts.get(first) ?? 0) + 1);
    }
    // Each task has its own order: the first thief is spread over all nodes (50 each expected).
    expect(firsts.size).toBe(nodes.length);
    for (const count of firsts.values()) expect(count).toBeGreaterThan(20);
  });

  it('gives the first thieves a turn each, one step apart and without jitter, then lets the rest in over time', () => {
    const at = (rank: number, jitter: number) => claimDelayMs({ preferred: false, running: 0, slots: 1, thiefRank: rank }, P, () => jitter);
    for (let r = 0; r < P.thiefTurns; r++) {
      expect(at(r, 0)).toBe(P.stealDelayMs + r * P.thiefStepMs);
      expect(at(r, 0.99)).toBe(at(r, 0));
    }
    const lastTurn = at(P.thiefTurns - 1, 0);
    expect(at(P.thiefTurns, 0)).toBeGreaterThanOrEqual(lastTurn + P.thiefStepMs);
    let before = at(P.thiefTurns, 0);
    for (const r of [P.thiefTurns + 1, P.thiefTurns + 3, P.thiefTurns + 7, P.thiefTurns + 100]) {
      expect(at(r, 0)).toBeGreaterThan(before);
      before = at(r, 0);
    }
    // 500 nodes: the last thief waits well under a second.
    expect(at(498, 1)).toBeLessThan(500);
    // Without a rank (older callers): every thief at once, with jitter.
    expect(claimDelayMs({ preferred: false, running: 0, slots: 1 }, P, () => 0)).toBe(P.stealDelayMs);
    // A thief looks at its own turns first, earliest first, then the rest by hash.
    expect(stealOrder(0, 0.9)).toBeLessThan(stealOrder(1, 0.1));
    expect(stealOrder(P.thiefTurns + 50, 0.1)).toBeLessThan(stealOrder(P.thiefTurns, 0.2));
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

  it('makes a steal wait longer on busy CPUs, never the preferred node\'s own claim', () => {
    const idle = claimDelayMs({ preferred: false, running: 0, slots: 4, cpuBusy: 0 }, P, () => 0);
    const busyCpu = claimDelayMs({ preferred: false, running: 0, slots: 4, cpuBusy: 0.9 }, P, () => 0);
    expect(idle).toBe(P.stealDelayMs);
    expect(busyCpu).toBeCloseTo(P.stealDelayMs + 0.9 * P.loadDelayMs);
    // The busier of slots and CPUs counts, capped at full.
    expect(claimDelayMs({ preferred: false, running: 3, slots: 4, cpuBusy: 0.1 }, P, () => 0)).toBeCloseTo(P.stealDelayMs + 0.75 * P.loadDelayMs);
    expect(claimDelayMs({ preferred: false, running: 0, slots: 4, cpuBusy: 3 }, P, () => 0)).toBe(P.stealDelayMs + P.loadDelayMs);
    expect(claimDelayMs({ preferred: true, running: 0, slots: 4, cpuBusy: 1 }, P, () => 0.5)).toBe(0);
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
