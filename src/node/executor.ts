/**
 * Runs the tasks this node claimed: one runner attempt each, output to a
 * framed log file, result written by a guarded transaction. Knows three
 * ways a task stops early: a user cancel (recorded CANCELLED), node shutdown
 * (task handed back to the queue), and fencing (killed at once; the node
 * writes no result, it only hands the task back if it still holds it).
 *
 * Tasks claimed ahead of a free slot (startWhenFree) wait here in claim
 * order and start, one per freed slot, the moment a running one exits; a
 * cancel, drain, shutdown or fence before that settles them without running.
 */
import * as path from 'path';
import { Resources, Task } from '../gen/loom';
import { addResources, NO_RESOURCES } from '../core/fit';
import { LIMITS } from '../core/spec';
import { TaskQueries } from '../store/queries';
import { HeldTask, NodeIdentity, Outcome, TaskTransitions } from '../store/transitions';
import { Incarnation } from '../store/membership';
import { RunHandle, RunResult, StopReason } from '../runner/types';
import { failedHandle } from '../runner/failed-handle';
import { KindRegistry } from '../runner/kind';
import { LoomError } from '../core/errors';
import { PendingResult, ResultWriter } from './result-writer';
import { WriteLane } from './write-lane';
import { PendingHandle } from './pending-handle';
import { DEFAULT_STEAL_POLICY } from '../core/steal-policy';

export interface ExecutorDeps {
  transitions: TaskTransitions;
  queries: TaskQueries;
  /** What starts each kind of task (runner/kind.ts). */
  kinds: KindRegistry;
  /**
   * A container could not be created because the engine did not answer:
   * the node stops taking container tasks until it answers again. Called
   * before the task is handed back, so this node does not claim it again.
   */
  onEngineUnavailable?: (why: string) => void;
  /** A container ran to its exit here: the engine works (see EngineWatch.markWorked). */
  onEngineWorked?: () => void;
  dataDir: string;
  nodeName: string;
  killGraceMs: number;
  /** Cap of each attempt's log file (--max-log-bytes); undefined = none. */
  maxLogBytes?: number;
  /** Shared with the steal loop (see WriteLane); the result writer's own if not given. */
  lane?: WriteLane;
  /** The node's slots (--slots): tasks claimed ahead start while fewer run. Unlimited if not given. */
  slots?: () => number;
  /** A task claimed ahead that waited this long for a slot is handed back (StealPolicy.aheadStaleMs). */
  aheadStaleMs?: number;
  /**
   * Resolves once every kill by the node's watchdog (the reaper) that
   * happened before now has fenced this node. Awaited before recording a
   * failure, so a task the watchdog killed is handed back, never reported
   * as failed.
   */
  syncWatchdog?: () => Promise<void>;
  log: (msg: string) => void;
}

interface Execution {
  held: HeldTask;
  me: NodeIdentity;
  inc: Incarnation;
  handle: RunHandle;
  /** When it was queued for a slot (claimed ahead), or when its process was started. */
  sinceMs: number;
  /** Why it is handed back unstarted (it waited too long for a slot), if so. */
  handBack?: string;
  /** Holds a slot (its process was started and has not exited). */
  occupies: boolean;
  /** The record this node committed for the attempt's end; undefined if it wrote none. */
  finished: Promise<Task | undefined>;
}

/** An attempt not started yet: launch or a PendingHandle gives it its handle. */
function newExecution(held: HeldTask, me: NodeIdentity, inc: Incarnation): Execution {
  return { held, me, inc, handle: undefined as unknown as RunHandle, occupies: false, sinceMs: Date.now(), finished: Promise.resolve(undefined) };
}

/**
 * Where attempt `attempt` of task `id` logs: one flat directory of
 * `<id>.<attempt>.log` files (no directory made per task).
 */
export function logPathFor(dataDir: string, id: string, attempt: number): string {
  return path.join(dataDir, 'logs', `${id}.${attempt}.log`);
}

/** The layout before the flat one (logs/<id>/<attempt>.log): read, never written. */
export function legacyLogPathFor(dataDir: string, id: string, attempt: number): string {
  return path.join(dataDir, 'logs', id, `${attempt}.log`);
}

export function taskEnv(task: Task, node: string): Record<string, string> {
  const spec = task.spec!;
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    ...spec.env,
    LOOM_TASK_ID: task.id,
    LOOM_ATTEMPT: String(task.attempt),
    LOOM_NODE: node,
    ...(task.jobId ? { LOOM_JOB_ID: task.jobId, LOOM_TASK_INDEX: String(task.index) } : {}),
  };
}

function describe(r: RunResult, timeoutMs: number): string {
  if (r.error) return r.error;
  if (r.reason) return r.reason;
  if (r.timedOut) return `timeout after ${timeoutMs} ms`;
  if (r.oomKilled) return 'killed: out of memory (over its memory limit)';
  if (r.signal) return `killed by ${r.signal}`;
  return `exit ${r.exitCode}`;
}

