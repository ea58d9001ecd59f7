/**
 * `npm run chaos -- --self-test`: proves the checker can fail. Feeds it a
 * synthetic store, log, sampler record and fault list in which specific
 * violations are planted (a task completed twice, overlapping executions,
 * a stuck task, a bad index, an execution loom did not record, a result for
 * a killed run, an unexplained restart, a process outliving its paused node
 * or its cut-off node or its partitioned member node, a cut-off node that kept its lease, an orphan, a torn
 * log line) next to control tasks that are correct, including
 * a correctly re-executed one. Passes only if every planted violation is
 * reported under its rule and the controls produce none.
 */
import { Attempt, Task, TaskState } from '../../src/gen/loom';
import { check, CheckInput, expectedStatusKey, StoreKv, SubmittedTask } from './checker';
import { FaultRecord } from './faults';
import { ConcurrentSighting, Observation } from './sampler';
import { parseLog, PlannedTask, TaskKind } from './tasks';

const T = 1_700_000_000_000;
const TTL = 4000;

function uuid(n: number): string {
  return `0190aaaa-0000-7000-8000-${n.toString(16).padStart(12, '0')}`;
}

function record(id: string, state: TaskState, node: string, history: Attempt[], extra: Partial<Task> = {}): Task {
  const last = history[history.length - 1];
  const terminal = state !== TaskState.QUEUED && state !== TaskState.RUNNING;
  return Task.fromPartial({
    id,
    spec: { name: id, command: ['sh'], env: {}, cwd: '', timeoutMs: 0, retries: 0, priority: 100, restartOnNodeFailure: true },
    state,
    node,
    lease: state === TaskState.RUNNING ? '42' : '',
    attempt: history.length,
    submittedAtMs: T - 100,
    startedAtMs: last?.startedAtMs ?? 0,
    finishedAtMs: terminal ? last?.finishedAtMs ?? 0 : 0,
    exitCode: undefined,
    signal: '',
    reason: '',
    cancelRequested: false,
    owner: '',
    history: state === TaskState.RUNNING ? history.slice(0, -1) : history,
    notBeforeMs: 0,
    ...extra,
  });
}

const at = (number: number, node: string, start: number, end: number, outcome: string): Attempt => ({
  number,
  node,
  startedAtMs: T + start,
  finishedAtMs: T + end,
  outcome,
});

function ns(ms: number): string {
  return `${Math.round((T + ms) * 1e6)}`;
}

interface Case {
  name: string;
  kind: TaskKind;
  task: Task;
  log: string[];
  /** Rules that must be reported for this task ([] = control: none). */
  expect: string[];
  extraKeys?: string[];
  noStatusKey?: boolean;
}

