/**
 * Memory limits of process tasks through a real node: a task over its --memory is killed by
 * the kernel and recorded as OOM (skipped, with the reason printed, where this machine lets us
 * create no cgroups).
 */
import * as fs from 'fs';
import * as path from 'path';
import { TaskState } from '../../src/gen/loom';
import { CgroupLimiter } from '../../src/runner/cgroup';
import { uniqueRoot } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';
import { cli } from '../support/cluster';

jest.setTimeout(60_000);
const MiB = 1024 * 1024;

const notes: string[] = [];
const limiter = CgroupLimiter.detect('probe', (m) => notes.push(m));
const skip = !limiter?.memory ? `no writable cgroup memory controller (${notes.join('; ')})` : undefined;
if (skip) console.warn(`process limit tests skipped: ${skip}`);
const d = skip ? describe.skip : describe;

/** Removes this process's (empty) parent groups; a normal exit does that, jest's does not always. */
function removeOwnParents(probe: CgroupLimiter | undefined): void {
  for (const dir of new Set((probe?.parents ?? []).map((p) => path.dirname(p)))) {
    for (const name of fs.readdirSync(dir)) {
      if (!name.startsWith(`loom_${process.pid}_`)) continue;
      try {
        fs.rmdirSync(path.join(dir, name));
      } catch {
        // busy: left to the next detect()
      }
    }
  }
}

d('process task limits on a node', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'lim', { slots: 2 });
  });
  afterAll(async () => {
    await stopNode(n);
    removeOwnParents(limiter);
  });

  it('a process task over its memory limit fails as OOM; one within it succeeds', async () => {
    const resources = { cpu: 0.5, memoryBytes: 32 * MiB, diskBytes: 0 };
    const [hog, ok] = await n.api.submit([
      spec(['sh', '-c', 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo ${#x}'], { resources }),
      spec(['sh', '-c', 'x=$(head -c 1000000 /dev/zero | tr "\\0" a); echo ${#x}'], { resources }),
    ]);
    const t = await n.api.wait(hog);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.oomKilled).toBe(true);
    expect(t.reason).toMatch(/out of memory/);
    const u = await n.api.wait(ok);
    expect(u.state).toBe(TaskState.COMPLETED);
    expect(u.oomKilled).toBeFalsy();
  });

  it('the attached CLI explains the OOM kill (the same line as for a container, container-task.test.ts)', async () => {
    // One process that grows without bound (tail of a file with no newline), no shell: a shell whose
    // child the kernel picks prints its own "Killed" to the task's stderr first (seen in CI).
    const r = await cli(['-N', n.node.address, 'run', '--memory', '32M', 'tail', '/dev/zero']);
    expect(r.code).toBe(137);
    expect(r.stderr).toMatch(/^loom: task \S+ failed \(signal SIGKILL\): killed: out of memory \(over its memory limit\)\n$/);
  });
});
