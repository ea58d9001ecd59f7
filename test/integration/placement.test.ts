/** Labels, capacities, constraints and pins across three real in-process nodes. */
import { TaskState } from '../../src/gen/loom';
import { uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(60_000);
const GiB = 1024 ** 3;

describe('placement', () => {
  const root = uniqueRoot();
  let nodes: TestNode[] = [];
  beforeAll(async () => {
    nodes = [
      await startNode(root, 'small', { slots: 4, labels: { zone: 'eu' }, capacity: { cpu: 1, memoryBytes: 1 * GiB, diskBytes: 0 } }),
      await startNode(root, 'medium', { slots: 4, labels: { zone: 'eu', gpu: 'yes' }, capacity: { cpu: 2, memoryBytes: 4 * GiB, diskBytes: 0 } }),
      await startNode(root, 'large', { slots: 4, labels: { zone: 'us' }, capacity: { cpu: 4, memoryBytes: 8 * GiB, diskBytes: 0 } }),
    ];
    await waitFor(async () => (await nodes[0].api.nodes()).length === 3, { what: 'three nodes' });
  });
  afterAll(async () => {
    for (const n of nodes) await stopNode(n);
  });

  it('runs constrained and pinned tasks only where they may', async () => {
    const api = nodes[0].api;
    const eu = await api.submit(Array.from({ length: 6 }, () => spec(['true'], { constraints: [{ key: 'zone', op: '=', value: 'eu' }] })));
    const notEu = await api.submit(Array.from({ length: 6 }, () => spec(['true'], { constraints: [{ key: 'zone', op: '!=', value: 'eu' }] })));
    const gpu = await api.submit(Array.from({ length: 3 }, () => spec(['true'], { constraints: [{ key: 'gpu', op: '=', value: 'yes' }] })));
    const pinned = await api.submit(Array.from({ length: 4 }, () => spec(['true'], { pinNode: 'small' })));
    const big = await api.submit([spec(['true'], { resources: { cpu: 3, memoryBytes: 6 * GiB, diskBytes: 0 } })]);
    const nodeOf = async (ids: string[]) => new Set(await Promise.all(ids.map(async (id) => (await api.wait(id)).node)));
    for (const n of await nodeOf(eu)) expect(['small', 'medium']).toContain(n);
    expect([...(await nodeOf(notEu))]).toEqual(['large']);
    expect([...(await nodeOf(gpu))]).toEqual(['medium']);
    expect([...(await nodeOf(pinned))]).toEqual(['small']);
    expect([...(await nodeOf(big))]).toEqual(['large']);
  });

  it('keeps a task too big for every node queued, and says why', async () => {
    const api = nodes[1].api;
    const [id] = await api.submit([spec(['true'], { resources: { cpu: 64, memoryBytes: 0, diskBytes: 0 } })]);
    const [arm] = await api.submit([spec(['true'], { constraints: [{ key: 'arch', op: '=', value: 'arm64-none' }] })]);
    await waitFor(async () => /waiting: no node can run it/.test((await api.get(id)).reason), { what: 'reason for the big task' });
    expect((await api.get(arm)).reason).toBe('waiting: no node has arch=arm64-none');
    // Other work still flows past it.
    const [after] = await api.submit([spec(['true'])]);
    expect((await api.wait(after)).state).toBe(TaskState.COMPLETED);
    expect((await api.get(id)).state).toBe(TaskState.QUEUED);
    await api.cancel(id);
    await api.cancel(arm);
  });

  it('publishes capacity, free resources, metrics and automatic labels', async () => {
    const infos = await nodes[0].api.nodes();
    const large = infos.find((n) => n.name === 'large')!;
    expect(large.capacity).toMatchObject({ cpu: 4, memoryBytes: 8 * GiB });
    expect(large.labels).toMatchObject({ zone: 'us', node: 'large', os: 'linux' });
    expect(large.labels.arch).toBeTruthy();
    expect(large.metrics!.memoryTotalBytes).toBeGreaterThan(0);
  });
});