export function buildSelfTestInput(): { input: CheckInput; cases: Case[]; globalExpect: string[] } {
  const cases: Case[] = [];
  const add = (name: string, kind: TaskKind, expect: string[], make: (id: string) => { task: Task; log: [number, string, number, number, string, number?][] }, opts: Partial<Case> = {}) => {
    const id = uuid(cases.length + 1);
    const { task, log } = make(id);
    cases.push({
      name,
      kind,
      task,
      expect,
      log: log.map(([attempt, node, pid, ms, what, code]) => `${id} ${attempt} ${node} ${what} ${ns(ms)} ${pid}${what === 'end' ? ` ${code ?? 0}` : ''}`),
      ...opts,
    });
  };

  // Controls.
  add('control: ran once', 'ok', [], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n1', [at(1, 'n1', 0, 1000, 'exit 0')]),
    log: [[1, 'n1', 100, 10, 'start'], [1, 'n1', 100, 900, 'end', 0]],
  }));
  add('control: node lost, re-run after the requeue', 'ok', [], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n3', [at(1, 'n2', 0, 5000, 'node lost'), at(2, 'n3', 5100, 6000, 'exit 0')]),
    log: [[1, 'n2', 101, 10, 'start'], [2, 'n3', 102, 5150, 'start'], [2, 'n3', 102, 5900, 'end', 0]],
  }));
  add('control: flaky, retried', 'flaky', [], (id) => ({
    task: record(id, TaskState.COMPLETED, 'w1', [at(1, 'w1', 0, 500, 'exit 3'), at(2, 'w1', 600, 1200, 'exit 0')]),
    log: [[1, 'w1', 103, 10, 'start'], [1, 'w1', 103, 450, 'end', 3], [2, 'w1', 104, 650, 'start'], [2, 'w1', 104, 1100, 'end', 0]],
  }));
  add('control: fenced after it finished (result lost), ran again', 'ok', [], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n1', [at(1, 'w2', 0, 7000, 'node w2 fenced'), at(2, 'n1', 7100, 8000, 'exit 0')]),
    log: [[1, 'w2', 105, 10, 'start'], [1, 'w2', 105, 300, 'end', 0], [2, 'n1', 106, 7200, 'start'], [2, 'n1', 106, 7900, 'end', 0]],
  }));

  add('control: claim whose reply an etcd error lost, handed back unstarted', 'ok', [], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n2', [at(1, 'w1', 0, 12_000, 'claim outcome lost in an etcd error; requeued'), at(2, 'n2', 12_100, 13_000, 'exit 0')]),
    log: [[2, 'n2', 107, 12_150, 'start'], [2, 'n2', 107, 12_900, 'end', 0]],
  }));

  // Planted violations.
  add('completed twice', 'ok', ['completed-twice'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n2', [at(1, 'n1', 0, 1000, 'exit 0'), at(2, 'n2', 2000, 3000, 'exit 0')]),
    log: [[1, 'n1', 200, 10, 'start'], [1, 'n1', 200, 900, 'end', 0], [2, 'n2', 201, 2010, 'start'], [2, 'n2', 201, 2900, 'end', 0]],
  }));
  add('killed copy overlaps its successor (no end line; recorded end after the next start)', 'ok', ['overlap'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n2', [at(1, 'n1', 0, 5000, 'node lost'), at(2, 'n2', 2900, 3600, 'exit 0')]),
    log: [[1, 'n1', 202, 10, 'start'], [2, 'n2', 203, 3000, 'start'], [2, 'n2', 203, 3500, 'end', 0]],
  }));
  add('old copy ran to its end after the new copy started', 'ok', ['overlap'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n2', [at(1, 'n1', 0, 1000, 'node lost'), at(2, 'n2', 1400, 2600, 'exit 0')]),
    log: [[1, 'n1', 204, 10, 'start'], [2, 'n2', 205, 1500, 'start'], [1, 'n1', 204, 2000, 'end', 0], [2, 'n2', 205, 2500, 'end', 0]],
  }));
  add('stuck running', 'ok', ['stuck'], (id) => ({
    task: record(id, TaskState.RUNNING, 'n1', [at(1, 'n1', 0, 0, '')]),
    log: [[1, 'n1', 206, 10, 'start']],
  }));
  add('two index keys', 'ok', ['index'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n1', [at(1, 'n1', 0, 1000, 'exit 0')]),
    log: [[1, 'n1', 207, 10, 'start'], [1, 'n1', 207, 900, 'end', 0]],
  }), { extraKeys: [`/task/status/queued/899/${uuid(cases.length + 1)}`] });
  add('no index key', 'ok', ['index'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n1', [at(1, 'n1', 0, 1000, 'exit 0')]),
    log: [[1, 'n1', 208, 10, 'start'], [1, 'n1', 208, 900, 'end', 0]],
  }), { noStatusKey: true });
  add('execution on a node the record does not name', 'ok', ['execution-unrecorded'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n1', [at(1, 'n1', 0, 1000, 'exit 0')]),
    log: [[1, 'n1', 209, 10, 'start'], [1, 'n1', 209, 900, 'end', 0], [1, 'n3', 210, 20, 'start']],
  }));
  add('result written for a killed run', 'ok', ['outcome', 'state'], (id) => ({
    task: record(id, TaskState.FAILED, 'w1', [at(1, 'w1', 0, 1000, 'killed by SIGKILL')], { signal: 'SIGKILL' }),
    log: [[1, 'w1', 211, 10, 'start']],
  }));
  add('restart without a node loss or retry', 'ok', ['unexplained-restart'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n2', [at(1, 'n1', 0, 1000, 'timeout after 5 ms'), at(2, 'n2', 1100, 2000, 'exit 0')]),
    log: [[1, 'n1', 212, 10, 'start'], [2, 'n2', 213, 1200, 'start'], [2, 'n2', 213, 1900, 'end', 0]],
  }));
  add('claim handed back as never started, but it ran', 'ok', ['unexplained-restart'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n2', [at(1, 'w1', 0, 12_000, 'claim outcome lost in an etcd error; requeued'), at(2, 'n2', 12_100, 13_000, 'exit 0')]),
    log: [[1, 'w1', 230, 10, 'start'], [1, 'w1', 230, 900, 'end', 0], [2, 'n2', 231, 12_150, 'start'], [2, 'n2', 231, 12_900, 'end', 0]],
  }));
  add('two copies seen alive at once by the sampler', 'ok', ['overlap'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n2', [at(1, 'n1', 0, 1000, 'node lost'), at(2, 'n2', 1100, 2000, 'exit 0')]),
    log: [[1, 'n1', 214, 10, 'start'], [2, 'n2', 215, 1200, 'start'], [2, 'n2', 215, 1900, 'end', 0]],
  }));
  add('copy outlived its paused node', 'ok', ['outlived-node'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n1', [at(1, 'n2', 0, 20_000, 'node lost'), at(2, 'n1', 20_100, 21_000, 'exit 0')]),
    log: [[1, 'n2', 216, 10, 'start'], [1, 'n2', 216, 100 + TTL + 500, 'end', 0], [2, 'n1', 217, 20_200, 'start'], [2, 'n1', 217, 20_900, 'end', 0]],
  }));
  // w2 is cut off from etcd at T+50 s (fault #2 below); its copy lives on past TTL.
  add('copy outlived its cut-off node', 'ok', ['outlived-node'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n1', [at(1, 'w2', 49_000, 55_000, 'node lost'), at(2, 'n1', 55_100, 56_000, 'exit 0')]),
    log: [[1, 'w2', 224, 49_010, 'start'], [1, 'w2', 224, 50_000 + TTL + 500, 'end', 0], [2, 'n1', 225, 55_200, 'start'], [2, 'n1', 225, 55_900, 'end', 0]],
  }));
  // n3 (node and etcd member) is cut off from the rest at T+70 s (fault #3); its copy lives on past TTL.
  add('copy outlived its partitioned member node', 'ok', ['outlived-node'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n1', [at(1, 'n3', 69_000, 75_000, 'node lost'), at(2, 'n1', 75_100, 76_000, 'exit 0')]),
    log: [[1, 'n3', 226, 69_010, 'start'], [1, 'n3', 226, 70_000 + TTL + 500, 'end', 0], [2, 'n1', 227, 75_200, 'start'], [2, 'n1', 227, 75_900, 'end', 0]],
  }));
  add('a node started an attempt after it was requeued (stale claim)', 'ok', ['after-recorded-end'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n3', [at(1, 'n2', 0, 5000, 'node lost'), at(2, 'n3', 5100, 6000, 'exit 0')]),
    log: [[2, 'n3', 220, 5150, 'start'], [2, 'n3', 220, 5900, 'end', 0], [1, 'n2', 221, 9000, 'start']],
  }));
  add('a killed copy seen alive after loom recorded it over', 'ok', ['after-recorded-end'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n3', [at(1, 'n2', 0, 5000, 'node lost'), at(2, 'n3', 9100, 9900, 'exit 0')]),
    log: [[1, 'n2', 222, 10, 'start'], [2, 'n3', 223, 9150, 'start'], [2, 'n3', 223, 9800, 'end', 0]],
  }));
  add('a run the store never recorded after completion', 'ok', ['completed-twice', 'execution-unrecorded'], (id) => ({
    task: record(id, TaskState.COMPLETED, 'n1', [at(1, 'n1', 0, 1000, 'exit 0')]),
    log: [[1, 'n1', 218, 10, 'start'], [1, 'n1', 218, 900, 'end', 0], [2, 'w2', 219, 3000, 'start'], [2, 'w2', 219, 3500, 'end', 0]],
  }));

  const kvs: StoreKv[] = [];
  const tasks: SubmittedTask[] = [];
  for (const c of cases) {
    kvs.push({ key: `/task/${c.task.id}`, value: Buffer.from(Task.encode(c.task).finish()), lease: '0' });
    if (!c.noStatusKey) kvs.push({ key: expectedStatusKey(c.task), value: Buffer.from(c.task.state === TaskState.RUNNING ? '42' : ''), lease: '0' });
    for (const k of c.extraKeys ?? []) kvs.push({ key: k, value: Buffer.alloc(0), lease: '0' });
    const plan: PlannedTask = { index: tasks.length, name: c.name, kind: c.kind, durationMs: 500, retries: c.kind === 'flaky' ? 2 : c.kind === 'fail' ? 1 : 0 };
    tasks.push({ id: c.task.id, plan });
  }
  kvs.push({ key: '/node/n1', value: Buffer.alloc(0), lease: '7' });

  const sightingCase = cases.find((c) => c.name.startsWith('two copies seen'))!;
  const concurrent: ConcurrentSighting[] = [
    { id: sightingCase.task.id, atMs: T + 1300, executions: [{ attempt: 1, node: 'n1', pid: 214 }, { attempt: 2, node: 'n2', pid: 215 }] },
  ];
  const aliveCase = cases.find((c) => c.name.startsWith('a killed copy seen alive'))!;
  const observations: Observation[] = [
    { id: sightingCase.task.id, attempt: 1, node: 'n1', pids: [214], firstSeenMs: T + 20, lastSeenMs: T + 1300 },
    { id: aliveCase.task.id, attempt: 1, node: 'n2', pids: [222], firstSeenMs: T + 20, lastSeenMs: T + 6000 },
  ];
  const pausedCase = cases.find((c) => c.name.startsWith('copy outlived'))!;
  const faults: FaultRecord[] = [
    {
      seq: 1, kind: 'pause-node', target: 'n2', gapMs: 0, holdMs: 2 * TTL, status: 'done',
      startMs: T + 100, endMs: T + 100 + 2 * TTL, recoveredMs: T + 200 + 2 * TTL, note: 'synthetic', leaseBefore: '1', leaseAfter: '2',
    },
    {
      // Still under its old lease after the heal: a recovery violation.
      seq: 2, kind: 'partition-node', mode: 'drop', target: 'w2', gapMs: 0, holdMs: 2 * TTL, status: 'done',
      startMs: T + 50_000, endMs: T + 50_000 + 2 * TTL, recoveredMs: T + 50_100 + 2 * TTL, note: 'synthetic', leaseBefore: '3', leaseAfter: '3',
    },
    {
      seq: 3, kind: 'partition-member', mode: 'reset', target: 'n3', gapMs: 0, holdMs: 2 * TTL, status: 'done',
      startMs: T + 70_000, endMs: T + 70_000 + 2 * TTL, recoveredMs: T + 70_100 + 2 * TTL, note: 'synthetic', leaseBefore: '5', leaseAfter: '6',
    },
  ];
  const logText = [...cases.flatMap((c) => c.log), 'torn line 0190aaaa-0000 1 n1 sta'].join('\n') + '\n';
  const input: CheckInput = {
    kvs,
    log: parseLog(logText),
    tasks,
    observations,
    concurrent,
    leftovers: [{ pid: 999, id: pausedCase.task.id, attempt: 1, node: 'n2' }],
    faults,
    leaseTtlMs: TTL,
  };
  return { input, cases, globalExpect: ['log', 'orphan', 'recovery'] };
}

