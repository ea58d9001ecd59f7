import { claimDelayMs, preferredNode, DEFAULT_STEAL_POLICY as P } from '../../src/core/steal-policy';

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
});
