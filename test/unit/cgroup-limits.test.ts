/**
 * Memory and CPU limits of process tasks: real processes in real cgroups (skipped, with the
 * reason printed, where this machine lets us create none), the rlimit fallback, and the v2
 * layout against a fake cgroup tree (v2 cannot be exercised for real on a v1 machine).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CgroupLimiter } from '../../src/runner/cgroup';
import { ProcessRunner } from '../../src/runner/process-runner';
import { RunRequest } from '../../src/runner/types';

const PATH = process.env.PATH ?? '/usr/bin:/bin';
const MiB = 1024 * 1024;

async function waitFor(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** Gone, or a zombie nobody reaps. */
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  const stat = read(`/proc/${pid}/stat`);
  return stat === undefined || stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
}

/** Task groups currently under the limiter's parent groups. */
function taskGroups(limiter: CgroupLimiter): string[] {
  return limiter.parents.flatMap((p) =>
    fs.readdirSync(p, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => path.join(p, e.name)),
  );
}

/** A pid that belonged to a process which has exited. */
function deadPid(): number {
  const pid = spawnSync('true').pid!;
  expect(isGone(pid)).toBe(true);
  return pid;
}

const logs: string[] = [];
const limiter = CgroupLimiter.detect('unit', (m) => logs.push(m));
const skipReason = !limiter
  ? `cgroups are not writable here (${logs.join('; ')})`
  : !limiter.memory
    ? `no writable cgroup memory controller (${logs.join('; ')})`
    : undefined;
if (skipReason) console.log(`cgroup-limits: skipping the real-cgroup tests: ${skipReason}`);
const withCgroups = skipReason ? describe.skip : describe;

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
afterAll(() => removeOwnParents(limiter));

let dir: string;
let n = 0;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-limits-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function req(argv: string[], extra: Partial<RunRequest> = {}): RunRequest {
  return {
    argv,
    env: { PATH },
    cwd: '',
    logPath: path.join(dir, 'logs', `attempt-${n++}.log`),
    timeoutMs: 0,
    killGraceMs: 1000,
    tailBytes: 4096,
    ...extra,
  };
}

