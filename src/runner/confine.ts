/**
 * Who a process task runs as, and the wrapper that confines it
 * (spawner/loom-confine.c).
 *
 * A node that runs as root never runs a task as root. Three ways, chosen by
 * the operator (`--run-as`):
 *  - pool (the default as root): each running task gets a uid of its own from
 *    a reserved range (`--task-uids 60000-60999`), gid = uid, no
 *    supplementary groups. Two tasks never share a uid, so neither can signal,
 *    ptrace or read the /proc/<pid>/environ of the other, nor of the node.
 *  - owner: the task runs as the local account named like its owner (the
 *    client certificate's identity), Slurm's model; an owner without an
 *    account is refused.
 *  - node: the task runs as the node's own user. Only when asked for; the
 *    node says so in its log. A node that is not root and cannot switch
 *    users has no other choice.
 * Whatever the identity, every task is started through loom-confine, which
 * puts it in its cgroups before its first instruction; with a switched uid
 * it also drops every capability, sets no_new_privs and a process limit.
 *
 * A pool uid is held through a lock file in a root-only directory (one file
 * per uid naming the holding process), so nodes sharing a machine (the
 * quickstart runs three) never hand out the same uid; a lock whose process
 * is gone is taken over.
 */
import * as fs from 'fs';
import * as path from 'path';
import { pidAlive } from './pid-alive';

export type RunAs = 'pool' | 'owner' | 'node';

export interface UidRange {
  first: number;
  last: number;
}

export interface Account {
  uid: number;
  gid: number;
}

/** Looks `name` up in passwd-format text; undefined if absent. */
export function findAccount(passwd: string, name: string): Account | undefined {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || f[0] !== name) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (Number.isInteger(uid) && Number.isInteger(gid)) return { uid, gid };
  }
  return undefined;
}


/** Uids of a range handed out one per running task, across every loom process of the machine. */
export class UidPool {
  private next: number;

  constructor(
    private readonly range: UidRange,
    private readonly lockDir: string,
    private readonly owner = process.pid,
  ) {
    this.next = range.first;
    UidPool.ensurePrivateDir(lockDir);
  }

  /** The lock directory must be ours alone: anyone who can write it can steal or block uids. */
  static ensurePrivateDir(dir: string): void {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = fs.statSync(dir);
    const uid = process.getuid?.() ?? 0;
    if (st.uid !== uid || (st.mode & 0o022) !== 0) {
      throw new Error(`${dir} must be owned by uid ${uid} and writable by it alone (it holds the task uid locks)`);
    }
  }

  get size(): number {
    return this.range.last - this.range.first + 1;
  }

  /** A free uid, held until release(uid); undefined when every uid of the range is held. */
  acquire(): number | undefined {
    for (let i = 0; i < this.size; i++) {
      const uid = this.next;
      this.next = uid >= this.range.last ? this.range.first : uid + 1;
      if (this.tryLock(uid)) return uid;
    }
    return undefined;
  }

  release(uid: number): void {
    const file = this.lockFile(uid);
    try {
      if (fs.readFileSync(file, 'utf8').trim() === String(this.owner)) fs.rmSync(file, { force: true });
    } catch {
      // already gone
    }
  }

  private lockFile(uid: number): string {
    return path.join(this.lockDir, String(uid));
  }

