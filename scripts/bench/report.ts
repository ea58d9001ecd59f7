/** BENCHMARKS.md from what a run measured: machine, targets, per-scenario figures, raw JSON lines. */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { FigureLine } from './figures';
import { etcdVersion } from './etcd-probe';
import { BULLMQ_VERSION } from './peer/bullmq';
import { redisVersion } from './peer/redis';

export interface MachineInfo {
  cpu: string;
  cores: number;
  ramGiB: number;
  kernel: string;
  os: string;
  node: string;
  etcd: string;
  /** The peer the bench compares loom with (BullMQ and Redis versions). */
  peer: string;
  loadAvg: string;
  commit: string;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  let osName = os.type();
  try {
    osName = /^PRETTY_NAME="?([^"\n]*)"?/m.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] ?? osName;
  } catch {
    // not Linux-like
  }
  let commit = 'unknown';
  try {
    const root = path.resolve(__dirname, '../../..');
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (dirty) commit += ' (with uncommitted changes)';
  } catch {
    // not a git checkout
  }
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism?.() ?? cpus.length,
    ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    kernel: `${os.release()} (${os.version()})`,
    os: osName,
    node: process.version,
    etcd: etcdVersion(),
    peer: `BullMQ ${BULLMQ_VERSION}, redis-server ${redisVersion().version ?? '(not installed)'}`,
    loadAvg: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    commit,
  };
}

export interface ReportInput {
  machine: MachineInfo;
  startedAt: Date;
  durationMs: number;
  command: string;
  quick: boolean;
  reps: number;
  scenarios: { name: string; title: string }[];
  lines: FigureLine[];
  notes: Map<string, string[]>;
}

function num(x: number | undefined): string {
  return x === undefined ? '' : String(x);
}

function value(l: FigureLine): string {
  if (l.error) return `**not measured**: ${l.error}`;
  return `${num(l.median)} ${l.unit ?? ''}`.trim();
}

function spreadText(l: FigureLine): string {
  if (l.error || l.min === undefined) return '';
  if (l.reps === 1) return 'single repetition';
  return `${l.min}–${l.max} (IQR ${l.q1}–${l.q3})`;
}

function met(l: FigureLine): string {
  if (l.met === undefined) return l.target ? '?' : '';
  return l.met ? 'yes' : '**no**';
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/**
 * Figures whose JSON line has `side: {row, col}` (set through Figure.extra)
 * also go into a table of medians, rows × columns: loom beside its peer.
 */
export interface SideBySide {
  row: string;
  col: string;
  /** Where the row goes (ascending; rows without come after, in the order first seen). */
  rank?: number;
}

function sideBySide(lines: FigureLine[]): string[] {
  const cells = lines.filter((l) => !l.error && l.side) as (FigureLine & { side: SideBySide })[];
  if (cells.length === 0) return [];
  const rank = (row: string) => Math.min(...cells.filter((l) => l.side.row === row).map((l) => l.side.rank ?? Infinity));
  const rows = [...new Set(cells.map((l) => l.side.row))].sort((a, b) => rank(a) - rank(b));
  const cols = [...new Set(cells.map((l) => l.side.col))];
  const out = ['Side by side (medians over the repetitions; ratios are the median of the per-repetition ratios):', ''];
  out.push(`| | ${cols.map(cell).join(' | ')} |`, `|---|${cols.map(() => '---').join('|')}|`);
  for (const row of rows) {
    const v = cols.map((col) => {
      const l = cells.find((x) => x.side.row === row && x.side.col === col);
      return l ? cell(value(l)) : '';
    });
    out.push(`| ${cell(row)} | ${v.join(' | ')} |`);
  }
  out.push('');
  return out;
}

export function renderReport(r: ReportInput): string {
  const m = r.machine;
  const out: string[] = [];
  out.push('# loom benchmarks', '');
  out.push(
    'Written by `npm run bench` (scripts/bench/) from what that run measured; do not edit by hand, rerun it. ' +
      'Every number below is a median over the repetitions, with min–max and the interquartile range. ' +
      'Benchmarks are not tests: nothing here is asserted by the test suite.',
    '',
  );
  if (r.quick) out.push('> **Quick run** (`--quick`): small sizes for a smoke test; these numbers are not the benchmark.', '');
  out.push('## Run', '');
  out.push('| | |', '|---|---|');
  out.push(`| date | ${r.startedAt.toISOString()} |`);
  out.push(`| command | \`${cell(r.command)}\` |`);
  out.push(`| repetitions | ${r.reps} |`);
  out.push(`| duration | ${(r.durationMs / 60_000).toFixed(1)} min |`);
  out.push(`| commit | ${cell(m.commit)} |`);
  out.push('');
  out.push('## Machine', '');
  out.push('| | |', '|---|---|');
  out.push(`| CPU | ${cell(m.cpu)} × ${m.cores} |`);
  out.push(`| RAM | ${m.ramGiB} GiB |`);
  out.push(`| OS | ${cell(m.os)} |`);
  out.push(`| kernel | ${cell(m.kernel)} |`);
  out.push(`| Node.js | ${m.node} |`);
  out.push(`| etcd | ${cell(m.etcd)} |`);
  out.push(`| peer | ${cell(m.peer)} |`);
  out.push(`| load average at start (1/5/15 min) | ${m.loadAvg} |`);
  out.push('');

  const targeted = r.lines.filter((l) => l.target || (l.error && l.figure));
  out.push('## Targets', '');
  out.push('| scenario | figure | measured (median) | target | met? |', '|---|---|---|---|---|');
  for (const l of targeted) {
    out.push(`| ${l.scenario} | ${cell(l.label ?? l.figure ?? '')} | ${cell(value(l))} | ${cell(l.target ?? '')} | ${met(l)} |`);
  }
  for (const l of r.lines.filter((x) => x.error && !x.figure)) {
    out.push(`| ${l.scenario} | (scenario failed) | ${cell(value(l))} | | **no** |`);
  }
  out.push('');

  for (const s of r.scenarios) {
    const lines = r.lines.filter((l) => l.scenario === s.name);
    out.push(`## ${s.title}`, '');
    for (const n of r.notes.get(s.name) ?? []) out.push(`- ${n}`);
    if ((r.notes.get(s.name) ?? []).length) out.push('');
    if (lines.length === 0) {
      out.push('(no figures)', '');
      continue;
    }
    out.push('| figure | median | spread: min–max (IQR) | reps | target | met? |', '|---|---|---|---|---|---|');
    for (const l of lines) {
      out.push(
        `| ${cell(l.label ?? l.figure ?? '(scenario)')} | ${cell(value(l))} | ${spreadText(l)} | ${num(l.reps)} | ${cell(l.target ?? '')} | ${met(l)} |`,
      );
    }
    out.push('');
    out.push(...sideBySide(lines));
  }
  out.push('## Raw output', '', 'The JSON lines the run printed, one per figure:', '', '```');
  for (const l of r.lines) out.push(JSON.stringify(l));
  out.push('```', '');
  return out.join('\n');
}
