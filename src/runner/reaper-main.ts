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
 *   unmember <pid>  unregister it (it exited and was given up)
 *   hb <ms>       kill all task groups unless another hb arrives within ms
 *   hb 0 | nohb   no deadline
 *   ping <n>      answer `pong <n>` (everything reported before it was already written)
 *   killtask <n> <task id> [<attempt>]
 *                 SIGKILL the groups of tagged processes whose environment names
 *                 that task (and attempt); answer `killed <n> <groups>`
 *   bye           the node is stopping cleanly: no task start is in flight
 * Output on stdout: `fenced <n>` when the deadline passed and n groups were killed.
 * stdin EOF (the node exited or died): kill everything, then exit 0; after
 * a crash (no `bye`) scan again at 200 ms and 1 s for a task that was being
 * started and had not exec'd yet.
 *
 * Only Node built-ins, nothing from the project: it has to start fast.
 */
import { performance } from 'perf_hooks';
import * as fs from 'fs';
import { pidAlive } from './pid-alive';

/**
 * Every task the node starts carries LOOM_REAPER_TAG=<tag> in its
 * environment (argv[2] here). A task spawned but not yet registered (the
 * node was killed or frozen between spawn and `task <pgid>`) is found by a
 * /proc scan for that tag, so it cannot escape.
 */
const TAG = process.argv[2] ?? '';

const CHECK_INTERVAL_MS = 25;
const KILL_TASK_RESCAN_MS = 200;
const MEMBER_KILL_GRACE_MS = 3000;
const MEMBER_POLL_MS = 50;

const taskGroups = new Set<number>();
const members = new Set<number>();
/** Monotonic deadline (performance.now()) or undefined when disabled. */
let deadline: number | undefined;
/** The deadline fired and no heartbeat came since: tasks registered now die at once. */
let fenced = false;
let shuttingDown = false;
/** The node said `bye`: it is stopping cleanly, with no task start in flight. */
let cleanStop = false;

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

/** Process groups of live processes whose environment carries our tag (and every one of `also`). */
function taggedGroups(also: string[] = []): Set<number> {
  const out = new Set<number>();
  if (!TAG) return out;
  const needle = Buffer.from(`LOOM_REAPER_TAG=${TAG}\0`);
  const more = also.map((m) => Buffer.from(`${m}\0`));
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return out;
  }
  for (const p of pids) {
    try {
      const env = fs.readFileSync(`/proc/${p}/environ`);
      if (!env.includes(needle) || !more.every((m) => env.includes(m))) continue;
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'latin1');
      const pgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      out.add(pgid > 1 ? pgid : Number(p));
    } catch {
      // gone, or not readable: skip
    }
  }
  return out;
}

function killAllTasks(): number {
  for (const pgid of taggedGroups()) taskGroups.add(pgid);
  const count = taskGroups.size;
  for (const pgid of taskGroups) sendSignal(-pgid, 'SIGKILL');
  taskGroups.clear();
  return count;
}

/**
 * Kills the process groups of one task attempt, found by the variables in
 * their environment, and answers `killed <seq> <groups>`. Scanned twice,
 * KILL_TASK_RESCAN_MS apart: a process between fork and exec does not carry
 * the task's environment yet.
 */
function killTask(seq: string, id: string, attempt: string): void {
  const marks = [`LOOM_TASK_ID=${id}`, ...(attempt ? [`LOOM_ATTEMPT=${attempt}`] : [])];
  const killed = new Set<number>();
  const kill = (): void => {
    for (const pgid of taggedGroups(marks)) {
      sendSignal(-pgid, 'SIGKILL');
      taskGroups.delete(pgid);
      killed.add(pgid);
    }
  };
  kill();
  setTimeout(() => {
    kill();
    process.stdout.write(`killed ${seq} ${killed.size}\n`);
  }, KILL_TASK_RESCAN_MS);
}

function handleCommand(line: string): void {
  const [cmd, arg, ...rest] = line.trim().split(/\s+/);
  switch (cmd) {
    case 'task': {
      const pgid = parseId(arg);
      if (pgid === undefined) break;
      // Registered after the fence deadline passed (the node woke from a
      // freeze and spawned before noticing): kill it now.
      if (fenced) sendSignal(-pgid, 'SIGKILL');
      else taskGroups.add(pgid);
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
    case 'unmember': {
      const pid = parseId(arg);
      if (pid !== undefined) members.delete(pid);
      break;
    }
    case 'hb': {
      const ms = Number(arg);
      if (!Number.isFinite(ms) || ms < 0) break;
      deadline = ms === 0 ? undefined : performance.now() + ms;
      fenced = false;
      break;
    }
    case 'killtask': {
      const [id, attempt = ''] = rest;
      if (arg === undefined || !/^\d+$/.test(arg) || !/^[0-9A-Za-z-]{1,64}$/.test(id ?? '') || !/^\d*$/.test(attempt)) break;
      killTask(arg, id, attempt);
      break;
    }
    case 'bye':
      cleanStop = true;
      break;
    case 'nohb':
      deadline = undefined;
      break;
    case 'ping':
      // Commands are handled in order and the deadline is checked before
      // each answer, so a `fenced` caused by a kill the node already saw
      // always reaches the node before this `pong`.
      checkDeadline();
      if (arg !== undefined && /^\d+$/.test(arg)) process.stdout.write(`pong ${arg}\n`);
      break;
    default:
      // Unknown or empty line: ignore, so an older reaper tolerates a newer node.
      break;
  }
}

function checkDeadline(): void {
  if (deadline === undefined || performance.now() < deadline) return;
  deadline = undefined;
  fenced = true;
  const count = killAllTasks();
  process.stdout.write(`fenced ${count}\n`);
}


function shutdown(): void {
  if (shuttingDown) return;
  shuttingDown = true;
  clearInterval(deadlineTimer);
  killAllTasks();
  // A task the node was spawning when it died may exec a moment later (not
  // after a clean stop: the node said `bye` with no start in flight).
  if (!cleanStop) {
    setTimeout(killAllTasks, 200);
    setTimeout(killAllTasks, 1000);
  }
  const rescansDoneAt = performance.now() + (cleanStop ? 0 : 1100);
  for (const pid of members) sendSignal(pid, 'SIGTERM');
  // Give members (etcd) a chance to exit cleanly, then make sure.
  const giveUpAt = performance.now() + MEMBER_KILL_GRACE_MS;
  const poll = (): void => {
    for (const pid of members) if (!pidAlive(pid)) members.delete(pid);
    if (members.size === 0) return void setTimeout(() => process.exit(0), Math.max(0, rescansDoneAt - performance.now()));
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
