/**
 * `loom <command>`: the user's CLI to a loom cluster. runCli never exits the
 * process and never prints a stack trace: every failure becomes
 * `loom: <message>` on stderr and the LoomError's exit status.
 */
import { invalid, LoomError, toLoomError } from '../core/errors';
import { isTerminal, stateName, TaskState } from '../core/lifecycle';
import { AutoscaleGroup, NodeInfo, Task } from '../gen/loom';
import { parseCommandLine, type Command, type ListArgs } from './args';
import { followTask, reportQueued, taskExitStatus, writeChunk, writeOut, type AttachIo } from './attach';
import { LoomApi } from './client';
import { defaultClientTls } from '../wire/tls';
import { isLoopbackHost, parseHostPort } from '../core/config';
import { formatAutoscaleGroups, formatMembersTable, formatNodesTable, formatStateLine, formatTaskSummary, formatTaskTable, quoteArg } from './format';

export { parseCommandLine, parseRunArgs, DEFAULT_NODE } from './args';
export type { Command, RunArgs, ListArgs, GlobalArgs } from './args';
export { taskExitStatus } from './attach';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  isTTY: boolean;
  /** Registers a handler called on each SIGINT / SIGTERM, with its name. */
  onSignal?: (fn: (signal?: NodeJS.Signals) => void) => void;
}

type Cmd<K extends Command['kind']> = Extract<Command, { kind: K }>;

/**
 * Without LOOM_TLS_* a request crosses the network in clear, the command and
 * its env included, and anyone on the way may answer as the node; so, as a
 * node refuses to listen in plaintext beyond loopback, the CLI refuses to
 * send there unless --insecure (LOOM_INSECURE=1) says the network is trusted.
 * Checked before anything is sent: every address of -N, since any may be used.
 */
function refusePlaintext(nodes: string, insecure: boolean): void {
  if (insecure || defaultClientTls()) return;
  const remote = nodes.split(',').filter((a) => !isLoopbackHost(parseHostPort(a, '--node').host));
  if (remote.length === 0) return;
  throw invalid(
    `refusing to send a request in plaintext to ${remote.join(', ')} (not a loopback address): set LOOM_TLS_CA, LOOM_TLS_CERT ` +
      'and LOOM_TLS_KEY for mutual TLS, or pass --insecure (LOOM_INSECURE=1) to accept that the command, its env and its output cross the network in clear',
  );
}

/** Runs one loom command line; resolves with the process exit status. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  let api: LoomApi | undefined;
  try {
    const cmd = parseCommandLine(argv, io.env);
    if (cmd.kind === 'output') {
      await writeOut(io.stdout, cmd.text.endsWith('\n') ? cmd.text : `${cmd.text}\n`);
      return 0;
    }
    if (cmd.kind === 'node') {
      throw invalid('`loom node` is started by the loom program itself; see `loom node --help`');
    }
    refusePlaintext(cmd.node, cmd.insecure);
    api = new LoomApi(cmd.node);
    switch (cmd.kind) {
      case 'run':
        return await runCommand(cmd, api, io);
      case 'status':
        return await statusCommand(cmd, api, io);
      case 'list':
        return await listCommand(cmd, api, io);
      case 'logs':
        return await logsCommand(cmd, api, io);
      case 'cancel':
        return await cancelCommand(cmd, api, io);
      case 'cancelQueued':
        return await cancelQueuedCommand(cmd, api, io);
      case 'wait':
        return await waitCommand(cmd, api, io);
      case 'nodes':
        return await nodesCommand(cmd, api, io);
      case 'job':
        // Loaded only here: job files bring zod and the job schema (a third of the CLI's start-up).
        return await (await import('./job-cli')).runJobCommand(cmd.job, api, { stdout: io.stdout, stderr: io.stderr, isTTY: io.isTTY }, cmd.json);
      case 'members': {
        const res = await api.members();
        if (cmd.json) await printJson(io, res.members);
        else await out(io, formatMembersTable(res.members));
        return 0;
      }
      case 'removeMember': {
        const res = await api.removeMember(cmd.member);
        if (cmd.json) await printJson(io, res);
        else {
          const r = res.removed;
          await out(io, `etcd member ${r?.name ? `"${r.name}" ` : ''}(id ${r?.id}) removed; ${res.members.length} member(s) left: ${res.members.map((m) => m.name || m.id).join(', ')}`);
        }
        return 0;
      }
      case 'drain': {
        const res = await api.drain(cmd.name, cmd.drain, cmd.deadlineMs);
        if (cmd.json) await printJson(io, res);
        else await out(io, cmd.drain ? `node ${cmd.name} draining${cmd.deadlineMs ? `; tasks still running in ${cmd.deadlineMs} ms will be requeued` : ''}` : `node ${cmd.name} takes work again`);
        return 0;
      }
      default:
        throw new LoomError('INTERNAL', `unhandled command ${(cmd as { kind: string }).kind}`);
    }
  } catch (err) {
    const e = toLoomError(err);
    await writeOut(io.stderr, `loom: ${e.message}\n`);
    return e.exitCode;
  } finally {
    api?.close();
  }
}

function printJson(io: CliIo, value: unknown): Promise<void> {
  return writeOut(io.stdout, `${JSON.stringify(value)}\n`);
}

function out(io: CliIo, text: string): Promise<void> {
  return writeOut(io.stdout, text.endsWith('\n') ? text : `${text}\n`);
}

function note(io: CliIo, text: string): Promise<void> {
  return writeOut(io.stderr, `loom: ${text}\n`);
}

/** Adds the task id to a failure that leaves the task's fate unknown. */
function withTask(err: unknown, id: string): LoomError {
  const e = toLoomError(err);
  if (e.code === 'CANCELLED' || e.message.includes(id)) return e;
  return new LoomError(e.code, `${e.message} (task ${id}; check it with \`loom status ${id}\`)`, id);
}

