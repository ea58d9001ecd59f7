/**
 * Memory and CPU limits for process tasks.
 *
 * cgroups, where this node may create them:
 *  - v2 (unified): under the node's own cgroup, <own>/loom_<pid>[_<node>]/<task>/ with
 *    memory.max, memory.swap.max = 0, memory.oom.group = 1 (an OOM kill takes the whole task)
 *    and cpu.max "<quota> 100000". v2 forbids processes in a cgroup whose controllers are
 *    delegated to children ("no internal processes"), so if the node's own cgroup holds
 *    processes, they are all moved into a leaf <own>/loom_procs first (the usual
 *    docker-in-docker manoeuvre). OOM: memory.events "oom_kill N".
 *  - v1: the same layout under the node's own cgroup in the memory hierarchy
 *    (memory.limit_in_bytes, and memory.memsw.limit_in_bytes when present so swap cannot be
 *    used to escape) and in the cpu hierarchy (cpu.cfs_period_us = 100000,
 *    cpu.cfs_quota_us = cpus * 100000). OOM: memory.oom_control "oom_kill N" (kernel >= 4.13);
 *    older kernels: failcnt > 0 and the task died by SIGKILL.
 * The mode offering a memory controller wins (v2 first), then one offering only cpu.
 *
 * Without cgroups (see TaskLimits): memory becomes RLIMIT_AS of the task's leader, set with
 * `prlimit --pid` right after spawn (inherited by what it forks afterwards; per process, not
 * per task; a task over it sees allocations fail rather than being OOM-killed, so it is not
 * reported as OOM). CPU has no rlimit equivalent: it is not enforced, and that is logged once.
 *
 * Placement race: Node cannot run code between fork and exec, so a task is moved into its
 * group just after spawn() returns (its group is created and configured before the spawn, so
 * only the cgroup.procs writes remain: ~0.2-0.6 ms here). Until then the task runs unlimited:
 * memory it allocated by then stays charged to the node's cgroup (charges do not move), and a
 * child it forked by then starts outside the group. Such children are moved too when
 * /proc/<pid>/task/<pid>/children lists them (fork and migration are serialised by the
 * kernel, so a child forked before the leader's move is listed, one forked after inherits the
 * group); only a child that already exited or double-forked away (reparented) escapes.
 * Measured here: for `sh -c 'cat /proc/self/cgroup'` the cat reported the old cgroup in 3 of
 * 50 runs (it ran before being moved); a python3 task never did.
 *
 * Groups are per loom process (the directory name carries its pid), so two nodes on one
 * machine, or parallel test workers, never touch each other's groups. A task's group is
 * removed when the task exits: anything still in it is SIGKILLed first (the runner already
 * killed the task's process group; this also catches processes that left it with setsid).
 * detect() removes empty groups left by loom processes that no longer exist; groups still
 * holding processes are left alone (the reaper owns those processes) and are retried by the
 * next detect().
 */
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { pidAlive } from './pid-alive';
import { sleep } from '../core/sleep';

export interface ResourceLimits {
  /** Bytes; undefined or <= 0 = none. */
  memoryBytes?: number;
  /** Cores, fractional; undefined or <= 0 = none. */
  cpus?: number;
  /**
   * Processes and threads the task may have at once; undefined or <= 0 = none. Asking for it
   * makes the group a confinement too: kill() reaches everything the task started.
   */
  pids?: number;
}

export interface Placement {
  /** The task's group directories (v1: one per hierarchy; v2: one). */
  readonly paths: readonly string[];
  /** Moves a process (and the children it has already forked) into the group. */
  add(pid: number): void;
  /**
   * Whether the kernel OOM-killed a process of this group. `signal` is how the task's leader
   * died; it is only needed on old v1 kernels without an oom_kill counter.
   */
  oomKilled(signal?: string): boolean;
  /**
   * Kills every process in the group now, also those that left the task's process group and
   * session (v2: cgroup.kill; v1: freeze, kill, thaw, so a forking task cannot outrun it).
   */
  kill(): Promise<void>;
  /** Kills what is left in the group and removes it (retrying briefly). Never rejects. */
  release(): Promise<void>;
}

