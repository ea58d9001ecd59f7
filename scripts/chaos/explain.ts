/**
 * Timeline of one task of a kept chaos run, for diagnosing a violation:
 *
 *   node dist/scripts/chaos/explain.js /tmp/loom-chaos-<seed>-XXXX <task-id>
 *
 * Prints the record (state, history), its log lines, the faults and every
 * node-log line that names the task, all on one clock.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Task, TaskState } from '../../src/gen/loom';
import { parseLog } from './tasks';

const t = (ms: number) => new Date(ms).toISOString().slice(11, 23);

function main(): number {
  const [dir, id] = process.argv.slice(2);
  if (!dir || !id) {
    process.stderr.write('usage: explain.js RUN_DIR TASK_ID\n');
    return 2;
  }
  const events: { at: number; text: string }[] = [];
  const store = JSON.parse(fs.readFileSync(path.join(dir, 'store.json'), 'utf8')) as { key: string; value: string }[];
  const kv = store.find((k) => k.key === `/task/${id}`);
  if (kv) {
    const rec = Task.decode(Buffer.from(kv.value, 'base64'));
    process.stdout.write(`record: ${TaskState[rec.state]}, attempt ${rec.attempt}, node ${rec.node}, reason "${rec.reason}"\n`);
    for (const h of rec.history) {
      events.push({ at: h.startedAtMs, text: `store: attempt ${h.number} claimed by ${h.node}` });
      events.push({ at: h.finishedAtMs, text: `store: attempt ${h.number} on ${h.node} recorded over: "${h.outcome}"` });
    }
  }
  for (const k of store) if (k.key.endsWith(`/${id}`) && k.key.startsWith('/task/status/')) process.stdout.write(`index key: ${k.key}\n`);
  const plan = (JSON.parse(fs.readFileSync(path.join(dir, 'tasks.json'), 'utf8')) as { id: string }[]).find((p) => p.id === id);
  process.stdout.write(`plan: ${JSON.stringify(plan)}\n`);
  for (const l of parseLog(fs.readFileSync(path.join(dir, 'tasks.log'), 'utf8')).lines) {
    if (l.id === id) events.push({ at: l.atMs, text: `log: attempt ${l.attempt} on ${l.node} ${l.kind}${l.code !== undefined ? ` (exit ${l.code})` : ''} pid ${l.pid}` });
  }
  const report = JSON.parse(fs.readFileSync(path.join(dir, 'report.json'), 'utf8')) as {
    faults: { list: { seq: number; kind: string; target: string; startMs: number; endMs: number; recoveredMs: number }[] };
    violations: { rule: string; task?: string; detail: string }[];
  };
  for (const f of report.faults.list) {
    events.push({ at: f.startMs, text: `fault #${f.seq} ${f.kind} ${f.target}: injected` });
    events.push({ at: f.endMs, text: `fault #${f.seq} ${f.kind} ${f.target}: lifted` });
  }
  for (const name of fs.readdirSync(dir)) {
    const logPath = path.join(dir, name, 'node.log');
    if (!fs.existsSync(logPath)) continue;
    for (const line of fs.readFileSync(logPath, 'utf8').split('\n')) {
      const m = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) (\S+) (.*)$/.exec(line);
      if (m && (line.includes(id) || /FENCED|rejoined|reaper fenced/.test(line))) events.push({ at: Date.parse(m[1]), text: `${m[2]}: ${m[3]}` });
    }
  }
  events.sort((a, b) => a.at - b.at);
  for (const e of events) process.stdout.write(`${t(e.at)}  ${e.text}\n`);
  for (const v of report.violations.filter((x) => x.task === id)) process.stdout.write(`violation [${v.rule}]: ${v.detail}\n`);
  return 0;
}

process.exit(main());
