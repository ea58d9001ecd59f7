/**
 * --placement pack on two real in-process nodes of equal size: every task
 * prefers the busiest node with a free slot (both idle: the first by name),
 * so an idle cluster's work piles onto one node and the other stays idle,
 * also for tasks submitted one at a time through the other node's API (its
 * submit fast path yields to placement). Spread would split them ~1/2.
 */
import { TaskState } from '../../src/gen/loom';
import { uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(120_000);

describe('pack placement', () => {
  const root = uniqueRoot();
  let nodes: TestNode[] = [];
  beforeAll(async () => {
    nodes = [await startNode(root, 'pa', { slots: 4, placement: 'pack' }), await startNode(root, 'pb', { slots: 4, placement: 'pack' })];
    await waitFor(async () => (await nodes[0].api.nodes()).length === 2 && (await nodes[1].api.nodes()).length === 2, { what: 'both nodes see both' });
  });
  afterAll(async () => {
    for (const n of nodes) await stopNode(n);
  });

  async function placed(submit: () => Promise<string[]>, rounds: number): Promise<Record<string, number>> {
    const per: Record<string, number> = { pa: 0, pb: 0 };
    for (let round = 0; round < rounds; round++) {
      for (const id of await submit()) {
        const t = await nodes[0].api.wait(id);
        expect(t.state).toBe(TaskState.COMPLETED);
        per[t.node]++;
      }
    }
    return per;
  }

  it('queued tasks of an idle cluster go to one node', async () => {
    const per = await placed(() => nodes[0].api.submit([spec(['true']), spec(['true'])]), 15);
    // 30 tasks: pack sends them all to "pa" (a stray steal may win a race); spread: ~15.
    expect(per.pa).toBeGreaterThanOrEqual(27);
  });

  it('a task submitted through the other node is not run there by the submit fast path', async () => {
    const per = await placed(() => nodes[1].api.submit([spec(['true'])]), 15);
    expect(per.pa).toBeGreaterThanOrEqual(13);
  });
});
