/** Process helpers: /proc reads, descendants, stopping by PID, free ports. */
import { ChildProcess, execFile } from 'child_process';
import * as fs from 'fs';

export function alive(proc: ChildProcess): boolean {
  return proc.exitCode === null && proc.signalCode === null;
}

/** Resident set size of a process in KiB (VmRSS), or undefined if it is gone. */
export function rssKb(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function cmdline(pid: number): string | undefined {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return undefined;
  }
}

/** Every live descendant of pid (children, grandchildren, ...). */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // exited while we looked
    }
  }
  const out: number[] = [];
  const todo = [...(children.get(pid) ?? [])];
  while (todo.length > 0) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** A process we started (directly or through a node), remembered with its command line. */
export interface ProcRef {
  pid: number;
  cmdline: string;
}

export function procRef(pid: number): ProcRef | undefined {
  const c = cmdline(pid);
  return c ? { pid, cmdline: c } : undefined;
}

/** True while the remembered process still runs (same PID, same command line, not a zombie). */
export function isRunning(ref: ProcRef): boolean {
  if (cmdline(ref.pid) !== ref.cmdline) return false;
  try {
    const stat = fs.readFileSync(`/proc/${ref.pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** SIGKILLs a remembered process if that PID still runs the same command line. */
export function killIfSame(ref: ProcRef): boolean {
  if (cmdline(ref.pid) !== ref.cmdline) return false;
  try {
    process.kill(ref.pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

function exited(proc: ChildProcess, ms: number): Promise<boolean> {
  if (!alive(proc)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      proc.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = () => {
      clearTimeout(t);
      resolve(true);
    };
    proc.once('exit', onExit);
  });
}

/** SIGTERM, then SIGKILL after graceMs (at once if graceMs <= 0). Resolves true if the process stopped by itself. */
export async function stopProcess(proc: ChildProcess, graceMs: number): Promise<boolean> {
  if (!alive(proc)) return true;
  if (graceMs <= 0) {
    proc.kill('SIGKILL');
    await exited(proc, 5000);
    return false;
  }
  proc.kill('SIGTERM');
  if (await exited(proc, graceMs)) return true;
  proc.kill('SIGKILL');
  await exited(proc, 5000);
  return false;
}

export { freePorts } from '../../test/support/ports';

/** Wall ms of `node ARGV` from its start to its exit (rejects when it fails); its output is read and dropped. */
export function timedNode(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile(process.execPath, argv, { env, maxBuffer: 64 * 1024 * 1024 }, (err) => (err ? reject(err) : resolve(performance.now() - t0)));
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