export function selfTest(): number {
  const { input, cases, globalExpect } = buildSelfTestInput();
  const res = check(input);
  let ok = true;
  const out: string[] = ['chaos checker self-test:'];
  for (const c of cases) {
    const got: string[] = [...new Set(res.violations.filter((v) => v.task === c.task.id).map((v) => v.rule as string))];
    const missing = c.expect.filter((r) => !got.includes(r));
    const unexpected = c.expect.length === 0 ? got : [];
    const pass = missing.length === 0 && unexpected.length === 0;
    ok &&= pass;
    out.push(
      `  ${pass ? 'ok  ' : 'FAIL'} ${c.name}: expected [${c.expect.join(', ') || 'no violation'}], reported [${got.join(', ') || 'none'}]` +
        (missing.length ? `; MISSING ${missing.join(', ')}` : '') +
        (unexpected.length ? `; UNEXPECTED ${unexpected.join(', ')}` : ''),
    );
  }
  const allRules = new Set(res.violations.map((v) => v.rule));
  for (const r of globalExpect) {
    const pass = allRules.has(r as never);
    ok &&= pass;
    out.push(`  ${pass ? 'ok  ' : 'FAIL'} ${r} violation reported`);
  }
  out.push(`  (${res.violations.length} violations reported in all; e.g.:`);
  for (const v of res.violations.filter((x) => x.rule === 'overlap').slice(0, 3)) out.push(`     [${v.rule}] ${v.detail}`);
  out.push('  )');
  out.push(ok ? 'self-test PASSED: the checker reports every planted violation and none for the controls' : 'self-test FAILED');
  process.stdout.write(out.join('\n') + '\n');
  return ok ? 0 : 1;
}
