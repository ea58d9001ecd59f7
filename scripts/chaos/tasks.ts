/**
 * The chaos workload and its external execution log.
 *
 * Every task is `sh -c SCRIPT loomchaos-<tag>`. The script appends one line
 * to a log file outside loom when it starts and one when it ends:
 *
 *   <task-id> <attempt> <node> start <unix-ns> <sh-pid>
 *   <task-id> <attempt> <node> end   <unix-ns> <sh-pid> <exit-code>
 *
 * (task id, attempt and node come from LOOM_TASK_ID, LOOM_ATTEMPT and
 * LOOM_NODE). Each line is one `echo >>` (open with O_APPEND, one write(2)
 * of well under PIPE_BUF bytes), so concurrent writers never interleave
 * within a line. A task that is killed writes no end line.
 *
 * The trailing `loomchaos-<tag>` argument is the shell's $0: it marks the
 * run's task processes in /proc/<pid>/cmdline for the process sampler.
 *
 * Durations: uniform in [minMs, maxMs]; a fraction of long tasks in
 * [longMinMs, longMaxMs] outlive a paused node's fence deadline.
 *
 * Kinds:
 *   ok     sleep D, exit 0                                -> COMPLETED
 *   flaky  sleep D, exit 3 when LOOM_ATTEMPT=1, retries 2 -> COMPLETED (after a retry)
 *   fail   sleep D, exit 7 always, retries 1              -> FAILED
 */
import { TaskSpec } from '../../src/gen/loom';
import { Rng } from './rng';

export type TaskKind = 'ok' | 'flaky' | 'fail';

export const FLAKY_EXIT = 3;
export const FAIL_EXIT = 7;

export interface PlannedTask {
  index: number;
  name: string;
  kind: TaskKind;
  durationMs: number;
  retries: number;
}

export interface TaskPlanOptions {
  count: number;
  minMs: number;
  maxMs: number;
  /** Fractions of flaky and failing tasks. */
  flaky: number;
  fail: number;
  /**
   * Fraction of long tasks, [longMinMs, longMaxMs]: longer than a node's
   * fence deadline, so a paused node's reaper has to kill them.
   */
  long: number;
  longMinMs: number;
  longMaxMs: number;
}

export function planTasks(rng: Rng, o: TaskPlanOptions): PlannedTask[] {
  const out: PlannedTask[] = [];
  for (let i = 0; i < o.count; i++) {
    const r = rng.float();
    const kind: TaskKind = r < o.fail ? 'fail' : r < o.fail + o.flaky ? 'flaky' : 'ok';
    out.push({
      index: i,
      name: `chaos-${i}`,
      kind,
      durationMs: rng.chance(o.long) ? rng.int(o.longMinMs, o.longMaxMs) : rng.int(o.minMs, o.maxMs),
      retries: kind === 'flaky' ? 2 : kind === 'fail' ? 1 : 0,
    });
  }
  return out;
}

/** The exit code a task of this kind exits with on this attempt. */
export function exitCodeFor(kind: TaskKind, attempt: number): number {
  if (kind === 'fail') return FAIL_EXIT;
  if (kind === 'flaky' && attempt === 1) return FLAKY_EXIT;
  return 0;
}

export function processTag(runTag: string): string {
  return `loomchaos-${runTag}`;
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function taskScript(logPath: string, t: PlannedTask): string {
  const secs = (t.durationMs / 1000).toFixed(3);
  const code =
    t.kind === 'fail'
      ? `c=${FAIL_EXIT}`
      : t.kind === 'flaky'
        ? `c=0; [ "$LOOM_ATTEMPT" = 1 ] && c=${FLAKY_EXIT}`
        : 'c=0';
  const who = '$LOOM_TASK_ID $LOOM_ATTEMPT $LOOM_NODE';
  return [
    `L=${shQuote(logPath)}`,
    `echo "${who} start $(date +%s%N) $$" >> "$L"`,
    `sleep ${secs}`,
    code,
    `echo "${who} end $(date +%s%N) $$ $c" >> "$L"`,
    'exit $c',
  ].join('\n');
}

export function taskSpec(t: PlannedTask, logPath: string, runTag: string): TaskSpec {
  // fromPartial: fields added to TaskSpec later get their defaults.
  return TaskSpec.fromPartial({
    name: t.name,
    command: ['sh', '-c', taskScript(logPath, t), processTag(runTag)],
    env: {},
    cwd: '',
    timeoutMs: 0,
    retries: t.retries,
    priority: 100,
    restartOnNodeFailure: true,
  });
}

// ---- the execution log ----

export interface LogLine {
  lineNo: number;
  id: string;
  attempt: number;
  node: string;
  kind: 'start' | 'end';
  /** Unix time in ms (fractional: the log has ns). */
  atMs: number;
  pid: number;
  code?: number;
}

export interface ParsedLog {
  lines: LogLine[];
  /** Lines that do not parse (a torn or foreign line). */
  bad: { lineNo: number; text: string }[];
}

const LINE = /^([0-9a-f-]{36}) (\d+) (\S+) (start|end) (\d{10,}) (\d+)(?: (\d+))?$/;

export function parseLog(text: string): ParsedLog {
  const lines: LogLine[] = [];
  const bad: { lineNo: number; text: string }[] = [];
  text.split('\n').forEach((raw, i) => {
    if (raw === '') return;
    const m = LINE.exec(raw);
    if (!m || (m[4] === 'end') !== (m[7] !== undefined)) {
      bad.push({ lineNo: i + 1, text: raw.slice(0, 200) });
      return;
    }
    lines.push({
      lineNo: i + 1,
      id: m[1],
      attempt: Number(m[2]),
      node: m[3],
      kind: m[4] as 'start' | 'end',
      atMs: nsToMs(m[5]),
      pid: Number(m[6]),
      code: m[7] === undefined ? undefined : Number(m[7]),
    });
  });
  return { lines, bad };
}

/** ns since the epoch (as text; > 2^53) to fractional ms. */
export function nsToMs(ns: string): number {
  const whole = ns.slice(0, -6) || '0';
  const frac = ns.slice(-6).padStart(6, '0');
  return Number(whole) + Number(frac) / 1e6;
}
