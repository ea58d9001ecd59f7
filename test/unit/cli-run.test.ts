/**
 * The CLI against a fake in-process loom node (a grpc-js server with
 * scripted answers): output streaming, exit statuses, error mapping,
 * resuming a broken log stream, Ctrl-C.
 */
import * as grpc from '@grpc/grpc-js';
import { PassThrough } from 'stream';
import { ERROR_CODES, ErrorCode } from '../../src/core/errors';
import {
  LogChunk,
  LogStream,
  LoomServer,
  LoomService,
  NodeInfo,
  Task,
  TaskSpec,
  TaskState,
} from '../../src/gen/loom';
import { runCli } from '../../src/client/cli';
import { Resume } from '../../src/client/attach';

type Impl = Partial<LoomServer>;

function loomError(code: ErrorCode, message: string): grpc.ServiceError {
  const metadata = new grpc.Metadata();
  metadata.set('loom-code', code);
  return Object.assign(new Error(message), { code: ERROR_CODES[code].grpc, details: message, metadata });
}

const unimplemented: LoomServer = {
  submit: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  get: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  list: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  cancel: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  cancelQueued: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  wait: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  logs: (call) => call.emit('error', loomError('INTERNAL', 'not scripted')),
  run: (call) => call.emit('error', loomError('INTERNAL', 'not scripted')),
  nodes: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  drain: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  members: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  removeMember: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  submitJob: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  getJob: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  listJobs: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
  cancelJob: (_c, cb) => cb(loomError('INTERNAL', 'not scripted'), null),
};

let server: grpc.Server | undefined;

async function fakeNode(impl: Impl): Promise<string> {
  server = new grpc.Server();
  server.addService(LoomService, { ...unimplemented, ...impl } as LoomServer);
  const port = await new Promise<number>((resolve, reject) =>
    server!.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return `127.0.0.1:${port}`;
}

afterEach(() => {
  server?.forceShutdown();
  server = undefined;
});

function terminal(id: string, over: Partial<Task> = {}): Task {
  return Task.fromPartial({ id, state: TaskState.COMPLETED, exitCode: 0, node: 'n1', attempt: 1, ...over });
}

function capture() {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (d: Buffer) => out.push(d));
  stderr.on('data', (d: Buffer) => err.push(d));
  let signal: (() => void) | undefined;
  return {
    io: { stdout, stderr, env: {}, isTTY: false, onSignal: (fn: () => void) => (signal = fn) },
    stdout: () => Buffer.concat(out).toString('latin1'),
    stderr: () => Buffer.concat(err).toString(),
    interrupt: () => signal?.(),
  };
}

const chunk = (stream: LogStream, data: string, notice = '', attempt = 0): LogChunk => ({
  stream,
  data: Buffer.from(data, 'latin1'),
  notice,
  attempt,
});

describe('resuming a follow (Resume)', () => {
  const text = (c: LogChunk | undefined) => (c ? Buffer.from(c.data).toString('latin1') : undefined);

  it('skips what was written when the replay starts at the same attempt', () => {
    const r = new Resume();
    expect(text(r.fresh(chunk(LogStream.STDOUT, 'abc', '', 1)))).toBe('abc');
    r.restart();
    expect(r.fresh(chunk(LogStream.STDOUT, 'ab', '', 1))).toBeUndefined();
    expect(text(r.fresh(chunk(LogStream.STDOUT, 'cde', '', 1)))).toBe('de');
  });

  it('shows a later attempt in full even when it starts with as many bytes as the last one wrote', () => {
    const r = new Resume();
    expect(text(r.fresh(chunk(LogStream.STDOUT, 'attempt 1\n', '', 1)))).toBe('attempt 1\n');
    // The node died; the follow resumes through another node, at attempt 2.
    r.restart();
    expect(text(r.fresh(chunk(LogStream.STDOUT, 'attempt 2\n', '', 2)))).toBe('attempt 2\n');
    // And a replay of both after another reconnect shows nothing twice.
    r.restart();
    expect(r.fresh(chunk(LogStream.STDOUT, 'attempt 1\n', '', 1))).toBeUndefined();
    expect(r.fresh(chunk(LogStream.STDOUT, 'attempt 2\n', '', 2))).toBeUndefined();
  });
});