// ---- run / wait -------------------------------------------------------------

/** Was the end unusual enough to explain (beyond the command's own exit)? */
function worthExplaining(task: Task): boolean {
  if (task.state === TaskState.COMPLETED) return false;
  // Killed for memory: the exit code alone (137 from a container) would hide why.
  if (task.oomKilled) return true;
  if (task.state === TaskState.FAILED && task.exitCode !== undefined && task.exitCode !== 0) {
    return false;
  }
  return true;
}

/**
 * How long the first interrupt of an attached run waits for its cancel to be
 * answered. A cluster that does not answer within this is most likely gone
 * (the node was stopped, the network cut): the user asked to stop, so the CLI
 * says the task's fate is unknown and exits rather than waiting out retries.
 */
export const CANCEL_DEADLINE_MS = 1000;

/** 130 for SIGINT, 143 for SIGTERM: what a shell reports for a process killed by it. */
function signalExitStatus(signal: NodeJS.Signals | undefined): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

async function runCommand(cmd: Cmd<'run'>, api: LoomApi, io: CliIo): Promise<number> {
  if (cmd.array > 0) return (await import('./job-cli')).submitArray(api, cmd.spec, cmd.array, { stdout: io.stdout, stderr: io.stderr, isTTY: io.isTTY }, cmd.json, cmd.detach);
  if (cmd.detach) {
    const [id] = await api.submit([cmd.spec]);
    if (cmd.json) await printJson(io, { id });
    else await out(io, id);
    return 0;
  }
  const ctrl = new AbortController();
  let id: string | undefined;
  // Settles with the exit status once an interrupt has been dealt with.
  let interrupted: Promise<number> | undefined;
  let onInterrupted: ((code: number) => void) | undefined;
  // Set by a second interrupt: the first one's cancel says nothing more.
  let gaveUp = false;
  const interruptDone = new Promise<number>((resolve) => (onInterrupted = resolve));
  const submitted = api.submit([cmd.spec], ctrl.signal).then(([taskId]) => (id = taskId));

  /**
   * The first interrupt: cancel the task, giving the cluster CANCEL_DEADLINE_MS
   * to answer. A cancel that reached it lets the output run to the task's end
   * (the node stops it within its kill grace); one that did not ends the wait
   * at once, saying the task may still run.
   */
  const firstInterrupt = async (signal: NodeJS.Signals | undefined): Promise<number> => {
    const code = signalExitStatus(signal);
    const deadline = AbortSignal.timeout(CANCEL_DEADLINE_MS);
    await note(io, `${signal ?? 'interrupt'}: cancelling task${id ? ` ${id}` : ''} (again to exit at once)`);
    const expired = new Promise<undefined>((resolve) => deadline.addEventListener('abort', () => resolve(undefined), { once: true }));
    const taskId = id ?? (await Promise.race([submitted.catch(() => undefined), expired]));
    if (gaveUp) return code;
    if (!taskId) {
      ctrl.abort();
      await note(io, 'the submit was not answered: the task may or may not exist (see `loom list`)');
      return code;
    }
    try {
      // A second interrupt aborts ctrl: the cancel stops too, so nothing keeps the process alive.
      const task = await api.cancel(taskId, AbortSignal.any([deadline, ctrl.signal]));
      if (gaveUp) return code;
      await note(io, isTerminal(task.state) ? `task ${taskId} cancelled` : `cancel of task ${taskId} reached the cluster; its node is stopping it`);
      return code;
    } catch (err) {
      const e = toLoomError(err);
      if (gaveUp) return code;
      if (e.code === 'INVALID_STATE' || e.code === 'NOT_FOUND') {
        // It ended (or was cleaned up) before the cancel arrived: nothing runs on.
        await note(io, `task ${taskId} had already ended: ${e.message}`);
      } else {
        const why = deadline.aborted ? `no answer within ${CANCEL_DEADLINE_MS / 1000} s` : e.message;
        ctrl.abort();
        await note(io, `the cancel did not reach the cluster (${why}): task ${taskId} may still run; check it with \`loom status ${taskId}\``);
      }
      return code;
    }
  };
  io.onSignal?.((signal) => {
    if (interrupted) {
      // A second interrupt: stop waiting now, whatever the cancel is doing.
      if (gaveUp) return;
      gaveUp = true;
      ctrl.abort();
      void note(io, `${signal ?? 'interrupt'} again: exiting without waiting for the cancel; task ${id ?? '(id not known yet)'} may still run`)
        .then(() => onInterrupted?.(signalExitStatus(signal)));
      return;
    }
    interrupted = firstInterrupt(signal);
    interrupted.then((code) => {
      // A cancel that reached the cluster keeps the output coming until the task ends.
      if (ctrl.signal.aborted) onInterrupted?.(code);
    }, () => onInterrupted?.(signalExitStatus(signal)));
  });

  const follow = async (): Promise<number> => {
    const taskId = await submitted;
    // Waiting in silence looks like a hang: say why the task stays queued, if a reason is known.
    const queuedCtrl = new AbortController();
    const stopQueued = () => queuedCtrl.abort();
    ctrl.signal.addEventListener('abort', stopQueued, { once: true });
    void reportQueued(api, taskId, io as AttachIo, queuedCtrl.signal);
    let task: Task;
    try {
      task = await followTask(api, taskId, io as AttachIo, { showLogs: !cmd.json, signal: ctrl.signal });
    } finally {
      queuedCtrl.abort();
      ctrl.signal.removeEventListener('abort', stopQueued);
    }
    if (cmd.json) await printJson(io, Task.toJSON(task));
    else if (worthExplaining(task) && !interrupted) await note(io, `task ${task.id} ${formatStateLine(task)}`);
    if (interrupted) return interrupted;
    return taskExitStatus(task);
  };
  try {
    return await Promise.race([follow(), interruptDone]);
  } catch (err) {
    if (interrupted) return Promise.race([interrupted, interruptDone]);
    if (ctrl.signal.aborted) {
      await note(io, `stopped waiting for task ${id}`);
      return 130;
    }
    throw id ? withTask(err, id) : err;
  }
}