type Log = (message: string) => void;

export const CPU_PERIOD_US = 100_000;
/** The kernel refuses quotas under 1 ms. */
const MIN_CPU_QUOTA_US = 1000;
const PARENT_PREFIX = 'loom_';
/** v2: where the processes of the node's own cgroup go so its controllers can be delegated. */
const V2_LEAF = 'loom_procs';
const RELEASE_RETRY_MS = 25;
const RELEASE_GIVE_UP_MS = 3000;
const FREEZE_WAIT_MS = 1000;

export function cpuQuotaUs(cpus: number): number {
  return Math.max(MIN_CPU_QUOTA_US, Math.round(cpus * CPU_PERIOD_US));
}

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

function write(file: string, value: string): void {
  fs.writeFileSync(file, value);
}

function exists(file: string): boolean {
  return fs.existsSync(file);
}

/** mkdir that accepts an existing directory. */
function ensureDir(dir: string): void {
  try {
    fs.mkdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

function errMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code}: ${e.message}` : String(err);
}

function procs(dir: string): number[] {
  const text = read(path.join(dir, 'cgroup.procs')) ?? '';
  return text
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** "key N" lines (memory.events, memory.oom_control) -> N, or undefined if the key is absent. */
function counter(text: string | undefined, key: string): number | undefined {
  if (text === undefined) return undefined;
  const m = new RegExp(`^${key}\\s+(\\d+)\\s*$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}


function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** Children a process has forked so far, recursively (best effort; needs CONFIG_PROC_CHILDREN). */
function descendants(pid: number, depth = 0): number[] {
  if (depth > 4) return [];
  const text = read(`/proc/${pid}/task/${pid}/children`);
  if (!text) return [];
  const out: number[] = [];
  for (const s of text.trim().split(/\s+/)) {
    const child = Number(s);
    if (!Number.isInteger(child) || child <= 0) continue;
    out.push(child, ...descendants(child, depth + 1));
  }
  return out;
}

interface Mount {
  root: string;
  mountPoint: string;
  fsType: string;
  superOptions: string[];
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountInfo(text: string): Mount[] {
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    const dash = line.indexOf(' - ');
    if (dash < 0) continue;
    const pre = line.slice(0, dash).split(' ');
    const post = line.slice(dash + 3).split(' ');
    if (pre.length < 5 || post.length < 3) continue;
    out.push({ root: unescapeMount(pre[3]), mountPoint: unescapeMount(pre[4]), fsType: post[0], superOptions: post[2].split(',') });
  }
  return out;
}

/** /proc/self/cgroup -> hierarchy lines: controllers ([] for v2's "0::") and the path. */
export function parseProcCgroup(text: string): Array<{ controllers: string[]; path: string }> {
  const out: Array<{ controllers: string[]; path: string }> = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    out.push({ controllers: m[2] === '' ? [] : m[2].split(','), path: m[3] });
  }
  return out;
}

/** The directory of cgroup `cgPath` under a mount whose root is `mount.root`; undefined if outside it. */
function dirOf(mount: Mount, cgPath: string): string | undefined {
  if (mount.root === '/') return path.join(mount.mountPoint, cgPath);
  if (cgPath === mount.root || cgPath.startsWith(mount.root + '/')) {
    return path.join(mount.mountPoint, cgPath.slice(mount.root.length));
  }
  return undefined;
}

function parentName(nodeName: string | undefined): string {
  const safe = (nodeName ?? '').replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
  return `${PARENT_PREFIX}${process.pid}${safe ? `_${safe}` : ''}`;
}

/** Removes a group: kills what is left in it, rmdir, retrying while the kernel still holds it. */
async function removeGroup(dir: string, giveUpMs: number): Promise<boolean> {
  const deadline = Date.now() + giveUpMs;
  for (;;) {
    try {
      fs.rmdirSync(dir);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return true;
      if (code !== 'EBUSY' || Date.now() >= deadline) return false;
    }
    if (exists(path.join(dir, 'cgroup.kill'))) {
      try {
        write(path.join(dir, 'cgroup.kill'), '1');
      } catch {
        killAll(procs(dir));
      }
    } else {
      killAll(procs(dir));
    }
    await sleep(RELEASE_RETRY_MS);
  }
}

