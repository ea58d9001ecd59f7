/** Human output of the CLI: tables, task summaries, durations. Pure. */
import { formatBytes } from '../core/fit';
import { formatDurationMs } from '../core/duration';
import { isTerminal, stateName } from '../core/lifecycle';
import { nodeKinds } from '../core/task-kind';
import type { AutoscaleGroup, EtcdMember, NodeInfo, Task } from '../gen/loom';

/**
 * C0 and C1 control characters, DEL, and the Unicode controls that reorder
 * text (bidi overrides and isolates, marks): what makes a terminal move the
 * cursor, recolour, retitle, rewrite lines already shown, or display text in
 * another order than it is.
 */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function escapeOne(c: string): string {
  const n = c.codePointAt(0)!;
  return n <= 0x7f ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
}

/**
 * `text` with its control characters shown as \xNN (ASCII) or \uNNNN (the
 * rest: bash's $'...' reads \x as a byte, \u as a character). Names, argv,
 * images and reasons come from whoever submitted the task; the table is the
 * reader's terminal, so none of them may write to it as anything but text.
 */
export function escapeControls(text: string): string {
  return text.replace(CONTROLS, escapeOne);
}

/** Left-aligned columns separated by two spaces; no trailing blanks. Every cell is escapeControls'd. */
export function table(headers: string[], unsafeRows: string[][]): string {
  const rows = unsafeRows.map((r) => r.map(escapeControls));
  const widths = headers.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => displayWidth(r[i] ?? ''))),
  );
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + ' '.repeat(widths[i] - displayWidth(c))))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

function displayWidth(text: string): number {
  return [...text].length;
}

/** Cuts `text` to `max` characters, marking the cut with "…". */
export function truncate(text: string, max: number): string {
  const chars = [...text.replace(/[\r\n\t]+/g, ' ')];
  if (chars.length <= max) return chars.join('');
  return chars.slice(0, Math.max(0, max - 1)).join('') + '…';
}

/**
 * Quotes one argv word the way a POSIX shell would need it; a word with
 * control characters in bash's $'...' form, with them escaped (still pasteable).
 */
