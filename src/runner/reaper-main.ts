/**
 * The reaper: a tiny child process that makes sure tasks never outlive their
 * node. The node cannot do this itself: if it is SIGKILLed it runs no
 * cleanup, and if it is frozen (SIGSTOP, a long GC pause, a hung VM) it keeps
 * running tasks its lease no longer entitles it to.
 *
 * Protocol: newline-separated commands on stdin.
 *   task <pgid>   register a task process group
 *   done <pgid>   unregister it
 *   member <pid>  register a helper (embedded etcd) that dies with the node
 *   hb <ms>       kill all task groups unless another hb arrives within ms
 *   hb 0 | nohb   no deadline
 * Output on stdout: `fenced <n>` when the deadline passed and n groups were killed.
 * stdin EOF (the node exited or died): kill everything, then exit 0.
 *
 * Only Node built-ins, nothing from the project: it has to start fast.
 */
import { performance } from 'perf_hooks';

const CHECK_INTERVAL_MS = 25;
const MEMBER_KILL_GRACE_MS = 3000;
const MEMBER_POLL_MS = 50;

const taskGroups = new Set<number>();
const members = new Set<number>();
/** Monotonic deadline (performance.now()) or undefined when disabled. */
let deadline: number | undefined;
let shuttingDown = false;

function sendSignal(target: number, signal: NodeJS.Signals): void {
  try {
    process.kill(target, signal);
  } catch {
    // ESRCH: already gone. EPERM: not ours any more (pid reused). Either way nothing to do.
  }
}

/** A pid/pgid we may signal: never 0 or 1 (kill(0)/kill(-1) would hit far too much), never ourselves. */
function parseId(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d+$/.test(text)) return undefined;
  const id = Number(text);
  return id > 1 && id !== process.pid && Number.isSafeInteger(id) ? id : undefined;
}

function killAllTasks(): number {
  const count = taskGroups.size;
  for (const pgid of taskGroups) sendSignal(-pgid, 'SIGKILL');
  taskGroups.clear();
  return count;
}

function handleCommand(line: string): void {
  const [cmd, arg] = line.trim().split(/\s+/);
  switch (cmd) {
    case 'task': {
      const pgid = parseId(arg);
      if (pgid !== undefined) taskGroups.add(pgid);
      break;
    }
    case 'done': {
      const pgid = parseId(arg);
      if (pgid !== undefined) taskGroups.delete(pgid);
      break;
    }
    case 'member': {
      const pid = parseId(arg);
      if (pid !== undefined) members.add(pid);
      break;
    }
    case 'hb': {
      const ms = Number(arg);
      if (!Number.isFinite(ms) || ms < 0) break;
      deadline = ms === 0 ? undefined : performance.now() + ms;
      break;
    }
    case 'nohb':
      deadline = undefined;
      break;
    default:
      // Unknown or empty line: ignore, so an older reaper tolerates a newer node.
      break;
  }
}

function checkDeadline(): void {
  if (deadline === undefined || performance.now() < deadline) return;
  deadline = undefined;
  const count = killAllTasks();
  process.stdout.write(`fenced ${count}\n`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function shutdown(): void {
  if (shuttingDown) return;
  shuttingDown = true;
  clearInterval(deadlineTimer);
  killAllTasks();
  for (const pid of members) sendSignal(pid, 'SIGTERM');
  // Give members (etcd) a chance to exit cleanly, then make sure.
  const giveUpAt = performance.now() + MEMBER_KILL_GRACE_MS;
  const poll = (): void => {
    for (const pid of members) if (!isAlive(pid)) members.delete(pid);
    if (members.size === 0) return process.exit(0);
    if (performance.now() >= giveUpAt) {
      for (const pid of members) sendSignal(pid, 'SIGKILL');
      return process.exit(0);
    }
    setTimeout(poll, MEMBER_POLL_MS);
  };
  poll();
}

// A Ctrl-C or hangup aimed at the node must not take us down before it has
// cleaned up: only stdin EOF ends the reaper.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => undefined);
// If the node is gone, writing `fenced` hits EPIPE: nobody to tell, carry on.
process.stdout.on('error', () => undefined);

const deadlineTimer = setInterval(checkDeadline, CHECK_INTERVAL_MS);

let partial = '';
process.stdin.on('data', (chunk: Buffer) => {
  const lines = (partial + chunk.toString('latin1')).split('\n');
  partial = lines.pop() ?? '';
  for (const line of lines) handleCommand(line);
  // Apply a fresh deadline check right away, e.g. `hb 1` after a long pause.
  checkDeadline();
});
process.stdin.on('end', shutdown);
process.stdin.on('close', shutdown);
process.stdin.on('error', shutdown);