export class Executor {
  /** Claimed tasks until their result is written (or handed back). */
  private readonly running = new Map<string, Execution>();
  /** Tasks whose process is still alive: what occupies a slot. */
  private live = 0;
  /** Resources requested by live tasks. */
  private used: Resources = NO_RESOURCES;
  private readonly results: ResultWriter;
  private slotListeners: (() => void)[] = [];
  private resultListeners: ((task: Task) => void)[] = [];
  /** Claimed ahead, waiting for a slot, in claim order (each one's handle is a PendingHandle). */
  private waiting: Execution[] = [];
  /** Moving average of how long this node's recent plain tasks ran (ms); NaN before the first. */
  private runMs = NaN;
  private staleTimer: NodeJS.Timeout | undefined;

  constructor(private readonly deps: ExecutorDeps) {
    this.results = new ResultWriter(deps.transitions, deps.lane, () => this.resultsMayWait());
  }

  /** Slots in use: live processes. A finished task's result write does not hold a slot. */
  get count(): number {
    return this.live;
  }

  get inUse(): Resources {
    return this.used;
  }

  /** The kinds of task this node runs now (NodeInfo.kinds). */
  get kinds(): string[] {
    return this.deps.kinds.available();
  }

  /** Tasks claimed ahead, waiting for a slot. */
  get backlog(): number {
    return this.waiting.length;
  }

  /**
   * Results may wait for the next claim (see ResultWriter's hold) while at
   * least `slots` tasks claimed ahead are queued here: the steal loop claims
   * again once fewer are (aheadRoom's low-water mark), within about one run
   * of a task, and that claim takes the results along.
   */
  resultsMayWait(): boolean {
    return this.waiting.length > 0 && this.waiting.length >= (this.deps.slots?.() ?? Infinity);
  }

  /**
   * Typical run time of this node's tasks, ms (NaN before the first ends): the
   * moving average of recent plain tasks, or, if longer, how long the oldest
   * task running now has run (a long task shows at once, not when it ends).
   */
  get typicalRunMs(): number {
    if (Number.isNaN(this.runMs)) return NaN;
    let oldest = Infinity;
    for (const e of this.running.values()) if (e.occupies && e.sinceMs < oldest) oldest = e.sinceMs;
    return oldest === Infinity ? this.runMs : Math.max(this.runMs, Date.now() - oldest);
  }

  /** Claimed tasks not yet settled (live, or exited with the result pending). */
  get held(): number {
    return this.running.size;
  }

  /** Runs with its handle (for local log streaming), if running here. */
  handle(id: string): { attempt: number; handle: RunHandle } | undefined {
    const e = this.running.get(id);
    return e ? { attempt: e.held.task.attempt, handle: e.handle } : undefined;
  }

  /**
   * Settles when the held task `id` is settled here, with the record this node
   * committed for it (undefined if it wrote none); undefined if not held here.
   */
  settled(id: string): Promise<Task | undefined> | undefined {
    return this.running.get(id)?.finished;
  }

  /** Called after a result is recorded, with the record as written. */
  onResult(fn: (task: Task) => void): void {
    this.resultListeners.push(fn);
  }

  onSlotFree(fn: () => void): void {
    this.slotListeners.push(fn);
  }

  /** Starts a claimed task now (a free slot, or an urgent one). */
  start(held: HeldTask, me: NodeIdentity, inc: Incarnation): void {
    const exec = newExecution(held, me, inc);
    this.track(exec, this.launch(exec));
  }

  /**
   * Starts a task claimed ahead of a free slot as soon as one frees (at once
   * if one is free and nothing waits before it).
   */
  startWhenFree(held: HeldTask, me: NodeIdentity, inc: Incarnation): void {
    if (this.waiting.length === 0 && this.live < (this.deps.slots?.() ?? Infinity)) return this.start(held, me, inc);
    const exec = newExecution(held, me, inc);
    const pending = new PendingHandle(() => (this.waiting = this.waiting.filter((w) => w !== exec)));
    exec.handle = pending;
    this.waiting.push(exec);
    this.track(exec, pending);
    this.watchStale();
  }

  /**
   * Hands back tasks that waited aheadStaleMs for a slot: the tasks holding
   * the slots turned out long, and a peer with a free slot should have them.
   * (No more are claimed ahead meanwhile: typicalRunMs counts the running
   * tasks' age.)
   */
  private watchStale(): void {
    if (this.staleTimer || this.waiting.length === 0) return;
    const staleMs = this.deps.aheadStaleMs ?? DEFAULT_STEAL_POLICY.aheadStaleMs;
    const dueMs = this.waiting[0].sinceMs + staleMs - Date.now();
    this.staleTimer = setTimeout(() => {
      this.staleTimer = undefined;
      const now = Date.now();
      for (const e of [...this.waiting]) {
        if (now - e.sinceMs < staleMs) break;
        e.handBack = `not started on node ${this.deps.nodeName}: no slot freed within ${staleMs} ms`;
        e.handle.stop('drain', 0);
      }
      this.watchStale();
    }, Math.max(1, dueMs));
    this.staleTimer.unref?.();
  }

