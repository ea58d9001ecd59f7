// The simulated cluster (scripts/sim/): loom's claim decisions under seeded
// deaths, lost replies and slow etcd keep the rules, and the checker reports
// it when a store compare is taken away.
import { runSimulation } from '../../scripts/sim/run';
import { StealOrders } from '../../scripts/sim/node';
import { thiefRank } from '../../src/core/steal-policy';

const SMALL = { tasks: 600, nodes: 6, deaths: 2, lostReplies: 0.05, slowPeriods: 2 };

describe('simulated cluster', () => {
  it('seeds 1-5: every task has one result, none ran in two places, no finished run thrown away', () => {
    let kills = 0;
    for (const seed of [1, 2, 3, 4, 5]) {
      const r = runSimulation({ ...SMALL, seed });
      expect({ seed, violations: r.violations, results: r.results }).toEqual({ seed, violations: [], results: SMALL.tasks });
      kills += r.kills;
    }
    expect(kills).toBeGreaterThan(0); // deaths hit running tasks, so requeues were exercised
  });

  it('is deterministic: the same seed gives the same run', () => {
    const a = runSimulation({ ...SMALL, seed: 7 });
    const b = runSimulation({ ...SMALL, seed: 7 });
    const strip = (r: typeof a) => ({ ...r, wallMs: 0 });
    expect(strip(b)).toEqual(strip(a));
  });

  it('reports a second execution when a claim skips its compare', () => {
    const r = runSimulation({ ...SMALL, seed: 1, plant: 'claim-without-compare' });
    expect(r.violations.some((v) => /while running on/.test(v))).toBe(true);
  });

  it('reports a second execution when a live lease is requeued', () => {
    const r = runSimulation({ ...SMALL, seed: 1, plant: 'requeue-live-lease' });
    expect(r.violations.some((v) => /while running on|result was refused/.test(v))).toBe(true);
  });

  it('keeps claim collisions rare with many nodes: thieves start at different entries', () => {
    // Each thief taking the same end of the band gave 0.88 lost claims per task here.
    const r = runSimulation({ nodes: 20, tasks: 2000, seed: 3 });
    expect(r.violations).toEqual([]);
    expect(r.lostClaimsPerTask).toBeLessThan(0.2);
  });

  it('orders each task\'s thieves as a real node computes its own place (thiefRank)', () => {
    const names = Array.from({ length: 30 }, (_, i) => `n${i + 1}`);
    const orders = new StealOrders();
    for (let i = 0; i < 200; i++) {
      const id = `t${String(i).padStart(8, '0')}`;
      const o = orders.of(id, names, names.join(','));
      for (const n of names) if (n !== o.preferred) expect(o.rank.get(n)).toBe(thiefRank(id, names, n, o.preferred).rank);
    }
  });

  it('reports tasks left without a result when the run is cut short', () => {
    const r = runSimulation({ ...SMALL, seed: 1, limitMs: 50 });
    expect(r.violations.some((v) => /without a result/.test(v))).toBe(true);
  });
});
