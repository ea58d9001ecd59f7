/**
 * Task lifecycle: the states, the events, and the one table that says which
 * event moves which state where. Pure: no I/O. The store's transactions call
 * `nextState` and refuse what the table refuses.
 *
 *   submit -> QUEUED --claim--> RUNNING --exit 0--------------------> COMPLETED
 *               ^  |              |  |  --exit!=0 / timeout, no retry -> FAILED
 *               |  |              |  |  --cancelled by its owner ----> CANCELLED
 *               |  |              |  +--node lost, no restart -------> LOST
 *               |  |              |  +--node lost/fenced N times ----> FAILED
 *               |  +--cancel------|------------------------------------> CANCELLED
 *               +---- retry / node lost + restart / released ---------+
 */
import { TaskState } from '../gen/loom';

export { TaskState };

export type TaskEvent =
  | 'claim' // a node stole the task
  | 'succeed' // process exited 0
  | 'fail' // non-zero exit, signal, timeout or runner error
  | 'cancel' // user cancel (queued: immediate; running: once killed)
  | 'node_lost' // the running node's lease is gone (or it fenced itself)
  | 'release'; // the running node hands the task back (shutdown, drain)

export interface TransitionContext {
  /** Failed attempts so far, including the one that just ended (node losses do not count). */
  attempt: number;
  /** Extra attempts the spec allows after the first. */
  retries: number;
  /** Spec's restart_on_node_failure (default true). */
  restartOnNodeFailure: boolean;
  /**
   * Attempts whose node died or fenced itself while running them, including
   * the one that just ended (undefined: 0). A task that brings its node down
   * would otherwise take down each next node in turn.
   */
  nodeLosses?: number;
  /** At this many node losses node_lost and a fenced node's release end the task FAILED (undefined: no limit). */
  maxNodeLosses?: number;
}

/** Has the task lost its node as often as the cluster tolerates? */
export function lostTooOften(c: TransitionContext): boolean {
  return c.maxNodeLosses !== undefined && (c.nodeLosses ?? 0) >= c.maxNodeLosses;
}

/** The reason recorded when lostTooOften ends a task. */
export function lostTooOftenReason(losses: number, why: string): string {
  return `lost its node ${losses === 1 ? 'once' : `${losses} times`} (last: ${why})`;
}

type Rule = TaskState | ((ctx: TransitionContext) => TaskState);

const TABLE: Partial<Record<TaskState, Partial<Record<TaskEvent, Rule>>>> = {
  [TaskState.QUEUED]: {
    claim: TaskState.RUNNING,
    cancel: TaskState.CANCELLED,
  },
  [TaskState.RUNNING]: {
    succeed: TaskState.COMPLETED,
    fail: (c) => (c.attempt <= c.retries ? TaskState.QUEUED : TaskState.FAILED),
    cancel: TaskState.CANCELLED,
    node_lost: (c) => (!c.restartOnNodeFailure ? TaskState.LOST : lostTooOften(c) ? TaskState.FAILED : TaskState.QUEUED),
    release: (c) => (lostTooOften(c) ? TaskState.FAILED : TaskState.QUEUED),
  },
};

/** Delay before retry number `failures` (1 = first retry), capped at 1 h. */
export function retryDelayMs(backoffMs: number, exponential: boolean, failures: number): number {
  if (backoffMs <= 0) return 0;
  const d = exponential ? backoffMs * 2 ** Math.max(0, Math.min(failures - 1, 30)) : backoffMs;
  return Math.min(d, 3_600_000);
}

export const TERMINAL_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.COMPLETED,
  TaskState.FAILED,
  TaskState.CANCELLED,
  TaskState.LOST,
]);

export function isTerminal(state: TaskState): boolean {
  return TERMINAL_STATES.has(state);
}

/** The state `event` leads to from `state`, or undefined if not allowed. */
export function nextState(
  state: TaskState,
  event: TaskEvent,
  ctx: TransitionContext,
): TaskState | undefined {
  const rule = TABLE[state]?.[event];
  if (rule === undefined) return undefined;
  return typeof rule === 'function' ? rule(ctx) : rule;
}

const STATE_NAMES: Record<TaskState, string> = {
  [TaskState.TASK_STATE_UNSPECIFIED]: 'unspecified',
  [TaskState.QUEUED]: 'queued',
  [TaskState.RUNNING]: 'running',
  [TaskState.COMPLETED]: 'completed',
  [TaskState.FAILED]: 'failed',
  [TaskState.CANCELLED]: 'cancelled',
  [TaskState.LOST]: 'lost',
  [TaskState.UNRECOGNIZED]: 'unrecognized',
};

/** Lower-case name used in keys, CLI output and flags. */
export function stateName(state: TaskState): string {
  return STATE_NAMES[state] ?? 'unrecognized';
}

export function parseStateName(name: string): TaskState | undefined {
  const entry = Object.entries(STATE_NAMES).find(([, n]) => n === name.toLowerCase());
  if (!entry) return undefined;
  const state = Number(entry[0]) as TaskState;
  return state === TaskState.TASK_STATE_UNSPECIFIED || state === TaskState.UNRECOGNIZED
    ? undefined
    : state;
}

/**
 * Longest reason kept in a record, and in each history entry. A reason can
 * quote the command (`command not found: <argv[0]>`, up to 128 KiB), and a
 * record keeps the last 20 of them (store/transitions.ts): uncut, a task retried with such a
 * command grew past etcd's request limit, and its result could never be
 * recorded (the node retries a result while its lease lives: the task held
 * its slot for good). Cut, a result (record, status key, two 64 KiB tails)
 * stays under MAX_TXN_BYTES with the largest spec.
 */
export const MAX_REASON_CHARS = 1024;

/** `reason`, cut to MAX_REASON_CHARS with a note of how much was cut. */
export function clipReason(reason: string): string {
  if (reason.length <= MAX_REASON_CHARS) return reason;
  return `${reason.slice(0, MAX_REASON_CHARS)}... (${reason.length - MAX_REASON_CHARS} more characters cut)`;
}