  /** Hands back every task claimed ahead that has not started (drain, shutdown). */
  handBackWaiting(reason: 'drain' | 'shutdown'): void {
    for (const e of [...this.waiting]) e.handle.stop(reason, 0);
  }

  /** Starts waiting tasks while slots are free, oldest claim first. */
  private startWaiting(): void {
    const slots = this.deps.slots?.() ?? Infinity;
    while (this.waiting.length > 0 && this.live < slots) {
      const exec = this.waiting.shift()!;
      // A waiting task's handle is its PendingHandle until launch gives it the real one.
      const pending = exec.handle as PendingHandle;
      pending.attach(this.launch(exec));
    }
  }

  /** Starts the attempt through its kind (or a handle that says why it could not): it holds a slot until it exits. */
  private launch(exec: Execution): RunHandle {
    const { held, inc } = exec;
    const t = held.task;
    const spec = t.spec!;
    // The claim's reply may be handled after this node's fence deadline (e.g.
    // it was frozen in between): never start then; hand the task back if we can.
    const handle = inc.signal.aborted || Date.now() >= inc.fenceAtMs()
      ? failedHandle('node fenced before the task started', 0, 'fence')
      : this.deps.kinds.start({
          task: t, env: taskEnv(t, this.deps.nodeName), logPath: logPathFor(this.deps.dataDir, t.id, t.attempt),
          killGraceMs: this.deps.killGraceMs, tailBytes: LIMITS.tailBytes, maxLogBytes: this.deps.maxLogBytes,
          notAfterMs: inc.fenceAtMs(),
        });
    exec.handle = handle;
    exec.occupies = true;
    exec.sinceMs = Date.now();
    this.live++;
    this.used = addResources(this.used, spec.resources ?? NO_RESOURCES);
    return handle;
  }

  /** Follows the attempt to its end: frees its slot when the process exits, then records the result. */
  private track(exec: Execution, handle: RunHandle): void {
    const t = exec.held.task;
    this.running.set(t.id, exec);
    exec.finished = handle.done
      .then((result) => {
        // The slot frees as soon as the process is gone; the result write
        // overlaps with the next claim.
        if (exec.occupies) {
          exec.occupies = false;
          this.live--;
          this.used = addResources(this.used, t.spec!.resources ?? NO_RESOURCES, -1);
          if (result.exitCode !== undefined && !result.stoppedFor && !t.spec!.container?.image) this.noteRunTime(result.finishedAtMs - result.startedAtMs);
          this.startWaiting();
          for (const fn of this.slotListeners) fn();
          // After the steal loop's wake: a claim that comes takes the held results first.
          this.results.kick();
        }
        return this.settle(exec, result);
      })
      .catch((err) => {
        this.deps.log(`task ${t.id}: result not recorded: ${(err as Error).message}`);
        return undefined;
      })
      .finally(() => this.running.delete(t.id));
  }

  private noteRunTime(ms: number): void {
    if (!(ms >= 0)) return;
    this.runMs = Number.isNaN(this.runMs) ? ms : this.runMs + 0.2 * (ms - this.runMs);
  }

  /** A cancel request for a task of ours arrived (its revision = the record's). */
  cancel(id: string, revision: string): void {
    const e = this.running.get(id);
    if (!e) return;
    e.held = { task: { ...e.held.task, cancelRequested: true }, revision };
    e.handle.stop('cancel', this.deps.killGraceMs);
  }

  /** Stops every task; waits until each is settled. */
  async stopAll(reason: StopReason, graceMs: number): Promise<void> {
    const all = [...this.running.values()];
    for (const e of all) e.handle.stop(reason, reason === 'fence' ? 0 : graceMs);
    await Promise.all(all.map((e) => e.finished));
  }

  /** Waits (up to graceMs) for running tasks to end on their own. */
  async drain(graceMs: number): Promise<void> {
    const all = Promise.all([...this.running.values()].map((e) => e.finished));
    await Promise.race([all, new Promise((r) => setTimeout(r, graceMs).unref())]);
  }