async function waitCommand(cmd: Cmd<'wait'>, api: LoomApi, io: CliIo): Promise<number> {
  const ctrl = new AbortController();
  io.onSignal?.(() => ctrl.abort());
  let task: Task;
  try {
    task = await followTask(api, cmd.id, io as AttachIo, { showLogs: false, signal: ctrl.signal });
  } catch (err) {
    if (ctrl.signal.aborted) {
      await note(io, `stopped waiting for task ${cmd.id}`);
      return 130;
    }
    throw err;
  }
  if (cmd.result) {
    await writeOut(io.stdout, task.result);
    if (task.state !== TaskState.COMPLETED) await note(io, formatStateLine(task));
  } else if (cmd.json) await printJson(io, Task.toJSON(task));
  else await out(io, formatStateLine(task));
  return taskExitStatus(task);
}

// ---- the rest ---------------------------------------------------------------

async function statusCommand(cmd: Cmd<'status'>, api: LoomApi, io: CliIo): Promise<number> {
  const task = await api.get(cmd.id);
  if (cmd.json) await printJson(io, Task.toJSON(task));
  else await out(io, formatTaskSummary(task, Date.now()));
  return 0;
}

function tableWidth(io: CliIo): number {
  const columns = (io.stdout as { columns?: number }).columns;
  return io.isTTY && columns ? columns : 160;
}