/** Kills every process of the groups: cgroup.kill where the kernel has it, else each pid (twice: a fork may race the first pass). */
async function killGroups(dirs: readonly string[]): Promise<void> {
  for (const dir of dirs) {
    if (procs(dir).length === 0) continue; // the usual case: nothing left behind
    if (exists(path.join(dir, 'cgroup.kill'))) {
      try {
        write(path.join(dir, 'cgroup.kill'), '1');
        continue;
      } catch {
        // fall through to the pids
      }
    }
    killAll(procs(dir));
    killAll(procs(dir));
  }
}

/**
 * v1: freezes the group (no process in it can run, so none can fork), kills each process,
 * thaws it so the kills are delivered. Gives up freezing after FREEZE_WAIT_MS and kills anyway.
 */
async function freezeAndKill(dir: string): Promise<void> {
  // Most tasks leave nothing behind: no freezing for an empty group.
  if (procs(dir).length === 0) return;
  const state = path.join(dir, 'freezer.state');
  try {
    write(state, 'FROZEN');
    const deadline = Date.now() + FREEZE_WAIT_MS;
    while ((read(state) ?? '').trim() !== 'FROZEN' && Date.now() < deadline) {
      await sleep(2);
    }
  } catch {
    // the group is gone, or no freezing here: kill what we see
  }
  killAll(procs(dir));
  try {
    write(state, 'THAWED');
  } catch {
    // removed meanwhile
  }
}

/**
 * Removes empty task groups (and then the parent) left under `dir` by loom processes that no
 * longer exist. Returns how many groups were removed and how many still hold processes.
 */
function removeStale(dirs: string[]): { removed: number; busy: number } {
  let removed = 0;
  let busy = 0;
  for (const dir of dirs) {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      const m = /^loom_(\d+)(?:_|$)/.exec(e.name);
      if (!e.isDirectory() || !m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
      const parent = path.join(dir, e.name);
      let children: fs.Dirent[] = [];
      try {
        children = fs.readdirSync(parent, { withFileTypes: true }).filter((c) => c.isDirectory());
      } catch {
        continue;
      }
      for (const c of children) {
        const group = path.join(parent, c.name);
        if (procs(group).length > 0) {
          busy++;
          continue;
        }
        try {
          fs.rmdirSync(group);
          removed++;
        } catch {
          busy++;
        }
      }
      try {
        fs.rmdirSync(parent);
      } catch {
        // still holds a busy group
      }
    }
  }
  return { removed, busy };
}

interface V1Hierarchy {
  /** The node's own cgroup directory in this hierarchy. */
  own: string;
  /** <own>/loom_<pid>..., created by detect(). */
  parent: string;
}

type Mode =
  | { kind: 'v2'; own: string; parent: string; memory: boolean; cpu: boolean; pids: boolean }
  | { kind: 'v1'; memory?: V1Hierarchy; cpu?: V1Hierarchy; pids?: V1Hierarchy; freezer?: V1Hierarchy };

/** Detects a usable cgroup hierarchy and creates tasks' groups in it. */
export class CgroupLimiter {
  /** Per process, not per limiter: several runners in one process share the parent group. */
  private static seq = 0;
  /** Parent groups this process created; removed at exit if empty. */
  private static ownParents: Set<string> | undefined;

  private constructor(
    private readonly mode: Mode,
    private readonly log: Log,
  ) {}

  /** 'v1' or 'v2'. */
  get version(): 'v1' | 'v2' {
    return this.mode.kind;
  }

  /** Whether memory limits are enforced by cgroups (else TaskLimits uses an rlimit). */
  get memory(): boolean {
    return this.mode.kind === 'v2' ? this.mode.memory : this.mode.memory !== undefined;
  }

