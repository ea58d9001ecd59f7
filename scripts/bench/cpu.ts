/** CPU accounting from /proc: where the machine's cores went during a run. */
import * as fs from 'fs';
import * as os from 'os';

const TICK_MS = 10; // USER_HZ is 100 on Linux

export interface ProcCpu {
  /** CPU ms of the process itself (utime + stime). */
  selfMs: number;
  /** CPU ms of its waited-for children (cutime + cstime): a node's finished tasks. */
  childrenMs: number;
}

export function procCpu(pid: number): ProcCpu {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields 14..17 of stat are utime, stime, cutime, cstime; f[0] is field 3
    const [ut, st, cut, cst] = [f[11], f[12], f[13], f[14]].map(Number);
    return { selfMs: (ut + st) * TICK_MS, childrenMs: (cut + cst) * TICK_MS };
  } catch {
    return { selfMs: 0, childrenMs: 0 };
  }
}

export function selfCpuMs(): ProcCpu {
  const u = process.cpuUsage();
  const own = (u.user + u.system) / 1000;
  return { selfMs: own, childrenMs: procCpu(process.pid).childrenMs };
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
export interface MachineCpu {
  busy: number;
  total: number;
}

export function machineCpu(): MachineCpu {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0); // idle + iowait
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // guest time is already in user
  return { busy: total - idle, total };
}

/** Share of all cores busy between two snapshots, in %. */
export function busyPct(a: MachineCpu, b: MachineCpu): number {
  const total = b.total - a.total;
  return total > 0 ? (100 * (b.busy - a.busy)) / total : 0;
}

export const CORES = os.availableParallelism?.() ?? os.cpus().length;

/** Time one thread spent on a CPU and runnable but waiting for one (/proc/<pid>/task/<tid>/schedstat). */
export interface ThreadSched {
  onCpuMs: number;
  waitingMs: number;
  atMs: number;
}

/** The scheduler's account of a process's main thread (tid = pid); zeros if unreadable. */
export function mainThreadSched(pid: number): ThreadSched {
  const atMs = performance.now();
  try {
    const [run, wait] = fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number);
    return { onCpuMs: run / 1e6, waitingMs: wait / 1e6, atMs };
  } catch {
    return { onCpuMs: 0, waitingMs: 0, atMs };
  }
}

/** Shares of the wall time between two samples: on a CPU, and runnable but waiting for a CPU. */
export function schedShares(a: ThreadSched, b: ThreadSched): { onCpu: number; waiting: number } {
  const wall = Math.max(1e-9, b.atMs - a.atMs);
  return { onCpu: (b.onCpuMs - a.onCpuMs) / wall, waiting: (b.waitingMs - a.waitingMs) / wall };
}