export function quoteArg(arg: string): string {
  if (arg !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  CONTROLS.lastIndex = 0;
  if (CONTROLS.test(arg)) {
    return `$'${arg.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(CONTROLS, escapeOne)}'`;
  }
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

export function formatCommand(argv: readonly string[]): string {
  return argv.map(quoteArg).join(' ');
}

/** "2024-05-01 12:00:03Z", or "-" for 0 (not yet). */
export function formatTime(ms: number): string {
  if (!ms) return '-';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** 128 + SIGKILL: how Docker reports a container whose main process the kernel killed. */
const OOM_KILL_EXIT = 137;

/** "exit 3", "signal SIGKILL", or "-" while there is no result. */
export function formatExit(task: Task): string {
  // The kernel's OOM killer sends SIGKILL. A process task's record says so; a
  // container's says 137 (Docker reports 128 + the signal of its main process
  // as an exit code). Shown alike, so one OOM reads the same either way.
  if (task.oomKilled && task.exitCode === OOM_KILL_EXIT) return 'signal SIGKILL';
  if (task.exitCode !== undefined && task.exitCode !== null) return `exit ${task.exitCode}`;
  if (task.signal) return `signal ${task.signal}`;
  return '-';
}

/** One line: "completed (exit 0)", "failed: timeout after 5s", ... */
export function formatStateLine(task: Task): string {
  let text = stateName(task.state);
  const exit = formatExit(task);
  if (exit !== '-') text += ` (${exit})`;
  if (task.cancelRequested && !isTerminal(task.state)) text += ' (cancel requested)';
  if (task.reason && isTerminal(task.state) && !sameAsExit(task.reason, exit)) {
    text += `: ${escapeControls(task.reason)}`;
  }
  return text;
}

function sameAsExit(reason: string, exit: string): boolean {
  return reason.trim().toLowerCase() === exit.toLowerCase();
}

/** What the task runs, in one line: its command, or an HTTP task's method and URL. */
function whatItRuns(spec: Task['spec']): string {
  return spec?.http?.url ? `${spec.http.method || 'GET'} ${spec.http.url}` : formatCommand(spec?.command ?? []);
}

function taskTitle(task: Task): string {
  const name = task.spec?.name ?? '';
  const command = whatItRuns(task.spec);
  return name ? `${name}: ${command}` : command;
}

/** The multi-line `loom status` summary. */
export function formatTaskSummary(task: Task, now: number): string {
  const spec = task.spec;
  const rows: [string, string][] = [
    ['id', task.id],
    ['name', spec?.name || '-'],
    ['state', formatStateLine(task)],
    ['node', task.node || '-'],
    ['attempt', `${task.attempt} of ${1 + (spec?.retries ?? 0)}`],
    ['exit', formatExit(task)],
    ['reason', task.reason || '-'],
    ['submitted', formatTime(task.submittedAtMs)],
    ['started', formatTime(task.startedAtMs)],
    ['finished', formatTime(task.finishedAtMs)],
  ];
  if (task.startedAtMs) {
    const end = task.finishedAtMs || now;
    rows.push(['duration', formatDurationMs(Math.max(0, end - task.startedAtMs))]);
  } else if (task.submittedAtMs && !isTerminal(task.state)) {
    rows.push(['queued for', formatDurationMs(Math.max(0, now - task.submittedAtMs))]);
  }
  if (task.notBeforeMs && task.notBeforeMs > now) {
    rows.push(['retry in', formatDurationMs(task.notBeforeMs - now)]);
  }
  rows.push([spec?.http?.url ? 'http' : 'command', whatItRuns(spec)]);
  const h = spec?.http;
  if (h?.url) {
    if (h.headers.length) rows.push(['headers', h.headers.map((x) => quoteArg(`${x.name}: ${x.value}`)).join(' ')]);
    if (h.body.length) rows.push(['body', `${h.body.length} bytes`]);
    rows.push(['expect', h.expect || '200-299']);
  }
  if (task.owner) rows.push(['owner', task.owner]);
  if (task.jobId) rows.push(['job', `${task.jobId} (index ${task.index})`]);
  const c = spec?.container;
  if (c?.image) {
    rows.push(['image', c.image]);
    if (c.user) rows.push(['user', c.user]);
    if (c.network) rows.push(['network', c.network]);
    if (c.mounts.length) rows.push(['mounts', c.mounts.map((m) => `${m.host}:${m.container}${m.readOnly ? ':ro' : ''}`).join(' ')]);
  }
  const r = spec?.resources;
  if (r && (r.cpu || r.memoryBytes || r.diskBytes)) rows.push(['resources', `cpu ${r.cpu || '-'}, memory ${r.memoryBytes ? formatBytes(r.memoryBytes) : '-'}, disk ${r.diskBytes ? formatBytes(r.diskBytes) : '-'}`]);
  if (spec?.constraints.length) rows.push(['constraints', spec.constraints.map((c) => `${c.key}${c.op}${c.value}`).join(' ')]);
  if (spec?.pinNode) rows.push(['on', spec.pinNode]);
  if (task.nodeLosses) rows.push(['node losses', `${task.nodeLosses} (its node died or fenced while running it; see --max-node-losses)`]);
  if (task.oomKilled) rows.push(['oom', 'yes: killed for exceeding its memory limit']);
  if (task.result.length) rows.push(['result', describeResult(task.result)]);
  if (spec?.cwd) rows.push(['cwd', spec.cwd]);
  const env = Object.entries(spec?.env ?? {});
  if (env.length) rows.push(['env', env.map(([k, v]) => quoteArg(`${k}=${v}`)).join(' ')]);
  if (spec?.timeoutMs) rows.push(['timeout', formatDurationMs(spec.timeoutMs)]);
  if (spec?.priority !== undefined) rows.push(['priority', String(spec.priority)]);
  if (spec?.restartOnNodeFailure === false) rows.push(['restart', 'no (LOST if its node dies)']);
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  let out = rows.map(([k, v]) => `${(k + ':').padEnd(width)}${escapeControls(v)}`).join('\n') + '\n';
  if (task.history.length > 0) {
    out += 'history:\n';
    out += table(
      ['  #', 'NODE', 'STARTED', 'DURATION', 'OUTCOME'],
      task.history.map((a) => [
        `  ${a.number}`,
        a.node || '-',
        formatTime(a.startedAtMs),
        a.finishedAtMs && a.startedAtMs
          ? formatDurationMs(Math.max(0, a.finishedAtMs - a.startedAtMs))
          : '-',
        a.outcome || '-',
      ]),
    );
  }
  return out;
}

export function formatTaskTable(tasks: Task[], width = 120): string {
  const rows = tasks.map((t) => [
    t.id,
    stateName(t.state),
    t.node || '-',
    String(t.attempt),
    t.exitCode !== undefined ? String(t.exitCode) : t.signal || '-',
    taskTitle(t),
  ]);
  const headers = ['ID', 'STATE', 'NODE', 'ATTEMPT', 'EXIT', 'NAME/COMMAND'];
  // Give the last column what is left of the terminal, at least 20.
  const used = headers
    .slice(0, -1)
    .reduce((sum, h, i) => sum + 2 + Math.max(h.length, ...rows.map((r) => r[i].length)), 0);
  const room = Math.max(20, width - used);
  for (const r of rows) r[5] = truncate(r[5], room);
  return table(headers, rows);
}

export function formatLabels(labels: Record<string, string>): string {
  const entries = Object.entries(labels).sort(([a], [b]) => a.localeCompare(b));
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(',') : '-';
}

export function formatNodesTable(nodes: NodeInfo[], now: number): string {
  const sorted = [...nodes].sort((a, b) => a.name.localeCompare(b.name));
  const userLabels = (l: Record<string, string>) =>
    Object.fromEntries(Object.entries(l).filter(([k]) => !['arch', 'os', 'hostname', 'node'].includes(k)));
  return table(
    ['NAME', 'ADDRESS', 'RUNNING', 'CPU%', 'LOAD', 'MEM AVAIL', 'FREE CPU/MEM', 'LABELS', 'KINDS', 'TASKS AS', 'UPTIME', 'STATE'],
    sorted.map((n) => [
      n.name,
      n.address || '-',
      `${n.running}/${n.slots}`,
      n.metrics ? `${Math.round(n.metrics.cpuUtilization * 100)}%` : '-',
      n.metrics ? n.metrics.load1.toFixed(2) : '-',
      n.metrics ? `${formatBytes(n.metrics.memoryAvailableBytes)}/${formatBytes(n.metrics.memoryTotalBytes)}` : '-',
      n.free ? `${Math.round(n.free.cpu * 100) / 100}/${formatBytes(n.free.memoryBytes)}` : '-',
      truncate(formatLabels(userLabels(n.labels)), 30),
      // What it runs now: "container" only while its Docker engine answers.
      nodeKinds(n).join(','),
      // "node" means tasks share the node's identity: shout it.
      n.runAs === 'node' ? 'NODE USER' : n.runAs || '-',
      n.startedAtMs ? formatDurationMs(Math.max(0, now - n.startedAtMs)) : '-',
      nodeState(n),
    ]),
  );
}

/**
 * Below `loom nodes`: each autoscaled group's size (decided, and as the
 * provider last accepted it), its nodes on their way out, who evaluates the
 * policy, and the last decision with its reason.
 */
export function formatAutoscaleGroups(groups: AutoscaleGroup[], now: number): string {
  return groups.map((g) => {
    const applied = !g.hasApplied ? 'the provider not asked yet' : g.applied === g.target ? 'provider agrees' : `provider last accepted ${g.applied}`;
    const leader = g.leader ? `evaluated by ${g.leader}` : 'no node evaluates it now';
    const removing = g.removing.length ? `; removing ${g.removing.join(', ')}` : '';
    const when = g.atMs ? ` (${formatDurationMs(Math.max(0, now - Number(g.atMs)))} ago)` : '';
    return `autoscale ${g.group}: ${g.target} node(s) wanted, ${g.observed.length} in the group, ${applied}; ${leader}${removing}\n  last decision${when}: ${g.reason}`;
  }).join('\n');
}

/** STATE of `loom nodes`: ready, draining (an operator's), or paused and why (the node's own verdict, e.g. a full disk). */
function nodeState(n: NodeInfo): string {
  if (n.pausedReason && !n.drainDeadlineMs) return `paused: ${n.pausedReason}`;
  if (!n.draining) return 'ready';
  const drain = n.drainDeadlineMs ? `draining (deadline ${new Date(n.drainDeadlineMs).toISOString().slice(11, 19)}Z)` : 'draining';
  return n.pausedReason ? `${drain}; paused: ${n.pausedReason}` : drain;
}

/**
 * `loom members`: one row per etcd member (NODE: a loom node of its name is
 * up); below the table, why each one that does not answer does not.
 */
export function formatMembersTable(members: EtcdMember[]): string {
  const rows = members.map((m) => [
    m.name || '(unstarted)',
    m.id,
    m.learner ? 'learner' : m.leader ? 'leader' : 'voter',
    m.answers ? 'yes' : 'no',
    m.nodeUp ? 'up' : '-',
    m.peerUrls.join(',') || '-',
    m.clientUrls.join(',') || '-',
  ]);
  const text = table(['NAME', 'ID', 'ROLE', 'ANSWERS', 'NODE', 'PEER URL', 'CLIENT URL'], rows);
  const problems = members.filter((m) => !m.answers).map((m) => `${m.name || m.id}: ${m.problem}`);
  return problems.length ? `${text}${problems.join('\n')}\n` : text;
}

/** A result for the summary: short UTF-8 text as is, anything else by its size. */
function describeResult(result: Uint8Array): string {
  const text = Buffer.from(result).toString('utf8');
  const printable = !text.includes('\uFFFD') && !/[\u0000-\u0008\u000e-\u001f]/.test(text);
  if (printable && result.length <= 200 && !text.trimEnd().includes('\n')) return text.trimEnd();
  return `${result.length} bytes (\`loom wait ID --result\` prints them)`;
}