  /** Whether CPU limits are enforced. */
  get cpu(): boolean {
    return this.mode.kind === 'v2' ? this.mode.cpu : this.mode.cpu !== undefined;
  }

  /** Whether pids limits are enforced. */
  get pids(): boolean {
    return this.mode.kind === 'v2' ? this.mode.pids : this.mode.pids !== undefined;
  }

  /** The per-process parent directories tasks' groups are created in. */
  get parents(): string[] {
    if (this.mode.kind === 'v2') return [this.mode.parent];
    const m = this.mode;
    return [m.memory?.parent, m.cpu?.parent, m.pids?.parent, m.freezer?.parent].filter((p): p is string => p !== undefined);
  }

  /**
   * Finds a hierarchy where this process may create groups, creates its parent group(s) and
   * removes stale ones. undefined = no usable cgroups (the reason is logged).
   */
  static detect(nodeName?: string, log: Log = () => undefined, roots?: { mountInfo?: string; procCgroup?: string }): CgroupLimiter | undefined {
    const mounts = parseMountInfo(roots?.mountInfo ?? read('/proc/self/mountinfo') ?? '');
    const self = parseProcCgroup(roots?.procCgroup ?? read('/proc/self/cgroup') ?? '');
    const name = parentName(nodeName);
    const notes: string[] = [];

    // v2 is set up (which may move processes) only if it offers memory, or v1 offers none.
    const v2 = CgroupLimiter.probeV2(mounts, self, notes);
    if (v2?.wanted.includes('memory')) {
      const mode = CgroupLimiter.setupV2(v2, name, notes);
      if (mode) return CgroupLimiter.finish(mode, log);
    }
    const v1 = CgroupLimiter.tryV1(mounts, self, name, notes);
    if (v1) return CgroupLimiter.finish(v1, log);
    if (v2 && !v2.wanted.includes('memory')) {
      const mode = CgroupLimiter.setupV2(v2, name, notes);
      if (mode) return CgroupLimiter.finish(mode, log);
    }
    log(`cgroups: cannot create groups (${notes.join('; ') || 'no cgroup memory or cpu controller mounted'})`);
    return undefined;
  }

  private static finish(mode: Mode, log: Log): CgroupLimiter {
    const limiter = new CgroupLimiter(mode, log);
    if (!CgroupLimiter.ownParents) {
      const parents = (CgroupLimiter.ownParents = new Set());
      // Empty parents go with the process; busy ones are left to the next detect().
      process.once('exit', () => {
        for (const p of parents) CgroupLimiter.dropParent(p);
      });
    }
    for (const p of limiter.parents) CgroupLimiter.ownParents.add(p);
    const stale = removeStale(limiter.parents.map((p) => path.dirname(p)));
    const what = [limiter.memory ? 'memory' : '', limiter.cpu ? 'cpu' : '', limiter.pids ? 'pids' : ''].filter(Boolean).join(', ');
    log(
      `cgroups ${mode.kind}: ${what} limits for process tasks under ${limiter.parents.join(', ')}` +
        (stale.removed ? `; removed ${stale.removed} stale group(s)` : '') +
        (stale.busy ? `; ${stale.busy} stale group(s) still hold processes` : ''),
    );
    return limiter;
  }

  private static dropParent(dir: string): void {
    try {
      fs.rmdirSync(dir);
    } catch {
      // not ours to worry about
    }
  }

  /** The node's own v2 cgroup and which of memory/cpu it could delegate; no side effects. */
  private static probeV2(mounts: Mount[], self: ReturnType<typeof parseProcCgroup>, notes: string[]): { own: string; wanted: string[] } | undefined {
    const mount = mounts.find((m) => m.fsType === 'cgroup2');
    const cgPath = self.find((l) => l.controllers.length === 0)?.path;
    if (!mount || cgPath === undefined) return undefined;
    const own = dirOf(mount, cgPath);
    if (!own) {
      notes.push(`v2: own cgroup ${cgPath} is outside the mount ${mount.mountPoint}`);
      return undefined;
    }
    const available = (read(path.join(own, 'cgroup.controllers')) ?? '').trim().split(/\s+/);
    const wanted = ['memory', 'cpu', 'pids'].filter((c) => available.includes(c));
    if (wanted.length === 0) {
      notes.push(`v2: no memory, cpu or pids controller in ${own}`);
      return undefined;
    }
    return { own, wanted };
  }