  private tryLock(uid: number): boolean {
    const file = this.lockFile(uid);
    try {
      fs.writeFileSync(file, String(this.owner), { flag: 'wx', mode: 0o600 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = NaN;
    try {
      holder = Number(fs.readFileSync(file, 'utf8').trim());
    } catch {
      return false; // released meanwhile: try it another time
    }
    if (Number.isInteger(holder) && holder > 0 && pidAlive(holder)) return false;
    // The holder died without releasing it: take it over (rename is atomic, so
    // of two processes taking over the same stale lock, the later rename wins
    // and the earlier one sees it lost on the read back).
    const mine = `${file}.${this.owner}`;
    fs.writeFileSync(mine, String(this.owner), { mode: 0o600 });
    fs.renameSync(mine, file);
    return fs.readFileSync(file, 'utf8').trim() === String(this.owner);
  }
}

export interface ConfinementOptions {
  /** The loom-confine binary. */
  helper: string;
  runAs: RunAs;
  /** For 'pool'. */
  pool?: UidPool;
  /** passwd text for 'owner' (default: /etc/passwd, read per task). */
  passwd?: () => string;
  /** Where per-task scratch directories (the default cwd) are made. */
  scratchRoot: string;
  /** Per-task process limit (cgroup pids.max, and RLIMIT_NPROC with a uid of its own). */
  pidsMax: number;
}

/** One task's identity while it runs. */
export interface TaskIdentity {
  /** undefined: the node's own. */
  uid?: number;
  gid?: number;
  /** The task's own scratch directory (its default cwd). */
  scratch: string;
  /**
   * Removes the scratch directory (in the background), then frees the uid:
   * call it once the task and everything it started is gone.
   */
  release(): void;
}

export class Confinement {
  constructor(readonly opts: ConfinementOptions) {
    fs.mkdirSync(opts.scratchRoot, { recursive: true, mode: 0o711 });
    // Tasks must reach their own scratch dir, never list the others.
    fs.chmodSync(opts.scratchRoot, 0o711);
  }

  get runAs(): RunAs {
    return this.opts.runAs;
  }

  /** One line for the node's log: who its tasks run as. */
  describe(): string {
    const limits = `pids <= ${this.opts.pidsMax}, own cgroup, everything killed at task end`;
    switch (this.opts.runAs) {
      case 'pool':
        return `tasks run as uids ${this.describePool()} (one per running task; no capabilities, no_new_privs, ${limits})`;
      case 'owner':
        return `tasks run as the local account named like their owner (no capabilities, no_new_privs, ${limits})`;
      case 'node': {
        const uid = process.getuid?.();
        const who = uid === 0 ? 'root' : `uid ${uid}`;
        return `WARNING: tasks run as this node's own user (${who}): they share its identity, can read its data dir and signal its processes (${limits})`;
      }
    }
  }

  private describePool(): string {
    const p = this.opts.pool;
    return p ? `from the pool (${p.size})` : '?';
  }

  /**
   * The identity for one attempt (key: "<task>.<attempt>"), with its scratch
   * directory made and owned by it; a string says why it cannot run here.
   */
  begin(key: string, owner: string): TaskIdentity | string {
    let uid: number | undefined;
    let gid: number | undefined;
    let fromPool = false;
    if (this.opts.runAs === 'pool') {
      uid = this.opts.pool?.acquire();
      if (uid === undefined) return `no free task uid (all ${this.opts.pool?.size ?? 0} of --task-uids are in use)`;
      gid = uid;
      fromPool = true;
    } else if (this.opts.runAs === 'owner') {
      const account = owner ? findAccount((this.opts.passwd ?? (() => fs.readFileSync('/etc/passwd', 'utf8')))(), owner) : undefined;
      if (!account) return `no local account for owner "${owner || '(none)'}" on this node (--run-as owner)`;
      if (account.uid === 0) return `owner "${owner}" maps to root; tasks never run as root (--run-as owner)`;
      ({ uid, gid } = account);
    }
    const scratch = path.join(this.opts.scratchRoot, key.replace(/[^A-Za-z0-9_.-]/g, '_'));
    try {
      fs.rmSync(scratch, { recursive: true, force: true });
      fs.mkdirSync(scratch, { mode: 0o700 });
      if (uid !== undefined) fs.chownSync(scratch, uid, gid!);
    } catch (err) {
      if (fromPool) this.opts.pool!.release(uid!);
      return `cannot make the task's scratch directory ${scratch}: ${(err as Error).message}`;
    }
    let released = false;
    return {
      uid,
      gid,
      scratch,
      release: () => {
        if (released) return;
        released = true;
        // Off the event loop: a task may leave a million files behind, and
        // removing them must not hold up the node's heartbeats. The uid goes
        // back to the pool once its files are gone.
        void fs.promises
          .rm(scratch, { recursive: true, force: true })
          .catch(() => undefined) // a file the task made immutable, say: left for the operator
          .finally(() => fromPool && this.opts.pool!.release(uid!));
      },
    };
  }

  /** argv that runs `argv` as `who`, inside the cgroups whose cgroup.procs files are given. */
  wrap(argv: string[], who: TaskIdentity, procsFiles: readonly string[]): string[] {
    const id = (n: number | undefined) => (n === undefined ? '-' : String(n));
    const nproc = who.uid === undefined ? '-' : String(this.opts.pidsMax);
    return [this.opts.helper, id(who.uid), id(who.gid), nproc, procsFiles.length ? procsFiles.join(',') : '-', '--', ...argv];
  }
}

/**
 * Finds `command` the way execvp will (on `pathVar`), so that a missing
 * command is reported as before ("command not found") rather than as the
 * wrapper's exit 127. A command with a slash is taken as given.
 */
export function commandExists(command: string, pathVar: string | undefined): boolean {
  if (command.includes('/')) return fs.existsSync(command);
  for (const dir of (pathVar ?? '').split(':')) {
    if (!dir) continue;
    try {
      const st = fs.statSync(path.join(dir, command));
      if (st.isFile()) return true;
    } catch {
      // next
    }
  }
  return false;
}
