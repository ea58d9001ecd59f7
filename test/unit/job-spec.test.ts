import { checkGraph, expandTask, parseJobFile, submitOrder } from '../../src/core/job-spec';
import { jobPhase, progressBar } from '../../src/core/job-state';
import { jobTaskId, jobTaskIdRange } from '../../src/core/ids';
import { Job, JobState } from '../../src/gen/loom';
import { LoomError } from '../../src/core/errors';

const error = (fn: () => unknown): string => {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LoomError);
    expect((e as LoomError).code).toBe('INVALID_ARGUMENT');
    return (e as LoomError).message;
  }
  throw new Error('no error');
};

describe('job files', () => {
  it('expands a template with {{index}} and per-index overrides', () => {
    const [job] = parseJobFile(
      `name: render
count: 4
task:
  command: [render, --frame, "{{index}}"]
  env: { OUT: "/out/{{ index }}.png" }
  timeout: 30s
  retries: 2
  memory: 256M
overrides:
  "2": { command: [render, --frame, "2", --slow], timeout: 5m }
`,
      'alice',
    );
    expect(job.owner).toBe('alice');
    expect(expandTask(job, 1).command).toEqual(['render', '--frame', '1']);
    expect(expandTask(job, 1).env.OUT).toBe('/out/1.png');
    expect(expandTask(job, 1).timeoutMs).toBe(30_000);
    expect(expandTask(job, 2).command).toEqual(['render', '--frame', '2', '--slow']);
    expect(expandTask(job, 2).timeoutMs).toBe(300_000);
    expect(expandTask(job, 2).retries).toBe(2);
    expect(expandTask(job, 3).resources!.memoryBytes).toBe(256 * 1024 * 1024);
  });

  it('reads retry backoff', () => {
    const [job] = parseJobFile('name: b\ntask: {command: [x], retries: 3, backoff: {delay: 2s, kind: exponential}}', 'me');
    expect(expandTask(job, 0)).toMatchObject({ retries: 3, backoffMs: 2000, backoffExponential: true });
  });

  it('accepts JSON and a string command (run by sh -c)', () => {
    const [job] = parseJobFile('{"name":"j","task":{"command":"echo hi > /tmp/x"}}', 'me');
    expect(job.count).toBe(1);
    expect(expandTask(job, 0).command).toEqual(['sh', '-c', 'echo hi > /tmp/x']);
  });

  it('rejects an invalid file whole, with the field path', () => {
    expect(error(() => parseJobFile('name: a\ncount: 0\ntask: {command: [ls]}', 'me'))).toMatch(/count: /);
    expect(error(() => parseJobFile('name: a\ntask: {command: [ls], timeout: soon}', 'me'))).toMatch(/task\.timeout: invalid duration/);
    expect(error(() => parseJobFile('name: a\ntask: {command: [ls], bogus: 1}', 'me'))).toMatch(/task: Unrecognized key/);
    expect(error(() => parseJobFile('name: "bad name"\ntask: {command: [ls]}', 'me'))).toMatch(/name: /);
    expect(error(() => parseJobFile('name: a\ncount: 2\ntask: {command: [ls]}\noverrides: {"5": {retries: 1}}', 'me'))).toMatch(/overrides\.5: index out of range/);
    expect(error(() => parseJobFile(': : :\n  - [', 'me'))).toMatch(/not valid YAML/);
    // A bare YAML true is a boolean: the message says what a command is, at the field's path, in a file of several jobs too.
    expect(error(() => parseJobFile('jobs:\n  - name: a\n    count: 3\n    task: {command: [true]}', 'me'))).toMatch(/^invalid job file: jobs\.0\.task\.command: expected a command: .* \("true"\)/);
    expect(error(() => parseJobFile('name: a\ntask: {command: 5}', 'me'))).toMatch(/task\.command: expected a command/);
    expect(error(() => parseJobFile('jobs:\n  - name: a\n    task: {command: [ls], bogus: 1}', 'me'))).toMatch(/jobs\.0\.task: Unrecognized key/);
  });

  it('checks dependencies: unknown names, self, cycles; orders a file', () => {
    const file = (deps: string) => `jobs:\n  - {name: a, task: {command: [x]}${deps}}\n  - {name: b, task: {command: [x]}, after: [a]}\n  - {name: c, task: {command: [x]}, after: [b]}\n`;
    expect(submitOrder(parseJobFile(file(''), 'me')).map((j) => j.name)).toEqual(['a', 'b', 'c']);
    expect(error(() => parseJobFile(file(', after: [c]'), 'me'))).toMatch(/dependency cycle: a -> c -> b -> a|dependency cycle/);
    expect(error(() => checkGraph(parseJobFile(file(', after: [zz]'), 'me'), new Set()))).toMatch(/unknown job "zz"/);
    expect(error(() => parseJobFile(file(', after: [a]'), 'me'))).toMatch(/depends on itself/);
    expect(parseJobFile('name: b\nafter: [old]\ntask: {command: [x]}', 'me')[0].after).toEqual(['old']);
    expect(() => checkGraph([{ ...parseJobFile('name: b\ntask: {command: [x]}', 'me')[0], after: ['old'] }], new Set(['old']))).not.toThrow();
    expect(() => checkGraph(parseJobFile('name: q\ntask: {command: [x]}', 'me'), new Set())).not.toThrow();
  });
});

describe('job ids and state', () => {
  it('derives contiguous task ids in index order', () => {
    const job = '01a2b3c4-d5e6-7f00-8123-456789abcdef';
    const ids = [0, 1, 255, 99999].map((i) => jobTaskId(job, i));
    expect([...ids].sort()).toEqual(ids);
    const [lo, hi] = jobTaskIdRange(job);
    for (const id of ids) expect(id >= lo && id < hi).toBe(true);
    expect(ids[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  it('derives the phase from the record and counts', () => {
    const j = (state: JobState) => Job.fromPartial({ state });
    const c = (x: object) => ({ queued: 0, running: 0, completed: 0, failed: 0, cancelled: 0, lost: 0, blocked: 0, ...x });
    expect(jobPhase(j(JobState.BLOCKED), c({ blocked: 3 }))).toBe('pending');
    expect(jobPhase(j(JobState.ACTIVE), c({ queued: 3 }))).toBe('pending');
    expect(jobPhase(j(JobState.ACTIVE), c({ running: 1, queued: 2 }))).toBe('running');
    expect(jobPhase(j(JobState.ACTIVE), c({ completed: 1, queued: 2 }))).toBe('running');
    expect(jobPhase(j(JobState.JOB_FAILED), c({}))).toBe('failed');
    expect(jobPhase(j(JobState.KILLED), c({}))).toBe('killed');
    expect(progressBar(5, 10, 10)).toBe('[#####.....] 50% 5/10');
  });
});
