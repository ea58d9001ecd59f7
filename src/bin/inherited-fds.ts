/**
 * Descriptors a node inherited from whatever started it.
 *
 * Everything Node opens is close-on-exec, but descriptors the launcher left
 * open without it (a shell's or a tool's pipe, say fd 251) pass on to every
 * task started through Node's spawn (tasks with --cpu/--memory limits, or
 * with no loom-spawner), and a long task then holds the launcher's pipe open
 * after the node is gone. loom-spawner closes them for its tasks; the node
 * closes them for itself at start, as daemons do. stdin/stdout/stderr and
 * Node's IPC channel (when started with one) are kept. Node itself marks low
 * inherited descriptors close-on-exec at start (fd 7 in a trial here), not
 * higher ones (40, 300, or the 251 this machine's tool shell leaves). Linux
 * only (/proc); elsewhere nothing is done.
 */
import * as fs from 'fs';

/** O_CLOEXEC as /proc/<pid>/fdinfo shows it (octal flags). */
const O_CLOEXEC = 0o2000000;

/** Closes the inherited descriptors without close-on-exec; returns their numbers. */
export function closeInheritedDescriptors(): number[] {
  let names: string[];
  try {
    names = fs.readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const keep = new Set([0, 1, 2]);
  // Node has taken NODE_CHANNEL_FD out of the environment by now; its channel knows the fd.
  const ipc = (process as { channel?: { fd?: number } }).channel?.fd;
  if (typeof ipc === 'number') keep.add(ipc);
  const closed: number[] = [];
  for (const name of names) {
    const fd = Number(name);
    if (!Number.isInteger(fd) || keep.has(fd)) continue;
    let flags: number;
    try {
      const m = /^flags:\s+([0-7]+)$/m.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      if (!m) continue;
      flags = parseInt(m[1], 8);
    } catch {
      continue; // gone meanwhile (the directory listing's own descriptor)
    }
    if (flags & O_CLOEXEC) continue;
    try {
      fs.closeSync(fd);
      closed.push(fd);
    } catch {
      // not ours to close after all
    }
  }
  return closed;
}