  private async settle(exec: Execution, r: RunResult): Promise<Task | undefined> {
    const t = exec.held.task;
    // A watchdog kill never looks like success; only failures pay the round trip.
    if (!r.stoppedFor && r.exitCode !== 0 && this.deps.syncWatchdog) await this.deps.syncWatchdog();
    if (t.spec?.container?.image && r.exitCode !== undefined && !r.engineUnavailable) this.deps.onEngineWorked?.();
    const fenced = exec.inc.signal.aborted || Date.now() >= exec.inc.fenceAtMs();
    if (!fenced && r.engineUnavailable && r.stoppedFor === undefined) {
      // Nothing ran: hand the task back (not a failed attempt) for a node
      // whose engine answers.
      const why = `docker engine unavailable on node ${this.deps.nodeName}`;
      this.deps.onEngineUnavailable?.(`${why}: ${r.error ?? ''}`);
      const ok = await this.deps.transitions.release(exec.held, exec.me, why, Date.now()).catch(() => false);
      this.deps.log(`task ${t.id}: ${why} (${r.error ?? 'no answer'}); ${ok ? 'requeued' : 'left to the survivors'}`);
      return;
    }
    if (fenced || r.stoppedFor === 'fence' || r.stoppedFor === 'shutdown' || r.stoppedFor === 'drain') {
      // No result: the attempt did not end on its own. Hand it back if we
      // still hold it; otherwise a survivor has requeued it already.
      const node = this.deps.nodeName;
      const why = fenced || r.stoppedFor === 'fence' ? `node ${node} fenced` : exec.handBack ?? (r.stoppedFor === 'drain' ? `node ${node} drained` : `node ${node} shut down`);
      // A fence while the task ran counts as a loss of its node (Task.node_losses), or a task that fences its node would go on to each next one.
      const nodeLoss = fenced || r.stoppedFor === 'fence';
      const ok = await this.deps.transitions.release(exec.held, exec.me, why, Date.now(), nodeLoss).catch(() => false);
      this.deps.log(`task ${t.id}: ${why}; ${ok ? 'requeued' : 'left to the survivors'}`);
      return;
    }
    const outcome: Outcome = {
      event: r.stoppedFor === 'cancel' ? 'cancel' : r.exitCode === 0 && !r.timedOut ? 'succeed' : 'fail',
      exitCode: r.exitCode ?? (r.error ? r.errorExitCode : undefined),
      oomKilled: r.oomKilled,
      signal: r.signal,
      reason: [describe(r, t.spec!.timeoutMs), r.resultError].filter(Boolean).join('; '),
      finishedAtMs: r.finishedAtMs,
      result: r.result,
      tail: {
        stdout: r.stdoutTail,
        stderr: r.stderrTail,
        stdoutTruncated: r.stdoutTruncated,
        stdoutBytes: r.stdoutBytes ?? 0,
        stderrBytes: r.stderrBytes ?? 0,
        stderrTruncated: r.stderrTruncated,
        attempt: t.attempt,
      },
    };
    // Keep trying while this node's lease lives: giving up would leave the
    // task RUNNING under a live lease, which nobody else may touch. Once the
    // lease is gone, the survivors requeue it.
    const backoff = (tries: number) => new Promise((res) => setTimeout(res, Math.min(2000, 100 * 2 ** Math.min(tries, 5))));
    for (let tries = 0; ; tries++) {
      if (exec.inc.signal.aborted) {
        this.deps.log(`task ${t.id}: result not recorded, the node was fenced; the survivors requeue it`);
        return;
      }
      let ok: boolean;
      try {
        ok = await this.results.write(exec.held, outcome, exec.me);
      } catch (err) {
        if (tries % 10 === 0) this.deps.log(`task ${t.id}: result write failed (${(err as Error).message}); retrying`);
        await backoff(tries);
        continue;
      }
      if (ok) {
        // What finishOp wrote: the same pure function of the held record and the outcome.
        const record = this.deps.transitions.resultRecord(exec.held.task, outcome);
        for (const fn of this.resultListeners) fn(record);
        return record;
      }
      // The compare failed: re-read. If still ours (a cancel request changed
      // the record), retry against the new revision; otherwise drop quietly.
      const fresh = await this.deps.queries.get(t.id).catch((e: LoomError) => e);
      if (fresh instanceof LoomError) {
        if (fresh.code === 'NOT_FOUND') return;
        await backoff(tries);
        continue;
      }
      const f = fresh.task;
      if (f.node !== exec.me.node || f.lease !== exec.me.lease || f.attempt !== t.attempt) {
        this.deps.log(`task ${t.id}: result discarded, the task is no longer ours`);
        return;
      }
      exec.held = fresh;
    }
  }

  /** Pending results under `lease` for a caller's own transaction (see ResultWriter.take). */
  takeResults(lease: string, max: number): PendingResult[] {
    return this.results.take(lease, max);
  }

  /** Ids of the tasks held here. */
  heldIds(): Set<string> {
    return new Set(this.running.keys());
  }

  /** Whether this node holds the task (running, or its result being written). */
  holds(id: string): boolean {
    return this.running.has(id);
  }
}
