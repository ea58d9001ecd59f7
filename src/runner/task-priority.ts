/**
 * A task's CPU priority below the node's (--task-nice). Every task runs in
 * a session of its own, and where the kernel schedules by autogroup
 * (/proc/sys/kernel/sched_autogroup_enabled = 1, the default on many
 * distributions) each session is a scheduling group of its own: the CPU is
 * shared between groups first and a nice value counts only inside its
 * group. So both are set: the process's nice value (its children inherit
 * it) and its autogroup's. loom-spawner does the same in C.
 */
import * as fs from 'fs';
import * as os from 'os';

/** Lowers `pid`'s priority to `nice` (0: nothing to do); says why it could not, if it could not. */
export function lowerTaskPriority(pid: number, nice: number): string | undefined {
  if (nice <= 0) return undefined;
  try {
    os.setPriority(pid, nice);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return e.code === 'ESRCH' ? undefined : `task ${pid}: cannot set nice ${nice}: ${e.message}`;
  }
  try {
    fs.writeFileSync(`/proc/${pid}/autogroup`, String(nice));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // No autogroup scheduling in this kernel, or the task is gone already.
    if (e.code !== 'ENOENT' && e.code !== 'ESRCH') return `task ${pid}: cannot set its autogroup's nice ${nice}: ${e.message}`;
  }
  return undefined;
}