describe('loom run (attached)', () => {
  it('submits the spec, streams raw output and exits with the task status', async () => {
    let submitted: TaskSpec[] = [];
    const addr = await fakeNode({
      submit: (call, cb) => {
        submitted = call.request.tasks;
        cb(null, { ids: ['t1'] });
      },
      logs: (call) => {
        expect(call.request).toMatchObject({ id: 't1', follow: true });
        call.write(chunk(LogStream.STDOUT, 'out \xff\n'));
        call.write(chunk(LogStream.STDERR, 'err\n'));
        call.write(chunk(LogStream.STDOUT, '', 'only the tail survives'));
        call.end();
      },
      wait: (call, cb) => cb(null, terminal(call.request.id, { state: TaskState.FAILED, exitCode: 3 })),
    });
    const t = capture();
    const code = await runCli(['-N', addr, 'run', '--timeout', '5s', 'sh', '-c', 'exit 3'], t.io);
    expect(code).toBe(3);
    expect(submitted).toHaveLength(1);
    expect(submitted[0]).toMatchObject({ command: ['sh', '-c', 'exit 3'], timeoutMs: 5000 });
    expect(t.stdout()).toBe('out \xff\n');
    expect(t.stderr()).toBe('err\nloom: only the tail survives\n');
  });

  it('--detach prints the id; --json prints the final task', async () => {
    const addr = await fakeNode({
      submit: (_c, cb) => cb(null, { ids: ['t2'] }),
      wait: (call, cb) => cb(null, terminal(call.request.id, { state: TaskState.FAILED, signal: 'SIGKILL' })),
    });
    let t = capture();
    expect(await runCli(['-N', addr, 'run', '-d', 'true'], t.io)).toBe(0);
    expect(t.stdout()).toBe('t2\n');
    t = capture();
    expect(await runCli(['-N', addr, '--json', 'run', '-d', 'true'], t.io)).toBe(0);
    expect(JSON.parse(t.stdout())).toEqual({ id: 't2' });
    t = capture();
    expect(await runCli(['-N', addr, 'run', '--json', 'sh', '-c', 'kill -9 $$'], t.io)).toBe(137);
    expect(JSON.parse(t.stdout())).toMatchObject({ id: 't2', state: 'FAILED', signal: 'SIGKILL' });
  });

  it('resumes a broken log stream without repeating output', async () => {
    let calls = 0;
    const addr = await fakeNode({
      submit: (_c, cb) => cb(null, { ids: ['t3'] }),
      logs: (call) => {
        calls++;
        call.write(chunk(LogStream.STDOUT, 'abc'));
        if (calls === 1) {
          // a broken connection: an error without loom metadata
          setTimeout(() => call.emit('error', Object.assign(new Error('gone'), { code: grpc.status.UNAVAILABLE, details: 'gone' })), 20);
          return;
        }
        call.write(chunk(LogStream.STDERR, 'E'));
        call.write(chunk(LogStream.STDOUT, 'def'));
        call.end();
      },
      wait: (call, cb) => cb(null, terminal(call.request.id)),
    });
    const t = capture();
    expect(await runCli(['-N', addr, 'run', 'x'], t.io)).toBe(0);
    expect(calls).toBe(2);
    expect(t.stdout()).toBe('abcdef');
    expect(t.stderr()).toMatch(/^loom: cannot reach loom node at .*; retrying in 0.25s \(1\/5\)\nE$/);
  });

  it('Ctrl-C cancels the task and keeps streaming once the cancel reached the node; a second one exits at once', async () => {
    let cancelled = 0;
    let finish: (() => void) | undefined;
    const addr = await fakeNode({
      submit: (_c, cb) => cb(null, { ids: ['t4'] }),
      cancel: (call, cb) => {
        cancelled++;
        cb(null, Task.fromPartial({ id: call.request.id, state: TaskState.RUNNING, cancelRequested: true }));
        setTimeout(() => finish?.(), 20);
      },
      logs: (call) => {
        call.write(chunk(LogStream.STDOUT, 'working\n'));
        finish = () => {
          call.write(chunk(LogStream.STDOUT, 'bye\n'));
          call.end();
        };
      },
      wait: (call, cb) => cb(null, terminal(call.request.id, { state: TaskState.CANCELLED, exitCode: undefined })),
    });
    const t = capture();
    const done = runCli(['-N', addr, 'run', 'sleep', '100'], t.io);
    while (!t.stdout().includes('working')) await new Promise((r) => setTimeout(r, 5));
    t.interrupt();
    expect(await done).toBe(130);
    expect(cancelled).toBe(1);
    expect(t.stdout()).toBe('working\nbye\n');
    expect(t.stderr()).toMatch(/cancelling task t4/);

    // a second interrupt gives up waiting
    finish = undefined;
    const t2 = capture();
    const done2 = runCli(['-N', addr, 'run', 'sleep', '100'], t2.io);
    while (!t2.stdout().includes('working')) await new Promise((r) => setTimeout(r, 5));
    t2.interrupt();
    t2.interrupt();
    expect(await done2).toBe(130);
    expect(t2.stderr()).toMatch(/interrupt again: exiting without waiting for the cancel; task t4 may still run/);
  });
});

