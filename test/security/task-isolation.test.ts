/**
 * Hostile process tasks against a node running as root with the default
 * confinement (--run-as pool): each attack is a real task, and each test
 * checks the secure outcome and that the node and the other tasks are
 * unharmed. The attacks that could hurt the machine if a protection failed
 * (kill -9 -1, a fork bomb) are in confined-node.test.ts.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Task, TaskState } from '../../src/gen/loom';
import { uniqueRoot, waitFor } from '../support/etcd';
import { collectLogs, spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(60_000);

const isRoot = process.getuid?.() === 0;
const describeAsRoot = isRoot ? describe : describe.skip;
if (!isRoot) console.warn('task isolation tests skipped: they need root (the node switches task uids)');

async function run(n: TestNode, command: string[], env: Record<string, string> = {}): Promise<{ task: Task; stdout: string; stderr: string }> {
  const [id] = await n.api.submit([spec(command, { env })]);
  const task = await n.api.wait(id);
  return { task, ...(await collectLogs(n.api, id, false)) };
}

function statusField(status: string, field: string): string {
  return new RegExp(`^${field}:[ \\t]*(.*)$`, 'm').exec(status)?.[1].trim() ?? '';
}

describeAsRoot('a process task on a root node (--run-as pool)', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'iso', { slots: 3, runAs: 'auto' });
  });
  afterAll(() => n && stopNode(n));

  it('runs under a uid of its own with no capabilities and no_new_privs', async () => {
    const { task, stdout } = await run(n, ['cat', '/proc/self/status']);
    expect(task.state).toBe(TaskState.COMPLETED);
    const uid = Number(statusField(stdout, 'Uid').split(/\s+/)[0]);
    expect(uid).toBeGreaterThanOrEqual(60000);
    expect(uid).toBeLessThanOrEqual(60999);
    for (const set of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) expect([set, statusField(stdout, set)]).toEqual([set, '0000000000000000']);
    expect(statusField(stdout, 'NoNewPrivs')).toBe('1');
    expect(statusField(stdout, 'Groups')).toBe('');
  });

  it('cannot read the node data dir, its lease or the logs of other tasks', async () => {
    const [other] = await n.api.submit([spec(['echo', 'private output'])]);
    await n.api.wait(other);
    const logs = path.join(n.dataDir, 'logs');
    const { task, stdout, stderr } = await run(n, ['sh', '-c', [
      `ls "${n.dataDir}" && echo LISTED`,
      `cat "${path.join(n.dataDir, 'lease')}" && echo READ_LEASE`,
      `cat "${logs}"/* && echo READ_LOGS`,
      `ls "${path.join(n.dataDir, 'scratch')}" && echo LISTED_SCRATCH`,
      'echo done',
    ].join('; ')]);
    expect(task.state).toBe(TaskState.COMPLETED);
    expect(stdout).not.toMatch(/LISTED|READ_LEASE|READ_LOGS|private output/);
    expect(stdout).toMatch(/done/);
    expect(stderr).toMatch(/Permission denied/);
  });

  it("cannot read another task's environment or signal it", async () => {
    const [victim] = await n.api.submit([spec(['sh', '-c', 'echo $$; exec sleep 30'], { env: { SECRET: 'bob-s3cret' } })]);
    const pid = Number(await waitFor(async () => (await collectLogs(n.api, victim, false)).stdout.trim(), { what: 'the victim pid' }));
    const { task, stdout, stderr } = await run(n, ['sh', '-c', `cat /proc/${pid}/environ; kill -9 ${pid} && echo KILLED; echo done`]);
    expect(task.state).toBe(TaskState.COMPLETED);
    expect(stdout).not.toMatch(/bob-s3cret|KILLED/);
    expect(stderr).toMatch(/Permission denied|Operation not permitted/);
    expect((await n.api.get(victim)).state).toBe(TaskState.RUNNING);
    await n.api.cancel(victim);
  });

  it('cannot move itself out of its cgroups', async () => {
    const script = [
      'for f in /sys/fs/cgroup/pids/cgroup.procs /sys/fs/cgroup/freezer/cgroup.procs /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/unified/cgroup.procs; do',
      '  [ -e "$f" ] && (echo $$ > "$f") 2>/dev/null && echo "ESCAPED $f"',
      'done',
      'cat /proc/self/cgroup',
    ].join('\n');
    const { task, stdout } = await run(n, ['sh', '-c', script]);
    expect(task.state).toBe(TaskState.COMPLETED);
    expect(stdout).not.toMatch(/ESCAPED/);
    // It is in a task group of this node's (pids where the machine has that controller).
    expect(stdout).toMatch(/loom_\d+_iso\//);
  });

  it('leaves nothing behind: a setsid child with a clean environment dies with the task', async () => {
    const tag = `loomleft-${process.pid}-${Date.now()}`;
    const { task } = await run(n, ['sh', '-c', `setsid env -i sh -c 'sleep 1000' ${tag} </dev/null >/dev/null 2>&1 & sleep 0.2; echo started`]);
    expect(task.state).toBe(TaskState.COMPLETED);
    const survivors = () =>
      fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(tag);
        } catch {
          return false;
        }
      });
    await waitFor(() => survivors().length === 0, { what: `no process tagged ${tag}`, timeoutMs: 5_000 });
  });

  it('has a private scratch directory as its default working directory, removed afterwards', async () => {
    const { task, stdout } = await run(n, ['sh', '-c', 'pwd; touch mine && echo WROTE; stat -c %a .']);
    expect(task.state).toBe(TaskState.COMPLETED);
    const [cwd, wrote, mode] = stdout.trim().split('\n');
    expect(cwd.startsWith(path.join(n.dataDir, 'scratch') + path.sep)).toBe(true);
    expect([wrote, mode]).toEqual(['WROTE', '700']);
    await waitFor(() => !fs.existsSync(cwd), { what: 'the scratch dir removed' });
  });
});