withCgroups('process limits in real cgroups', () => {
  const runnerLogs: string[] = [];
  const runner = () => new ProcessRunner({ defaultCwd: os.tmpdir(), limiter: limiter!, log: (m) => runnerLogs.push(m) });

  test('a process over its memory limit is OOM-killed and reported so; its group is removed', async () => {
    const r = await runner().start(
      req(['sh', '-c', 'x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo ${#x}'], { memoryBytes: 32 * MiB }),
    ).done;
    expect(r.oomKilled).toBe(true);
    expect(r.signal).toBe('SIGKILL');
    expect(r.exitCode).toBeUndefined();
    expect(r.stdoutTail.toString()).toBe('');
    expect(taskGroups(limiter!)).toEqual([]);
  });

  test('a process within its memory limit completes normally, inside its group', async () => {
    // The task is moved into its group as start() returns (see "Placement race" in cgroup.ts):
    // it waits for a file created after that, so what it forks then inherits the group.
    const go = path.join(dir, 'go');
    const script = 'while [ ! -e "$GO" ]; do sleep 0.01; done; cat /proc/self/cgroup; x=$(head -c 1000000 /dev/zero | tr "\\0" a); echo ${#x}';
    const h = runner().start(
      req(['sh', '-c', script], { memoryBytes: 32 * MiB, env: { PATH, GO: go, LOOM_TASK_ID: 'T1', LOOM_ATTEMPT: '2' } }),
    );
    const groupRe = new RegExp(`:/(.*/)?loom_${process.pid}_unit/T1\\.2-\\d+\\n`);
    expect(read(`/proc/${h.pid}/cgroup`)).toMatch(groupRe);
    fs.writeFileSync(go, '');
    const r = await h.done;
    expect(r.exitCode).toBe(0);
    expect(r.oomKilled).toBeUndefined();
    const out = r.stdoutTail.toString();
    expect(out.trim().split('\n').pop()).toBe('1000000');
    // The process ran in <parent>/T1.2-<n> (v1: the memory line; v2: the 0:: line).
    expect(out).toMatch(groupRe);
    expect(taskGroups(limiter!)).toEqual([]);
  });

  test('limits are written to the group; the CPU quota is cpus x 100 ms; stopping removes the group', async () => {
    const h = runner().start(
      req(['sh', '-c', 'i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done'], { memoryBytes: 48 * MiB, cpus: 0.2 }),
    );
    const pid = h.pid!;
    await waitFor(() => taskGroups(limiter!).length > 0);
    const groups = taskGroups(limiter!);
    const files = (name: string) => groups.map((g) => read(path.join(g, name))).filter((t): t is string => t !== undefined);
    if (limiter!.version === 'v1') {
      expect(files('memory.limit_in_bytes').map(Number)).toEqual([48 * MiB]);
      if (limiter!.cpu) {
        expect(files('cpu.cfs_quota_us').map(Number)).toEqual([20000]);
        expect(files('cpu.cfs_period_us').map(Number)).toEqual([100000]);
      }
    } else {
      expect(files('memory.max').map(Number)).toEqual([48 * MiB]);
      if (limiter!.cpu) expect(files('cpu.max').map((t) => t.trim())).toEqual(['20000 100000']);
    }
    // The task itself is in every one of its groups.
    for (const g of groups) expect(read(path.join(g, 'cgroup.procs'))!.split('\n')).toContain(String(pid));
    h.stop('cancel', 0);
    const r = await h.done;
    expect(r.signal).toBe('SIGKILL');
    expect(r.oomKilled).toBeUndefined();
    expect(groups.filter((g) => fs.existsSync(g))).toEqual([]);
  });

  test('the group is removed even if the task left a process outside its process group', async () => {
    // Gated like above: a child forked before the task was moved, by a leader that exited
    // before it, would escape the group (the documented placement race).
    const go = path.join(dir, 'go');
    const script = 'while [ ! -e "$GO" ]; do sleep 0.01; done; setsid sleep 30 >/dev/null 2>&1 & echo $!';
    const h = runner().start(req(['sh', '-c', script], { memoryBytes: 64 * MiB, env: { PATH, GO: go } }));
    fs.writeFileSync(go, '');
    const r = await h.done;
    expect(r.exitCode).toBe(0);
    const escaped = Number(r.stdoutTail.toString().trim());
    expect(escaped).toBeGreaterThan(0);
    expect(taskGroups(limiter!)).toEqual([]);
    await waitFor(() => isGone(escaped));
  });

  test('detect() removes empty groups left by loom processes that are gone', () => {
    const dead = deadPid();
    const stale = limiter!.parents.map((p) => path.join(path.dirname(p), `loom_${dead}_old`));
    for (const s of stale) fs.mkdirSync(path.join(s, 'task-1'), { recursive: true });
    const again: string[] = [];
    const other = CgroupLimiter.detect('unit2', (m) => again.push(m));
    expect(other).toBeDefined();
    expect(stale.filter((s) => fs.existsSync(s))).toEqual([]);
    expect(again.join('\n')).toMatch(new RegExp(`removed ${stale.length} stale group`));
    // Our own parent (a live process) is left alone.
    for (const p of limiter!.parents) expect(fs.existsSync(p)).toBe(true);
  });
});

