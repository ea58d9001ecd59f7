/**
 * --min-free-disk against a real node whose data dir is a small tmpfs: the
 * test fills it (tasks run under pool uids and cannot write the data dir),
 * the node stops taking new tasks and says why, another node takes the work
 * meanwhile, and the node takes work again once the space is back.
 *
 * The tmpfs is 8 MiB: if the protection failed, nothing but that mount fills.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { TaskState } from '../../src/gen/loom';
import { formatNodesTable } from '../../src/client/format';
import { uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';
import { sampleDisk } from '../../src/node/disk-watch';

jest.setTimeout(60_000);

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
// Mounting a tmpfs needs root; without it there is no confined place to fill.
const describeAsRoot = isRoot ? describe : describe.skip;

describeAsRoot('a node whose data dir runs low on space', () => {
  let base: string;
  let dataDir: string;
  let low: TestNode | undefined;
  let other: TestNode | undefined;
  let mounted = false;

  beforeAll(async () => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-disk-'));
    dataDir = path.join(base, 'data');
    fs.mkdirSync(dataDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', dataDir]);
    mounted = true;
    const root = uniqueRoot();
    low = await startNode(root, 'lowdisk', { dataDir, slots: 2, minFreeDisk: { bytes: 3 * MiB, percent: 0 } }, { diskCheckMs: 100 });
    other = await startNode(root, 'roomy', { slots: 2 });
  });

  afterAll(async () => {
    // stopNode removes the data dir: the mount point must be unmounted first,
    // so the node is stopped by hand here.
    try {
      if (low) {
        low.api.close();
        await low.node.stop({ graceMs: 0 });
      }
    } finally {
      // Lazily if need be: a node that failed to stop must not leave the mount behind.
      if (mounted) execFileSync('umount', ['-l', dataDir]);
      fs.rmSync(base, { recursive: true, force: true });
      if (other) await stopNode(other);
    }
  });

  it('stops claiming below the floor, says why once, and resumes when space comes back', async () => {
    const a = low!;
    const pinned = (cmd: string) => spec(['sh', '-c', cmd], { pinNode: 'lowdisk' });

    // With room it takes work.
    const [first] = await a.api.submit([pinned('echo fine')]);
    expect((await a.api.wait(first)).state).toBe(TaskState.COMPLETED);

    // Fill the tmpfs to 1 MiB short of full: below the 3 MiB floor.
    const { freeBytes } = await sampleDisk(dataDir);
    const filler = path.join(dataDir, 'filler');
    fs.writeFileSync(filler, Buffer.alloc(freeBytes - MiB));
    const info = await waitFor(async () => (await a.api.nodes()).find((n) => n.name === 'lowdisk' && n.pausedReason), { what: 'lowdisk to publish a paused reason' });
    expect(info.draining).toBe(true);
    expect(info.pausedReason).toMatch(/^data dir low on space: [\d.]+[KM]iB free < --min-free-disk 3MiB$/);
    expect(formatNodesTable([info], Date.now())).toContain('paused: data dir low on space');

    // A task for this node only, submitted through it: not claimed in the
    // submit transaction (it would be RUNNING at once)...
    const [waiting] = await a.api.submit([pinned('echo later')]);
    expect((await a.api.get(waiting)).state).toBe(TaskState.QUEUED);
    // ...nor by its steal loop: a task submitted after it, which the other
    // node steals from the same queue and runs for a second, ends while it
    // is still queued. (The low node sees the same queue entries; the other
    // node having claimed and finished the later one bounds how long the low
    // node has had to claim the earlier one.)
    const [elsewhere] = await a.api.submit([spec(['sleep', '1'])]);
    const ran = await a.api.wait(elsewhere);
    expect(ran.state).toBe(TaskState.COMPLETED);
    expect(ran.node).toBe('roomy');
    expect((await a.api.get(waiting)).state).toBe(TaskState.QUEUED);
    // Checked every 100 ms meanwhile, said once.
    expect(a.logs.filter((l) => l.startsWith('not taking new tasks: data dir low on space'))).toHaveLength(1);

    // Space back: the node says so and runs the waiting task.
    fs.rmSync(filler);
    const done = await a.api.wait(waiting);
    expect(done.state).toBe(TaskState.COMPLETED);
    expect(done.node).toBe('lowdisk');
    expect(a.logs.filter((l) => l.startsWith('data dir has free space again'))).toHaveLength(1);
    const resumed = await waitFor(async () => (await a.api.nodes()).find((n) => n.name === 'lowdisk' && !n.draining), { what: 'lowdisk to take work again' });
    expect(resumed.pausedReason).toBe('');
  });
});
