/**
 * Task kinds as plugins: each kind (a process, a container, an HTTP request)
 * turns one attempt of a claimed task into a RunHandle. The executor knows
 * only the registry; adding a kind is a file with a TaskKind and one
 * register() line where the node builds its registry (node/node.ts), plus
 * its name in core/task-kind.ts. No kind talks to etcd.
 */
import { Task } from '../gen/loom';
import { kindOf, TaskKindName } from '../core/task-kind';
import { RunHandle, Runner } from './types';
import { failedHandle } from './failed-handle';
import { DockerRunner, PullPolicy } from './docker-runner';
import { startHttp } from './http-runner';

/** One attempt of one claimed task, as the executor hands it to a kind. */
export interface Attempt {
  /** The claimed record: spec, id, attempt, owner, submittedByAdmin. */
  task: Task;
  /** The task's environment as loom builds it (taskEnv: PATH, spec.env, LOOM_*). */
  env: Record<string, string>;
  /** The attempt's framed log file (log-file.ts). */
  logPath: string;
  killGraceMs: number;
  tailBytes: number;
  maxLogBytes?: number;
  /** Wall-clock ms (the node's fence deadline) past which nothing may start. */
  notAfterMs: number;
}

export interface TaskKind {
  readonly name: TaskKindName;
  /** Whether this node runs the kind now (published in NodeInfo.kinds). */
  available(): boolean;
  /** Starts the attempt. Never throws: a start failure is a failed handle. */
  start(attempt: Attempt): RunHandle;
}

export class KindRegistry {
  private readonly kinds = new Map<TaskKindName, TaskKind>();

  register(kind: TaskKind): this {
    if (this.kinds.has(kind.name)) throw new Error(`task kind ${kind.name} registered twice`);
    this.kinds.set(kind.name, kind);
    return this;
  }

  /** Names of the kinds this node runs now, in registration order. */
  available(): TaskKindName[] {
    return [...this.kinds.values()].filter((k) => k.available()).map((k) => k.name);
  }

  start(attempt: Attempt): RunHandle {
    const name = kindOf(attempt.task.spec);
    const kind = this.kinds.get(name);
    // Placement keeps a task from nodes without its kind (core/fit.ts); this is the last guard.
    if (!kind) return failedHandle(`this node runs no ${name} tasks`, 125);
    try {
      return kind.start(attempt);
    } catch (err) {
      return failedHandle(`${name} task could not start: ${(err as Error).message}`, 125);
    }
  }
}

/** A process on this machine, through the node's process runner (confined as the node says). */
export function commandKind(runner: Runner): TaskKind {
  return {
    name: 'command',
    available: () => true,
    start: (a) => {
      const spec = a.task.spec!;
      return runner.start({
        argv: spec.command, cwd: spec.cwd, env: a.env, logPath: a.logPath, timeoutMs: spec.timeoutMs,
        killGraceMs: a.killGraceMs, tailBytes: a.tailBytes, maxLogBytes: a.maxLogBytes,
        memoryBytes: spec.resources?.memoryBytes || undefined, cpus: spec.resources?.cpu || undefined,
        notAfterMs: a.notAfterMs, owner: a.task.owner,
      });
    },
  };
}

/** A container, while the Docker engine answers (`up`). */
export function containerKind(docker: DockerRunner, up: () => boolean): TaskKind {
  return {
    name: 'container',
    available: up,
    start: (a) => {
      // Decided at the start: an engine that went away hands the task back (engineUnavailable).
      if (!up()) return failedHandle('this node has no Docker engine answering', 125, undefined, true);
      const t = a.task;
      const spec = t.spec!;
      const c = spec.container!;
      // In a container the image's own PATH applies; loom adds only its variables.
      const { PATH: _path, ...env } = a.env;
      return docker.startContainer({
        argv: spec.command, cwd: spec.cwd, logPath: a.logPath, timeoutMs: spec.timeoutMs,
        killGraceMs: a.killGraceMs, tailBytes: a.tailBytes, maxLogBytes: a.maxLogBytes,
        env: spec.env.PATH ? { ...env, PATH: spec.env.PATH } : env,
        image: c.image, pull: (c.pull || 'missing') as PullPolicy, mounts: c.mounts, network: c.network || 'none',
        user: c.user, byAdmin: t.submittedByAdmin, taskId: t.id, // Only an engine on this machine (a unix socket) mounts a path of this node.
        resultDir: docker.engine.kind === 'unix' ? a.logPath.replace(/\.log$/, '.result') : undefined,
        memoryBytes: spec.resources?.memoryBytes || undefined, cpus: spec.resources?.cpu || undefined,
      });
    },
  };
}

/** An HTTP request made by the node's process (runner/http-runner.ts). */
export function httpKind(userAgent: string, log?: (msg: string) => void): TaskKind {
  const madeDirs = new Set<string>();
  return {
    name: 'http',
    available: () => true,
    start: (a) => {
      const spec = a.task.spec!;
      return startHttp({
        http: spec.http!, logPath: a.logPath, timeoutMs: spec.timeoutMs, tailBytes: a.tailBytes,
        maxLogBytes: a.maxLogBytes, notAfterMs: a.notAfterMs, userAgent,
      }, { madeDirs, log });
    },
  };
}

/** The kinds every loom node runs: commands, containers while the engine answers (`up`), HTTP requests. */
export function nodeKindRegistry(runner: Runner, docker: DockerRunner, up: () => boolean, userAgent: string, log?: (msg: string) => void): KindRegistry {
  return new KindRegistry().register(commandKind(runner)).register(containerKind(docker, up)).register(httpKind(userAgent, log));
}