describe('other commands', () => {
  it('maps loom-code errors to exit statuses', async () => {
    const addr = await fakeNode({
      get: (call, cb) => cb(loomError('NOT_FOUND', `task ${call.request.id} not found`), null),
      cancel: (_c, cb) => cb(loomError('INVALID_STATE', 'task t1 is already completed'), null),
    });
    let t = capture();
    expect(await runCli(['-N', addr, 'status', 'nope'], t.io)).toBe(3);
    expect(t.stderr()).toBe('loom: task nope not found\n');
    t = capture();
    expect(await runCli(['-N', addr, 'cancel', 't1'], t.io)).toBe(4);
    expect(t.stderr()).toBe('loom: task t1 is already completed\n');
  });

  it('status, wait, cancel print the task', async () => {
    const task = terminal('t5', {
      spec: TaskSpec.fromPartial({ name: 'job', command: ['sh', '-c', 'exit 7'] }),
      state: TaskState.FAILED,
      exitCode: 7,
      reason: 'exit 7',
    });
    const addr = await fakeNode({
      get: (_c, cb) => cb(null, task),
      wait: (_c, cb) => cb(null, task),
      cancel: (_c, cb) => cb(null, Task.fromPartial({ id: 't5', state: TaskState.CANCELLED })),
    });
    let t = capture();
    expect(await runCli(['-N', addr, 'status', 't5'], t.io)).toBe(0);
    expect(t.stdout()).toMatch(/^id:\s+t5$/m);
    expect(t.stdout()).toMatch(/^state:\s+failed \(exit 7\)$/m);
    expect(t.stdout()).toMatch(/^command:\s+sh -c 'exit 7'$/m);
    t = capture();
    expect(await runCli(['-N', addr, '--json', 'status', 't5'], t.io)).toBe(0);
    expect(JSON.parse(t.stdout())).toMatchObject({ id: 't5', exitCode: 7, spec: { name: 'job' } });
    t = capture();
    expect(await runCli(['-N', addr, 'wait', 't5'], t.io)).toBe(7);
    expect(t.stdout()).toBe('failed (exit 7)\n');
    t = capture();
    expect(await runCli(['-N', addr, 'cancel', 't5'], t.io)).toBe(0);
    expect(t.stdout()).toBe('t5: cancelled\n');
  });

  it('list follows pages with --all and hints at the next page otherwise', async () => {
    const requests: unknown[] = [];
    const addr = await fakeNode({
      list: (call, cb) => {
        requests.push(call.request);
        const page = call.request.pageToken === '' ? 1 : 2;
        cb(null, {
          tasks: [terminal(`id${page}`, { spec: TaskSpec.fromPartial({ command: ['echo', `p${page}`] }) })],
          nextPageToken: page === 1 ? 'tok2' : '',
        });
      },
    });
    let t = capture();
    expect(await runCli(['-N', addr, 'list', '--state', 'completed', '--node', 'n1', '--limit', '1'], t.io)).toBe(0);
    expect(requests[0]).toEqual({ state: TaskState.COMPLETED, node: 'n1', job: '', owner: '', pageSize: 1, pageToken: '' });
    expect(t.stdout()).toMatch(/^ID\s+STATE\s+NODE\s+ATTEMPT\s+EXIT\s+NAME\/COMMAND\nid1\s+completed\s+n1\s+1\s+0\s+echo p1\n$/);
    expect(t.stderr()).toMatch(/--page-token tok2/);
    t = capture();
    expect(await runCli(['-N', addr, '--json', 'list', '--all'], t.io)).toBe(0);
    const json = JSON.parse(t.stdout());
    expect(json.tasks.map((x: { id: string }) => x.id)).toEqual(['id1', 'id2']);
    expect(json.nextPageToken).toBe('');
  });

  it('logs writes raw bytes; nodes prints a table', async () => {
    const addr = await fakeNode({
      logs: (call) => {
        expect(call.request).toMatchObject({ id: 't6', follow: false });
        call.write(chunk(LogStream.STDOUT, 'hello\n'));
        call.end();
      },
      nodes: (_c, cb) =>
        cb(null, {
          nodes: [
            NodeInfo.fromPartial({ name: 'n2', address: '127.0.0.2:8080', slots: 2, running: 0, docker: true, runAs: 'pool', startedAtMs: Date.now() - 5_000 }),
            NodeInfo.fromPartial({ name: 'n1', address: '127.0.0.1:8080', slots: 4, running: 1, labels: { gpu: '1' }, runAs: 'node', startedAtMs: Date.now() - 65_000 }),
          ],
          autoscale: [{ group: 'workers', target: 1, applied: 3, hasApplied: true, leader: 'n1', observed: ['w1', 'w2', 'w3'], removing: ['w2', 'w3'], reason: 'scale down 3 → 1: at most 1 wanted for 60 s', atMs: Date.now() - 4_000 }],
        }),
    });
    let t = capture();
    expect(await runCli(['-N', addr, 'logs', 't6'], t.io)).toBe(0);
    expect(t.stdout()).toBe('hello\n');
    t = capture();
    expect(await runCli(['-N', addr, 'nodes'], t.io)).toBe(0);
    expect(t.stdout()).toMatch(/^NAME\s+ADDRESS\s+RUNNING\s+CPU%\s+LOAD\s+MEM AVAIL\s+FREE CPU\/MEM\s+LABELS\s+KINDS\s+TASKS AS\s+UPTIME\s+STATE\nn1\s+127\.0\.0\.1:8080\s+1\/4\s+-\s+-\s+-\s+-\s+gpu=1\s+command\s+NODE USER\s+1m\ds\s+ready\nn2\s+127\.0\.0\.2:8080\s+0\/2\s+-\s+-\s+-\s+-\s+-\s+command,container\s+pool\s+\d+(\.\d+)?s\s+ready\nautoscale workers: 1 node\(s\) wanted, 3 in the group, provider last accepted 3; evaluated by n1; removing w2, w3\n {2}last decision \(4(\.\d+)?s ago\): scale down 3 \S+ 1: at most 1 wanted for 60 s\n$/);
    t = capture();
    expect(await runCli(['-N', addr, 'nodes', '--json'], t.io)).toBe(0);
    expect(JSON.parse(t.stdout()).autoscale).toEqual([expect.objectContaining({ group: 'workers', target: 1, applied: 3, leader: 'n1', removing: ['w2', 'w3'] })]);
  });
});
