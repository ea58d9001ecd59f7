/** The chaos run's summary: human text and a JSON document. */
import { CheckResult } from './checker';
import { FaultRecord, ALL_FAULT_KINDS } from './faults';
import { PlannedTask } from './tasks';

export interface RunInfo {
  seed: number;
  replay: string;
  runDir: string;
  nodes: string;
  slots: number;
  leaseTtlS: number;
  plan: PlannedTask[];
  faults: FaultRecord[];
  notes: string[];
  startedAtMs: number;
  submittedAtMs: number;
  doneAtMs: number;
  finishedAtMs: number;
  allTerminal: boolean;
  plannedFaults: string;
  longMinMs: number;
  samplerScans: number;
  samplerMaxGapMs: number;
}

const s = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

function counts(items: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[i] = (out[i] ?? 0) + 1;
  return out;
}

function line(rec: Record<string, number>, order?: string[]): string {
  const keys = order ? order.filter((k) => k in rec) : Object.keys(rec).sort((a, b) => rec[b] - rec[a]);
  return keys.length ? keys.map((k) => `${k} ${rec[k]}`).join(', ') : 'none';
}

export function faultSummary(faults: FaultRecord[]): { injected: Record<string, number>; skipped: Record<string, number>; errors: Record<string, number> } {
  return {
    injected: counts(faults.filter((f) => f.status === 'done').map((f) => f.kind)),
    skipped: counts(faults.filter((f) => f.status === 'skipped').map((f) => f.kind)),
    errors: counts(faults.filter((f) => f.status === 'error').map((f) => f.kind)),
  };
}

export function textReport(run: RunInfo, res: CheckResult, maxViolations = 30): string {
  const out: string[] = [];
  const st = res.stats;
  const kinds = counts(run.plan.map((p) => p.kind));
  const fs = faultSummary(run.faults);
  out.push('== loom chaos summary ==');
  out.push(`seed:        ${run.seed}   (replay: ${run.replay})`);
  out.push(`cluster:     ${run.nodes}; ${run.slots} slots each; lease TTL ${run.leaseTtlS} s; run dir ${run.runDir}`);
  out.push(
    `tasks:       ${st.tasks} submitted (${line(kinds, ['ok', 'flaky', 'fail'])}; ${run.plan.filter((p) => p.durationMs >= run.longMinMs).length} long); final states: ${line(st.states)}; ` +
      `all done ${s(run.doneAtMs - run.submittedAtMs)} after submit${run.allTerminal ? '' : ' (TIMED OUT)'}`,
  );
  out.push(
    `executions:  ${st.executions} (log + sampler), ${st.finishedExecutions} ran to their end, ${st.killedExecutions} killed; ` +
      `${st.claims} claims (${st.claimedNeverStarted} never started); sampler ${run.samplerScans} scans, max gap ${run.samplerMaxGapMs} ms`,
  );
  out.push(
    `faults:      planned ${run.plannedFaults}; injected: ${line(fs.injected, ALL_FAULT_KINDS as string[])}` +
      `${Object.keys(fs.skipped).length ? `; skipped: ${line(fs.skipped)}` : ''}${Object.keys(fs.errors).length ? `; errors: ${line(fs.errors)}` : ''}`,
  );
  for (const f of run.faults) {
    out.push(`  #${String(f.seq).padEnd(2)} +${s(f.startMs - run.startedAtMs).padStart(7)}  ${f.kind.padEnd(11)} ${f.target.padEnd(3)} ${f.status === 'done' ? '' : `[${f.status}] `}${f.note}`);
  }
  out.push(`re-executions: ${st.extraAttempts} extra attempt(s) in ${st.reExecutedTasks} task(s)`);
  out.push(`  causes:    ${line(st.causes)}`);
  out.push(`  by fault:  ${line(st.byFault)}`);
  out.push(`  repeated full runs (finished, but the result was lost with its node): ${st.completedRunsRepeated} task(s)`);
  for (const n of run.notes) out.push(`note: ${n}`);
  for (const w of res.warnings) out.push(`warning: ${w}`);
  const byRule = counts(res.violations.map((v) => v.rule));
  out.push(`violations: ${res.violations.length}${res.violations.length ? ` (${line(byRule)})` : ''}`);
  for (const v of res.violations.slice(0, maxViolations)) out.push(`  [${v.rule}]${v.task ? ` ${v.task}` : ''}: ${v.detail}`);
  if (res.violations.length > maxViolations) out.push(`  ... ${res.violations.length - maxViolations} more in ${run.runDir}/report.json`);
  out.push(`seed: ${run.seed}`);
  return out.join('\n');
}

export function jsonReport(run: RunInfo, res: CheckResult): unknown {
  const fs = faultSummary(run.faults);
  return {
    seed: run.seed,
    replay: run.replay,
    runDir: run.runDir,
    leaseTtlS: run.leaseTtlS,
    slots: run.slots,
    longMinMs: run.longMinMs,
    tasks: run.plan.length,
    allTerminal: run.allTerminal,
    durationMs: run.finishedAtMs - run.startedAtMs,
    faults: { injected: fs.injected, skipped: fs.skipped, errors: fs.errors, list: run.faults },
    stats: res.stats,
    notes: run.notes,
    warnings: res.warnings,
    violations: res.violations,
  };
}