  private static setupV2(probe: { own: string; wanted: string[] }, name: string, notes: string[]): Mode | undefined {
    const { own, wanted } = probe;
    const enable = wanted.map((c) => `+${c}`).join(' ');
    const enabled = (dir: string) => {
      const sub = (read(path.join(dir, 'cgroup.subtree_control')) ?? '').trim().split(/\s+/);
      return wanted.every((c) => sub.includes(c));
    };
    try {
      if (!enabled(own)) {
        try {
          write(path.join(own, 'cgroup.subtree_control'), enable);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
          // "No internal processes": move everything in our cgroup (us included) to a leaf.
          const leaf = path.join(own, V2_LEAF);
          ensureDir(leaf);
          for (let i = 0; i < 10 && procs(own).length > 0; i++) {
            for (const pid of procs(own)) {
              try {
                write(path.join(leaf, 'cgroup.procs'), String(pid));
              } catch {
                // exited meanwhile, or a kernel thread: the subtree_control write will tell
              }
            }
          }
          write(path.join(own, 'cgroup.subtree_control'), enable);
        }
      }
      const parent = path.join(own, name);
      ensureDir(parent);
      if (!enabled(parent)) write(path.join(parent, 'cgroup.subtree_control'), enable);
      return { kind: 'v2', own, parent, memory: wanted.includes('memory'), cpu: wanted.includes('cpu'), pids: wanted.includes('pids') };
    } catch (err) {
      notes.push(`v2 ${own}: ${errMessage(err)}`);
      return undefined;
    }
  }

  private static tryV1(mounts: Mount[], self: ReturnType<typeof parseProcCgroup>, name: string, notes: string[]): Extract<Mode, { kind: 'v1' }> | undefined {
    const hierarchy = (controller: string, probe: string): V1Hierarchy | undefined => {
      const mount = mounts.find((m) => m.fsType === 'cgroup' && m.superOptions.includes(controller));
      const cgPath = self.find((l) => l.controllers.includes(controller))?.path;
      if (!mount || cgPath === undefined) return undefined;
      const own = dirOf(mount, cgPath);
      if (!own) {
        notes.push(`v1 ${controller}: own cgroup ${cgPath} is outside the mount ${mount.mountPoint}`);
        return undefined;
      }
      if (!exists(path.join(own, probe))) {
        notes.push(`v1 ${controller}: no ${probe}`);
        return undefined;
      }
      const parent = path.join(own, name);
      try {
        ensureDir(parent);
      } catch (err) {
        notes.push(`v1 ${controller} ${own}: ${errMessage(err)}`);
        return undefined;
      }
      return { own, parent };
    };
    const memory = hierarchy('memory', 'memory.limit_in_bytes');
    const cpu = hierarchy('cpu', 'cpu.cfs_quota_us');
    // A root cgroup has no pids.max or freezer.state: any group of the hierarchy will do.
    const pids = hierarchy('pids', 'cgroup.procs');
    const freezer = hierarchy('freezer', 'cgroup.procs');
    if (!memory && !cpu && !pids) return undefined;
    return { kind: 'v1', memory, cpu, pids, freezer };
  }