function nextPageHint(cmd: ListArgs, token: string): string {
  const parts = ['loom'];
  if (cmd.node) parts.push('-N', quoteArg(cmd.node));
  parts.push('list');
  if (cmd.state) parts.push('--state', stateName(cmd.state));
  if (cmd.nodeFilter) parts.push('--node', quoteArg(cmd.nodeFilter));
  if (cmd.job) parts.push('--job', quoteArg(cmd.job));
  if (cmd.owner) parts.push('--owner', quoteArg(cmd.owner));
  if (cmd.limit) parts.push('--limit', String(cmd.limit));
  parts.push('--page-token', quoteArg(token));
  return `more tasks: ${parts.join(' ')}  (or --all)`;
}

async function listCommand(cmd: Cmd<'list'>, api: LoomApi, io: CliIo): Promise<number> {
  const tasks: Task[] = [];
  const seenTokens = new Set<string>();
  let token = cmd.pageToken;
  let next = '';
  for (;;) {
    const res = await api.list({
      state: cmd.state,
      node: cmd.nodeFilter,
      job: cmd.job,
      owner: cmd.owner,
      pageSize: cmd.limit,
      pageToken: token,
    });
    tasks.push(...res.tasks);
    next = res.nextPageToken;
    if (!cmd.all || !next || seenTokens.has(next)) break;
    seenTokens.add(next);
    token = next;
  }
  if (cmd.all) next = '';
  if (cmd.json) {
    await printJson(io, { tasks: tasks.map((t) => Task.toJSON(t)), nextPageToken: next });
    return 0;
  }
  if (tasks.length === 0) await note(io, 'no tasks');
  else await out(io, formatTaskTable(tasks, tableWidth(io)));
  if (next) await note(io, nextPageHint(cmd, next));
  return 0;
}

async function logsCommand(cmd: Cmd<'logs'>, api: LoomApi, io: CliIo): Promise<number> {
  const ctrl = new AbortController();
  if (cmd.follow) io.onSignal?.(() => ctrl.abort());
  try {
    for await (const chunk of api.logs(cmd.id, cmd.follow, ctrl.signal)) {
      await writeChunk(io as AttachIo, chunk);
    }
  } catch (err) {
    if (ctrl.signal.aborted) return 130;
    throw err;
  }
  return 0;
}

async function cancelCommand(cmd: Cmd<'cancel'>, api: LoomApi, io: CliIo): Promise<number> {
  const task = await api.cancel(cmd.id);
  if (cmd.json) await printJson(io, Task.toJSON(task));
  else {
    const pending = !isTerminal(task.state) ? ' (it stops once its node kills it)' : '';
    await out(io, `${task.id || cmd.id}: ${formatStateLine(task)}${pending}`);
  }
  return 0;
}

async function cancelQueuedCommand(cmd: Cmd<'cancelQueued'>, api: LoomApi, io: CliIo): Promise<number> {
  const res = await api.cancelQueued();
  if (cmd.json) await printJson(io, { cancelled: res.cancelled, changed: res.changed });
  else {
    const changed = res.changed ? `; ${res.changed} changed before the cancel reached them (claimed meanwhile: see \`loom list --state running\`)` : '';
    await out(io, `cancelled ${res.cancelled} queued task${res.cancelled === 1 ? '' : 's'}${changed}`);
  }
  return 0;
}

async function nodesCommand(cmd: Cmd<'nodes'>, api: LoomApi, io: CliIo): Promise<number> {
  const { nodes, autoscale } = await api.cluster();
  if (cmd.json) {
    await printJson(io, { nodes: nodes.map((n) => NodeInfo.toJSON(n)), autoscale: autoscale.map((g) => AutoscaleGroup.toJSON(g)) });
    return 0;
  }
  if (nodes.length === 0) await note(io, 'no nodes');
  else await out(io, formatNodesTable(nodes, Date.now()));
  if (autoscale.length) await out(io, formatAutoscaleGroups(autoscale, Date.now()));
  return 0;
}
