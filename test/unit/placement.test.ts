/** Placement strategies (core/placement.ts): the share of tasks each node is preferred for. */
import { freeWeight, parsePlacement, Placement, placementView, PlacementView, preferredFor } from '../../src/core/placement';
import { NodeInfo } from '../../src/gen/loom';
import { thrownBy } from '../support/errors';

const TASKS = 20_000;

/** Share of TASKS (ids t0..) each node is preferred for. */
function shares(p: Placement, nodes: PlacementView[]): Record<string, number> {
  const count: Record<string, number> = Object.fromEntries(nodes.map((n) => [n.name, 0]));
  for (let i = 0; i < TASKS; i++) count[preferredFor(p, `t${i}`, nodes)!]++;
  return Object.fromEntries(Object.entries(count).map(([k, v]) => [k, v / TASKS]));
}

const view = (name: string, slots: number, running = 0, cpuBusy?: number, memoryFree?: number): PlacementView => ({ name, slots, running, cpuBusy, memoryFree });

describe('placement strategies', () => {
  const small = view('a', 2);
  const big = view('b', 6);

  it('spread gives each node a share proportional to its slots', () => {
    const s = shares('spread', [small, big]);
    expect(s.a).toBeCloseTo(0.25, 1);
    expect(s.b).toBeCloseTo(0.75, 1);
  });

  it('random treats nodes alike whatever their size', () => {
    const s = shares('random', [small, big]);
    expect(s.a).toBeCloseTo(0.5, 1);
    expect(s.b).toBeCloseTo(0.5, 1);
  });

  it('every node computes the same choice (a pure function of the task and the records)', () => {
    const nodes = [view('a', 4, 1, 0.2), view('b', 4, 3, 0.9), view('c', 8, 0)];
    for (const p of ['spread', 'random', 'pack', 'least-loaded'] as Placement[]) {
      for (let i = 0; i < 50; i++) expect(preferredFor(p, `t${i}`, [...nodes].reverse())).toBe(preferredFor(p, `t${i}`, nodes));
    }
  });

  it('pack prefers the busiest node with a free slot, then the bigger, then by name; all full: spread', () => {
    expect(preferredFor('pack', 't', [view('a', 4, 1), view('b', 4, 3), view('c', 8, 0)])).toBe('b');
    expect(preferredFor('pack', 't', [view('a', 4, 4), view('b', 4, 3)])).toBe('b');
    expect(preferredFor('pack', 't', [view('b', 4, 0), view('a', 4, 0)])).toBe('a');
    expect(preferredFor('pack', 't', [view('a', 4, 0), view('c', 8, 0)])).toBe('c');
    const full = [view('a', 2, 2), view('b', 6, 6)];
    expect(shares('pack', full)).toEqual(shares('spread', full));
  });

  it('least-loaded weighs free slots by measured idle CPU and free memory', () => {
    const s = shares('least-loaded', [view('idle', 4, 0, 0.0, 1), view('burning', 4, 0, 0.8, 1)]);
    // Weights 4 and 4 x 0.2 = 0.8: shares 5/6 and 1/6.
    expect(s.idle).toBeCloseTo(5 / 6, 1);
    expect(s.burning).toBeCloseTo(1 / 6, 1);
    expect(shares('least-loaded', [view('free', 4, 1), view('busy', 4, 3)]).free).toBeCloseTo(0.75, 1);
    expect(freeWeight(view('x', 4, 4, 0))).toBe(0);
    // A saturated machine keeps a floor: slow, not gone.
    expect(freeWeight(view('x', 4, 0, 1, 0))).toBeGreaterThan(0);
    expect(preferredFor('least-loaded', 't', [view('x', 2, 2), view('y', 2, 2)])).toBeDefined();
  });

  it('reads a published node record', () => {
    const n = NodeInfo.fromPartial({ name: 'n', slots: 4, running: 1, metrics: { cpuUtilization: 0.5, memoryAvailableBytes: 1, memoryTotalBytes: 4 } });
    expect(placementView(n)).toEqual({ name: 'n', slots: 4, running: 1, cpuBusy: 0.5, memoryFree: 0.25 });
    expect(placementView(NodeInfo.fromPartial({ name: 'old', slots: 2 }))).toEqual({ name: 'old', slots: 2, running: 0 });
  });

  it('parses --placement', () => {
    expect(parsePlacement('Least-Loaded')).toBe('least-loaded');
    expect(thrownBy(() => parsePlacement('binpack')).message).toBe('invalid --placement "binpack": expected one of spread, random, pack, least-loaded');
    expect(preferredFor('spread', 't', [])).toBeUndefined();
  });
});