describe('without cgroups', () => {
  const prlimit = spawnSync('prlimit', ['--version']).status === 0;
  if (!prlimit) console.log('cgroup-limits: skipping the rlimit test: prlimit(1) is not installed');
  const withPrlimit = prlimit ? test : test.skip;

  withPrlimit('memory becomes RLIMIT_AS of the task; the missing CPU limit is logged once', async () => {
    const logged: string[] = [];
    const runner = new ProcessRunner({ defaultCwd: os.tmpdir(), limiter: null, log: (m) => logged.push(m) });
    const h = runner.start(req(['sleep', '10'], { memoryBytes: 256 * MiB, cpus: 0.5 }));
    const limit = () => /^Max address space\s+(\d+)\s+(\d+)\s+bytes/m.exec(read(`/proc/${h.pid}/limits`) ?? '');
    await waitFor(() => limit() !== null);
    expect(limit()!.slice(1, 3).map(Number)).toEqual([256 * MiB, 256 * MiB]);
    h.stop('cancel', 0);
    const r = await h.done;
    expect(r.oomKilled).toBeUndefined();
    await runner.start(req(['true'], { cpus: 0.5 })).done;
    expect(logged.filter((m) => m.startsWith('cpu limit: not enforced'))).toHaveLength(1);
  });

  test('a request without limits touches neither cgroups nor rlimits', async () => {
    const logged: string[] = [];
    const runner = new ProcessRunner({ defaultCwd: os.tmpdir(), log: (m) => logged.push(m) });
    const r = await runner.start(req(['sh', '-c', 'cat /proc/self/cgroup'])).done;
    expect(r.exitCode).toBe(0);
    expect(r.stdoutTail.toString()).not.toMatch(/loom_/);
    expect(logged).toEqual([]);
  });
});

describe('cgroup v2 layout (a fake cgroup2 tree)', () => {
  test('delegates memory, cpu and pids, writes memory.max and cpu.max, reads oom_kill, cleans stale groups', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-fake-cg2-'));
    try {
      const own = path.join(root, 'svc');
      fs.mkdirSync(own);
      fs.writeFileSync(path.join(own, 'cgroup.controllers'), 'cpuset cpu io memory pids\n');
      fs.writeFileSync(path.join(own, 'cgroup.subtree_control'), '');
      fs.writeFileSync(path.join(own, 'cgroup.procs'), '');
      const stale = path.join(own, `loom_${deadPid()}_old`);
      fs.mkdirSync(path.join(stale, 'task-1'), { recursive: true });
      const logged: string[] = [];
      const fake = CgroupLimiter.detect('fake', (m) => logged.push(m), {
        mountInfo: `30 25 0:26 / ${root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n`,
        procCgroup: '0::/svc\n',
      })!;
      expect(fake).toBeDefined();
      expect(fake.version).toBe('v2');
      expect([fake.memory, fake.cpu]).toEqual([true, true]);
      const parent = path.join(own, `loom_${process.pid}_fake`);
      expect(fake.parents).toEqual([parent]);
      expect(fs.readFileSync(path.join(own, 'cgroup.subtree_control'), 'utf8')).toBe('+memory +cpu +pids');
      expect(fs.readFileSync(path.join(parent, 'cgroup.subtree_control'), 'utf8')).toBe('+memory +cpu +pids');
      expect(fs.existsSync(stale)).toBe(false);

      const p = fake.prepare('T9.1', { memoryBytes: 64 * MiB, cpus: 1.5, pids: 64 });
      expect(p.paths).toHaveLength(1);
      expect(path.dirname(p.paths[0])).toBe(parent);
      expect(path.basename(p.paths[0])).toMatch(/^T9\.1-\d+$/);
      expect(fs.readFileSync(path.join(p.paths[0], 'memory.max'), 'utf8')).toBe(String(64 * MiB));
      expect(fs.readFileSync(path.join(p.paths[0], 'cpu.max'), 'utf8')).toBe('150000 100000');
      expect(fs.readFileSync(path.join(p.paths[0], 'pids.max'), 'utf8')).toBe('64');
      expect(p.oomKilled()).toBe(false);
      fs.writeFileSync(path.join(p.paths[0], 'memory.events'), 'low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n');
      expect(p.oomKilled()).toBe(true);
      await p.release(); // a plain directory with files cannot be rmdir'd: logged, not thrown
      expect(logged.join('\n')).toMatch(/could not remove/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test('no memory, cpu or pids controller anywhere: detect() says why and returns undefined', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-fake-cg2-'));
    try {
      fs.writeFileSync(path.join(root, 'cgroup.controllers'), 'hugetlb\n');
      const logged: string[] = [];
      const none = CgroupLimiter.detect('fake', (m) => logged.push(m), {
        mountInfo: `30 25 0:26 / ${root} rw - cgroup2 cgroup2 rw\n`,
        procCgroup: '0::/\n',
      });
      expect(none).toBeUndefined();
      expect(logged.join('\n')).toMatch(/no memory, cpu or pids controller/);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