  /**
   * Creates and configures the group for one task, before the task is spawned (so that only
   * the cgroup.procs write is left for after the spawn). Limits this limiter cannot enforce
   * are ignored (see `memory`/`cpu`). Throws if the group cannot be set up.
   */
  prepare(key: string, limits: ResourceLimits): Placement {
    const mem = limits.memoryBytes && limits.memoryBytes > 0 ? Math.floor(limits.memoryBytes) : undefined;
    const cpus = limits.cpus && limits.cpus > 0 ? limits.cpus : undefined;
    const pids = limits.pids && limits.pids > 0 ? Math.floor(limits.pids) : undefined;
    const group = `${key.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100)}-${++CgroupLimiter.seq}`;
    const mode = this.mode;
    const created: string[] = [];
    const make = (parent: string) => {
      const dir = path.join(parent, group);
      fs.mkdirSync(dir); // EEXIST is an error: never share a group with leftovers
      created.push(dir);
      return dir;
    };
    try {
      if (mode.kind === 'v2') {
        const dir = make(mode.parent);
        if (mem !== undefined && mode.memory) {
          write(path.join(dir, 'memory.max'), String(mem));
          if (exists(path.join(dir, 'memory.swap.max'))) write(path.join(dir, 'memory.swap.max'), '0');
          if (exists(path.join(dir, 'memory.oom.group'))) write(path.join(dir, 'memory.oom.group'), '1');
        }
        if (cpus !== undefined && mode.cpu) write(path.join(dir, 'cpu.max'), `${cpuQuotaUs(cpus)} ${CPU_PERIOD_US}`);
        if (pids !== undefined && mode.pids) write(path.join(dir, 'pids.max'), String(pids));
        return new V2Placement(dir, this.log);
      }
      let memDir: string | undefined;
      let cpuDir: string | undefined;
      let pidsDir: string | undefined;
      let freezerDir: string | undefined;
      if (mem !== undefined && mode.memory) {
        memDir = make(mode.memory.parent);
        write(path.join(memDir, 'memory.limit_in_bytes'), String(mem));
        // Without this the task could keep going in swap (the file exists only with swap accounting).
        if (exists(path.join(memDir, 'memory.memsw.limit_in_bytes'))) write(path.join(memDir, 'memory.memsw.limit_in_bytes'), String(mem));
        else if (exists(path.join(memDir, 'memory.swappiness'))) {
          try {
            write(path.join(memDir, 'memory.swappiness'), '0');
          } catch {
            // best effort
          }
        }
      }
      if (cpus !== undefined && mode.cpu) {
        cpuDir = make(mode.cpu.parent);
        write(path.join(cpuDir, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
        write(path.join(cpuDir, 'cpu.cfs_quota_us'), String(cpuQuotaUs(cpus)));
      }
      if (pids !== undefined && mode.pids) {
        pidsDir = make(mode.pids.parent);
        write(path.join(pidsDir, 'pids.max'), String(pids));
        // A confined task: a freezer group too, to kill all of it at once.
        if (mode.freezer) freezerDir = make(mode.freezer.parent);
      }
      return new V1Placement({ memDir, cpuDir, pidsDir, freezerDir }, this.log);
    } catch (err) {
      for (const dir of created.reverse()) CgroupLimiter.dropParent(dir);
      throw err;
    }
  }

  /** prepare() and add() in one: for a process that is already running. */
  place(pid: number, key: string, limits: ResourceLimits): Placement | undefined {
    let placement: Placement | undefined;
    try {
      placement = this.prepare(key, limits);
      placement.add(pid);
      return placement;
    } catch (err) {
      this.log(`cgroups: cannot place process ${pid}: ${errMessage(err)}`);
      void placement?.release();
      return undefined;
    }
  }
}

abstract class BasePlacement implements Placement {
  private released: Promise<void> | undefined;

  constructor(protected readonly log: Log) {}

  abstract get paths(): readonly string[];
  abstract oomKilled(signal?: string): boolean;

  add(pid: number): void {
    // Throws only if no group took the task (then none holds it, and release() kills nothing of it).
    const files: string[] = [];
    let firstError: unknown;
    for (const file of this.paths.map((dir) => path.join(dir, 'cgroup.procs'))) {
      try {
        write(file, String(pid));
        files.push(file);
      } catch (err) {
        firstError ??= err;
        if ((err as NodeJS.ErrnoException).code === 'ESRCH') break; // gone: see TaskLimits
        this.log(`cgroups: cannot move task ${pid} into ${path.dirname(file)}: ${errMessage(err)}`);
      }
    }
    if (files.length === 0) throw firstError;
    for (const child of descendants(pid)) {
      for (const file of files) {
        try {
          write(file, String(child));
        } catch {
          // exited meanwhile
        }
      }
    }
  }

  kill(): Promise<void> {
    return killGroups(this.paths);
  }

  release(): Promise<void> {
    this.released ??= (async () => {
      const results = await Promise.all(this.paths.map((dir) => removeGroup(dir, RELEASE_GIVE_UP_MS)));
      const left = this.paths.filter((_, i) => !results[i]);
      if (left.length) this.log(`cgroups: could not remove ${left.join(', ')} (still busy); the next start cleans it up`);
    })().catch((err) => this.log(`cgroups: release failed: ${errMessage(err)}`));
    return this.released;
  }
}

class V2Placement extends BasePlacement {
  constructor(
    private readonly dir: string,
    log: Log,
  ) {
    super(log);
  }

  get paths(): readonly string[] {
    return [this.dir];
  }

  oomKilled(): boolean {
    return (counter(read(path.join(this.dir, 'memory.events')), 'oom_kill') ?? 0) > 0;
  }
}

class V1Placement extends BasePlacement {
  private readonly memDir: string | undefined;

  constructor(
    private readonly dirs: { memDir?: string; cpuDir?: string; pidsDir?: string; freezerDir?: string },
    log: Log,
  ) {
    super(log);
    this.memDir = dirs.memDir;
  }

  get paths(): readonly string[] {
    const d = this.dirs;
    return [d.memDir, d.cpuDir, d.pidsDir, d.freezerDir].filter((p): p is string => p !== undefined);
  }

  override kill(): Promise<void> {
    return this.dirs.freezerDir ? freezeAndKill(this.dirs.freezerDir) : killGroups(this.paths);
  }

  oomKilled(signal?: string): boolean {
    if (!this.memDir) return false;
    const kills = counter(read(path.join(this.memDir, 'memory.oom_control')), 'oom_kill');
    if (kills !== undefined) return kills > 0;
    // Kernels before 4.13 do not count OOM kills: the limit was hit and the task was SIGKILLed.
    if (signal !== 'SIGKILL') return false;
    const fails = (f: string) => Number((read(path.join(this.memDir!, f)) ?? '0').trim()) || 0;
    return fails('memory.failcnt') > 0 || fails('memory.memsw.failcnt') > 0;
  }
}

/** Finds an executable on PATH (for prlimit). */
function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!dir) continue;
    const file = path.join(dir, command);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // next
    }
  }
  return undefined;
}

