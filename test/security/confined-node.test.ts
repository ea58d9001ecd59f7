/**
 * Attacks that would hurt the machine if a protection failed (`kill -9 -1`,
 * a fork bomb), against a real `loom node` process (root, default
 * --run-as pool, --pids 64) that is itself confined, so that a failure kills
 * the test and not the session or CI:
 *  - in a PID namespace of its own (unshare --pid --fork --mount-proc), with
 *    a shell as the namespace's init, so `kill -9 -1` run as root would reach
 *    the node and its etcd member but nothing outside;
 *  - in a pids cgroup of 1024 made by the test (v1 pids hierarchy, where this
 *    machine has one), so an unbounded fork bomb stops there;
 *  - with its data dir on a 64 MB tmpfs mounted in the namespace.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LoomApi } from '../../src/client/client';
import { TaskState } from '../../src/gen/loom';
import { waitFor } from '../support/etcd';
import { freePort } from '../support/ports';
import { LOOM_BIN } from '../support/cluster';
import { collectLogs, spec } from '../support/nodes';

jest.setTimeout(120_000);

const OUTER_PIDS = 1024;
const TASK_PIDS = 64;

/** Where a pids cgroup can be made for the node under test, or why not. */
function pidsHierarchy(): string | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'needs root' };
  if (spawnSync('unshare', ['--version']).status !== 0) return { skip: 'no unshare(1)' };
  const v1 = '/sys/fs/cgroup/pids';
  if (fs.existsSync(path.join(v1, 'cgroup.procs'))) return v1;
  const v2 = '/sys/fs/cgroup';
  const controls = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8').split(/\s+/) : []);
  if (controls(path.join(v2, 'cgroup.subtree_control')).includes('pids')) return v2;
  return { skip: 'no pids cgroup controller the test can use' };
}

const where = pidsHierarchy();
const describeConfined = typeof where === 'string' ? describe : describe.skip;
if (typeof where !== 'string') console.warn(`confined-node attack tests skipped: ${where.skip}`);

/** Processes anywhere on the machine whose command line contains `tag`. */
function tagged(tag: string): number[] {
  return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(tag);
    } catch {
      return false;
    }
  });
}

/** rmdir of a cgroup and the groups inside it; false while one still holds a process. */
function removeGroups(dir: string): boolean {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return true; // gone
  }
  const inner = entries.filter((e) => e.isDirectory()).every((e) => removeGroups(path.join(dir, e.name)));
  if (!inner) return false;
  try {
    fs.rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

describeConfined('a root node confined for attack tests', () => {
  let dir: string;
  let group: string;
  let proc: ChildProcess;
  let api: LoomApi;
  let logFile: string;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-sec-'));
    group = path.join(where as string, `loom_sec_${process.pid}`);
    fs.mkdirSync(group);
    fs.writeFileSync(path.join(group, 'pids.max'), String(OUTER_PIDS));
    const dataDir = path.join(dir, 'data');
    fs.mkdirSync(dataDir);
    const [listen, peer, client] = [await freePort(), await freePort(), await freePort()];
    const nodeArgs = [
      LOOM_BIN, 'node', '--name', 'sec', '--listen', `127.0.0.1:${listen}`, '--data-dir', dataDir,
      '--peer-listen', `http://127.0.0.1:${peer}`, '--client-listen', `http://127.0.0.1:${client}`,
      '--slots', '3', '--pids', String(TASK_PIDS), '--kill-grace', '500ms',
      // The etcd member's WAL preallocates 61 MiB of the 64 MiB tmpfs: below
      // the default floor (5% of it), the node would take no task at all.
      '--min-free-disk', '1M',
    ].map((a) => `'${a}'`).join(' ');
    // sh is the namespace's init (pid 1), the node its child: kill -9 -1 spares only init.
    const inner = `mount -t tmpfs -o size=64m,mode=0700 tmpfs '${dataDir}' && '${process.execPath}' ${nodeArgs}`;
    const outer = `echo $$ > '${path.join(group, 'cgroup.procs')}' && exec unshare --pid --fork --mount-proc sh -c "${inner.replace(/"/g, '\\"')}"`;
    logFile = path.join(dir, 'node.log');
    const out = fs.openSync(logFile, 'a');
    proc = spawn('sh', ['-c', outer], { stdio: ['ignore', out, out], detached: true });
    fs.closeSync(out);
    api = new LoomApi(`127.0.0.1:${listen}`);
    await waitFor(async () => (await api.nodes()).length > 0, { what: `the confined node answering (log: ${logFile})`, timeoutMs: 60_000 });
  });

  afterAll(async () => {
    api?.close();
    if (proc?.pid) {
      try {
        process.kill(-proc.pid, 'SIGKILL'); // unshare and its namespace's init: the namespace dies with it
      } catch {
        // gone already
      }
    }
    // The node was killed: its task groups are still inside ours. Once the
    // namespace's processes are gone, the empty groups go, innermost first.
    if (group) await waitFor(() => removeGroups(group), { what: `${group} removed`, timeoutMs: 10_000 });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function stillServes(): Promise<void> {
    const [id] = await api.submit([spec(['echo', 'alive'])]);
    const t = await api.wait(id);
    expect(t.state).toBe(TaskState.COMPLETED);
    expect((await collectLogs(api, id, false)).stdout).toBe('alive\n');
  }

  it('survives `kill -9 -1` from a task, and so do the other tasks', async () => {
    const [sibling] = await api.submit([spec(['sleep', '60'])]);
    await waitFor(async () => (await api.get(sibling)).state === TaskState.RUNNING, { what: 'the sibling running' });
    const [attack] = await api.submit([spec(['sh', '-c', 'sleep 30 & kill -9 -1; echo still here'])]);
    const t = await api.wait(attack);
    // It could signal only its own processes (kill(-1) spares the caller): its sleep.
    expect(t.state).toBe(TaskState.COMPLETED);
    expect((await collectLogs(api, attack, false)).stdout).toBe('still here\n');
    expect((await api.get(sibling)).state).toBe(TaskState.RUNNING);
    await stillServes();
    await api.cancel(sibling);
  });

  it(`bounds a fork bomb to --pids ${TASK_PIDS}, keeps serving meanwhile, and leaves nothing of it behind`, async () => {
    const tag = `loombomb${process.pid}`;
    const [bomb] = await api.submit([spec(['sh', '-c', 'b() { b & b & wait; }; while :; do b; done', tag], { timeoutMs: 4000 })]);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, tagged(tag).length)), 20);
    try {
      await stillServes();
      const t = await api.wait(bomb);
      // It hit the limit (dash gives up with exit 2 when its loop cannot fork), or its timeout.
      expect(t.state).toBe(TaskState.FAILED);
      expect((await collectLogs(api, bomb, false)).stderr).toMatch(/Cannot fork/);
    } finally {
      clearInterval(sampler);
    }
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(TASK_PIDS);
    await waitFor(() => tagged(tag).length === 0, { what: 'no process of the bomb left', timeoutMs: 10_000 });
    await stillServes();
  });
});
