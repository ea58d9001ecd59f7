/**
 * Spread placement weighted by slots, on two real in-process nodes: with both
 * idle and tasks queued two at a time (a batch, so no submit fast path), each
 * task goes to its rendezvous-preferred node, which a 4-slot node is for ~4/5
 * of the tasks next to a 1-slot one. Unweighted, the split would be ~1/2.
 */
import { TaskState } from '../../src/gen/loom';
import { uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(120_000);

describe('weighted spread', () => {
  const root = uniqueRoot();
  let nodes: TestNode[] = [];
  beforeAll(async () => {
    nodes = [await startNode(root, 'one', { slots: 1 }), await startNode(root, 'four', { slots: 4 })];
    await waitFor(async () => (await nodes[0].api.nodes()).length === 2 && (await nodes[1].api.nodes()).length === 2, { what: 'both nodes see both' });
  });
  afterAll(async () => {
    for (const n of nodes) await stopNode(n);
  });

  it('sends a node a share of idle-cluster tasks in proportion to its slots', async () => {
    const api = nodes[0].api;
    const per: Record<string, number> = { one: 0, four: 0 };
    for (let round = 0; round < 50; round++) {
      const ids = await api.submit([spec(['true']), spec(['true'])]);
      for (const id of ids) {
        const t = await api.wait(id);
        expect(t.state).toBe(TaskState.COMPLETED);
        per[t.node]++;
      }
    }
    // 100 tasks: expected ~80 on "four" (sd ~4); ~50 if slots were ignored.
    expect(per.four).toBeGreaterThanOrEqual(65);
    expect(per.one).toBeGreaterThan(0);
  });
});