/** One task's limits as the runner sees them: a cgroup placement and/or an rlimit. */
export interface TaskLimitsRun {
  /**
   * The cgroup.procs files of the task's groups ([] = none), for a wrapper that joins them
   * itself before it execs the task (loom-confine); attach() is then not needed.
   */
  procsFiles(): string[];
  /** Kills everything in the task's groups (see Placement.kill); nothing when it has none. */
  kill(): Promise<void>;
  /** Right after spawn. Never throws. */
  attach(pid: number): void;
  /** After the task is gone: whether it was OOM-killed; releases its group. Never rejects. */
  finish(exit: { signal?: string; exitCode?: number; killedByRunner: boolean }): Promise<boolean>;
}

export interface TaskLimitsOptions {
  /** A limiter to use; null = no cgroups (rlimits only); undefined = detect on first use. */
  limiter?: CgroupLimiter | null;
  /** Names the per-process parent group (diagnostics only). */
  nodeName?: string;
  log?: Log;
}

/**
 * The runner's side: detects cgroups lazily (on the first task that asks for a limit), falls
 * back to rlimits for memory, logs once what cannot be enforced.
 */
export class TaskLimits {
  private limiter: CgroupLimiter | null | undefined;
  private readonly log: Log;
  private prlimit: string | null | undefined;
  private notedCpu = false;
  private notedMemory = false;

  constructor(private readonly opts: TaskLimitsOptions = {}) {
    this.limiter = opts.limiter;
    this.log = opts.log ?? ((m) => process.stderr.write(`${new Date().toISOString()} loom: ${m}\n`));
  }

  static wanted(limits: ResourceLimits): boolean {
    return (limits.memoryBytes ?? 0) > 0 || (limits.cpus ?? 0) > 0 || (limits.pids ?? 0) > 0;
  }

  /** Before spawn; undefined when nothing is asked for. */
  begin(limits: ResourceLimits, key = 'task', nodeName?: string): TaskLimitsRun | undefined {
    if (!TaskLimits.wanted(limits)) return undefined;
    if (this.limiter === undefined) {
      try {
        this.limiter = CgroupLimiter.detect(this.opts.nodeName ?? nodeName, this.log) ?? null;
      } catch (err) {
        this.log(`cgroups: detection failed: ${errMessage(err)}`);
        this.limiter = null;
      }
      if (!this.limiter) this.log('process task limits: no usable cgroups; memory limits become RLIMIT_AS (prlimit), cpu limits are not enforced');
    }
    const limiter = this.limiter;
    const mem = (limits.memoryBytes ?? 0) > 0 ? Math.floor(limits.memoryBytes!) : undefined;
    const cpus = (limits.cpus ?? 0) > 0 ? limits.cpus : undefined;
    const pids = (limits.pids ?? 0) > 0 ? limits.pids : undefined;

    let placement: Placement | undefined;
    const useCgroup = limiter && ((mem !== undefined && limiter.memory) || (cpus !== undefined && limiter.cpu) || (pids !== undefined && limiter.pids));
    if (useCgroup) {
      try {
        placement = limiter.prepare(key, { memoryBytes: mem, cpus, pids });
      } catch (err) {
        this.log(`cgroups: cannot create a group for a task (${errMessage(err)}); its limits fall back to rlimits`);
      }
    }
    const memoryByRlimit = mem !== undefined && !(placement && limiter?.memory);
    if (cpus !== undefined && !(placement && limiter?.cpu) && !this.notedCpu) {
      this.notedCpu = true;
      this.log('cpu limit: not enforced for process tasks (no usable cgroup cpu controller; there is no rlimit for it)');
    }
    return {
      procsFiles: () => (placement ? placement.paths.map((dir) => path.join(dir, 'cgroup.procs')) : []),
      kill: () => placement?.kill() ?? Promise.resolve(),
      attach: (pid) => {
        if (placement) {
          try {
            placement.add(pid);
          } catch (err) {
            // ESRCH: the task is already gone (our 'exit' handler has not run yet); nothing to limit.
            if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
            this.log(`cgroups: cannot move task ${pid} into ${placement.paths.join(', ')} (${errMessage(err)}); it runs without cgroup limits`);
            void placement.release();
            placement = undefined;
            if (mem !== undefined) this.rlimit(pid, mem);
            return;
          }
        }
        if (memoryByRlimit) this.rlimit(pid, mem);
      },
      finish: async (exit) => {
        if (!placement) return false;
        const p = placement;
        placement = undefined;
        // A child OOM-killed in a task that still succeeded is not the task's fate. A SIGKILL
        // sent by the runner (timeout, stop) is no OOM evidence on kernels without a counter.
        const oom = exit.exitCode !== 0 && p.oomKilled(exit.killedByRunner ? undefined : exit.signal);
        await p.release();
        return oom;
      },
    };
  }

  /** RLIMIT_AS for the task's leader (inherited by what it forks from then on). */
  private rlimit(pid: number, bytes: number): void {
    if (this.prlimit === undefined) this.prlimit = which('prlimit') ?? null;
    if (this.prlimit === null) {
      if (!this.notedMemory) {
        this.notedMemory = true;
        this.log('memory limit: not enforced for process tasks (no usable cgroups and no prlimit(1) for an rlimit)');
      }
      return;
    }
    execFile(this.prlimit, ['--pid', String(pid), `--as=${bytes}`], { timeout: 5000 }, (err, _stdout, stderr) => {
      // ESRCH: the task is already gone, nothing to limit.
      if (err && pidAlive(pid)) this.log(`task ${pid}: memory limit: rlimit not applied: ${(stderr || err.message).trim()}`);
    });
  }
}
