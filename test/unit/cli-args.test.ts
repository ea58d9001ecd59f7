import { PassThrough } from 'stream';
import { PRIORITY_DEFAULT } from '../../src/core/spec';
import { Task, TaskState } from '../../src/gen/loom';
import { parseCommandLine, parseRunArgs, runCli, taskExitStatus } from '../../src/client/cli';
import { thrownBy } from '../support/errors';

const usageError = thrownBy;

describe('loom run argv', () => {
  it('drops a `--` right after the command', () => {
    expect(parseRunArgs(['run', 'ls', '--', '-l']).spec.command).toEqual(['ls', '-l']);
  });

  it('passes everything after the command verbatim', () => {
    expect(parseRunArgs(['run', 'sh', '-c', 'exit 3']).spec.command).toEqual(['sh', '-c', 'exit 3']);
    const r = parseRunArgs(['run', '--timeout', '5s', 'echo', '--hello']);
    expect(r.spec.timeoutMs).toBe(5000);
    expect(r.spec.command).toEqual(['echo', '--hello']);
    // loom's own flags after the command belong to the task
    const t = parseRunArgs(['run', 'x', '--timeout', '1s', '-N', 'h:1', '--json', '--help', '-d']);
    expect(t.spec.command).toEqual(['x', '--timeout', '1s', '-N', 'h:1', '--json', '--help', '-d']);
    expect(t.spec.timeoutMs).toBe(0);
    expect(t.detach).toBe(false);
    expect(t.json).toBe(false);
  });

  it('never lets a boolean flag eat a `true` / `false` command', () => {
    expect(parseRunArgs(['run', '-d', 'true'])).toMatchObject({ detach: true, spec: { command: ['true'] } });
    expect(parseRunArgs(['run', '--no-restart', 'false']).spec).toMatchObject({ restartOnNodeFailure: false, command: ['false'] });
    expect(parseRunArgs(['run', '--json', 'true']).spec.command).toEqual(['true']);
  });

  it('keeps numbers-looking arguments as written', () => {
    expect(parseRunArgs(['run', 'printf', '%s', '010', '0x10', '1e21', '-5']).spec.command).toEqual([
      'printf', '%s', '010', '0x10', '1e21', '-5',
    ]);
  });

  it('drops only the first `--` directly after the command', () => {
    expect(parseRunArgs(['run', 'echo', '--', '--']).spec.command).toEqual(['echo', '--']);
    expect(parseRunArgs(['run', 'echo', 'a', '--', 'b']).spec.command).toEqual(['echo', 'a', '--', 'b']);
    // a `--` before the command ends loom's options
    expect(parseRunArgs(['run', '--timeout', '2s', '--', '--odd-name']).spec.command).toEqual(['--odd-name']);
  });

  it('parses repeatable --env and the other options', () => {
    const r = parseRunArgs([
      '-N', '10.0.0.1:9000', 'run', '--env', 'A=1', '--env', 'B=x=y', '--env', 'C=', '--retries', '2',
      '--priority', '5', '--cwd', '/tmp', '--name', 'job', '--no-restart', '-d', '--json', 'sleep', '10',
    ]);
    expect(r.spec.env).toEqual({ A: '1', B: 'x=y', C: '' });
    expect(r.spec).toMatchObject({ retries: 2, priority: 5, cwd: '/tmp', name: 'job', restartOnNodeFailure: false });
    expect(r.spec.command).toEqual(['sleep', '10']);
    expect(r).toMatchObject({ node: '10.0.0.1:9000', detach: true, json: true });
  });

  it('uses defaults, LOOM_NODE and -N', () => {
    const d = parseRunArgs(['run', 'true']);
    expect(d.spec).toMatchObject({ timeoutMs: 0, retries: 0, priority: PRIORITY_DEFAULT, restartOnNodeFailure: true });
    expect(d.node).toBe('127.0.0.1:8080');
    expect(parseRunArgs(['run', 'true'], { LOOM_NODE: 'n1:7000' }).node).toBe('n1:7000');
    expect(parseRunArgs(['run', '-N', 'n2:7001', 'true'], { LOOM_NODE: 'n1:7000' }).node).toBe('n2:7001');
    expect(parseRunArgs(['--node=n3:7002', 'run', 'true']).node).toBe('n3:7002');
    // Several nodes, in order (the next is used when one cannot be reached).
    expect(parseRunArgs(['run', '-N', 'n1:7000, n2:7001', 'true']).node).toBe('n1:7000,n2:7001');
    expect(parseRunArgs(['run', 'true'], { LOOM_NODE: 'n1:7000,n2:7001' }).node).toBe('n1:7000,n2:7001');
  });

  it.each([
    [['run', '--timeout', 'x', 'ls'], /invalid duration "x"/],
    [['run'], /command is empty/],
    [['run', '--timeout', '1s'], /command is empty/],
    [['run', ''], /command is empty/],
    [['run', '--priority', '2000', 'ls'], /--priority "2000".*0 to 999/],
    [['run', '--priority', 'high', 'ls'], /--priority/],
    [['run', '--retries', '1.5', 'ls'], /--retries/],
    [['run', '--cpu', '0x10', 'ls'], /invalid --cpu "0x10": expected a number >= 0/],
    [['run', '--cpu', '', 'ls'], /invalid --cpu ""/],
    [['run', '--retries', '101', 'ls'], /--retries/],
    [['run', '--env', 'NOVALUE', 'ls'], /--env "NOVALUE"/],
    [['run', '--env', '1A=2', 'ls'], /env name/],
    [['run', '--bogus', 'ls'], /bogus/],
    [['run', '--timeout'], /timeout/],
    [['-N', 'no-port', 'run', 'ls'], /invalid --node "no-port"/],
    [['-N', 'h:1,no-port', 'run', 'ls'], /invalid --node "no-port"/],
    [['-N', 'h:1,,h:2', 'run', 'ls'], /invalid --node "h:1,,h:2": expected host:port, or several separated by commas/],
  ])('%j is a usage error (exit 2)', (argv, message) => {
    const err = usageError(() => parseRunArgs(argv as string[]));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(message as RegExp);
  });
});

describe('other commands', () => {
  it('parses list filters; --node after `list` is the node filter', () => {
    const l = parseCommandLine(['-N', 'h:1', 'list', '--node', 'n1', '--state', 'failed', '--limit', '5', '--all']);
    expect(l).toMatchObject({ kind: 'list', node: 'h:1', nodeFilter: 'n1', state: TaskState.FAILED, limit: 5, all: true });
    expect(parseCommandLine(['list', '-N', 'h:2', '--page-token', 'abc'])).toMatchObject({ node: 'h:2', pageToken: 'abc', nodeFilter: '', job: '', owner: '' });
    expect(parseCommandLine(['list', '--job', 'render', '--owner', 'alice'])).toMatchObject({ kind: 'list', job: 'render', owner: 'alice' });
    expect(usageError(() => parseCommandLine(['list', '--state', 'nope'])).exitCode).toBe(2);
  });

  it('parses id commands and flags', () => {
    expect(parseCommandLine(['logs', 'abc', '-f'])).toMatchObject({ kind: 'logs', id: 'abc', follow: true });
    expect(parseCommandLine(['status', 'abc', '--json'])).toMatchObject({ kind: 'status', id: 'abc', json: true });
    expect(parseCommandLine(['wait', 'abc'])).toMatchObject({ kind: 'wait', id: 'abc', json: false });
    expect(parseCommandLine(['cancel', 'abc'])).toMatchObject({ kind: 'cancel', id: 'abc' });
    expect(parseCommandLine(['cancel', '--all-queued', '--json'])).toMatchObject({ kind: 'cancelQueued', json: true });
    expect(usageError(() => parseCommandLine(['cancel', 'abc', '--all-queued'])).message).toMatch(/a task id or --all-queued, not both/);
    expect(usageError(() => parseCommandLine(['cancel'])).message).toMatch(/cancel needs a task id \(or --all-queued\)/);
    expect(parseCommandLine(['nodes'])).toMatchObject({ kind: 'nodes' });
    expect(parseCommandLine(['members', '--json'])).toMatchObject({ kind: 'members', json: true });
    expect(parseCommandLine(['members', 'remove', 'node4'])).toMatchObject({ kind: 'removeMember', member: 'node4' });
    expect(usageError(() => parseCommandLine(['members', 'remove'])).message).toMatch(/needs the member's name or hex id/);
    expect(usageError(() => parseCommandLine(['members', 'drop', 'x'])).message).toMatch(/unknown members command "drop"/);
  });

  it('reports usage errors with exit 2', () => {
    for (const argv of [[], ['bogus'], ['status'], ['status', 'a', 'b'], ['logs', 'a', '--nope']]) {
      expect(usageError(() => parseCommandLine(argv)).exitCode).toBe(2);
    }
  });

  it('shows help that mentions `loom node`', () => {
    const help = parseCommandLine(['--help']);
    expect(help.kind).toBe('output');
    if (help.kind === 'output') {
      expect(help.text).toMatch(/loom node\s+run a loom node \(see `loom node\s+--help`\)/);
      expect(help.text).toMatch(/loom run \[options\] <command> \[args\.\.\]/);
    }
    const run = parseCommandLine(['run', '--help']);
    expect(run.kind === 'output' && run.text).toMatch(/--timeout/);
  });
});

describe('exit status of a finished task', () => {
  const task = (over: Partial<Task>): Task => Task.fromPartial({ id: 't', state: TaskState.FAILED, ...over });

  it.each([
    ['exit 0', { state: TaskState.COMPLETED, exitCode: 0 }, 0],
    ['exit 7', { exitCode: 7 }, 7],
    ['exit 1', { exitCode: 1 }, 1],
    ['SIGKILL', { signal: 'SIGKILL', reason: 'signal SIGKILL' }, 137],
    ['SIGTERM', { signal: 'SIGTERM' }, 143],
    ['timeout', { signal: 'SIGTERM', reason: 'timeout after 5s' }, 124],
    ['timeout outcome', { history: [{ number: 1, node: 'a', startedAtMs: 1, finishedAtMs: 2, outcome: 'timeout' }] }, 124],
    ['cancelled', { state: TaskState.CANCELLED, signal: 'SIGTERM' }, 130],
    ['lost', { state: TaskState.LOST, reason: 'node lost' }, 5],
    ['not found', { reason: 'spawn no-such-program: command not found' }, 127],
    ['ENOENT', { reason: 'spawn x ENOENT' }, 127],
    ['runner error', { reason: 'spawn x EACCES: permission denied' }, 126],
  ])('%s', (_name, over, status) => {
    expect(taskExitStatus(task(over as Partial<Task>))).toBe(status);
  });
});

describe('runCli', () => {
  function io() {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    stdout.on('data', (d: Buffer) => out.push(d));
    stderr.on('data', (d: Buffer) => err.push(d));
    return {
      io: { stdout, stderr, env: {}, isTTY: false },
      stdout: () => Buffer.concat(out).toString(),
      stderr: () => Buffer.concat(err).toString(),
    };
  }

  it('exits 5 and names the address when the node is unreachable', async () => {
    for (const argv of [['-N', '127.0.0.1:1', 'nodes'], ['-N', '127.0.0.1:1', 'run', 'echo', 'hi']]) {
      const t = io();
      const code = await runCli(argv, t.io);
      expect(code).toBe(5);
      expect(t.stderr()).toMatch(/^loom: cannot reach loom node at 127\.0\.0\.1:1: /);
      expect(t.stderr()).not.toMatch(/\n\s+at /);
      expect(t.stdout()).toBe('');
    }
  });

  it('exits 2 on usage errors without contacting a node', async () => {
    const t = io();
    expect(await runCli(['-N', '127.0.0.1:1', 'run', '--priority', '2000', 'ls'], t.io)).toBe(2);
    expect(t.stderr()).toMatch(/^loom: invalid --priority/);
  });

  it('prints help to stdout with exit 0', async () => {
    const t = io();
    expect(await runCli(['--help'], t.io)).toBe(0);
    expect(t.stdout()).toMatch(/Commands:/);
  });
});

describe('loom job argv', () => {
  const parse = (args: string) => parseCommandLine(args.split(' '), {});
  it('parses every verb with its own options', () => {
    expect(parse('job submit big.yaml --wait')).toMatchObject({ kind: 'job', job: { verb: 'submit', file: 'big.yaml', wait: true } });
    expect(parse('job status big -w')).toMatchObject({ job: { verb: 'status', job: 'big', watch: true } });
    expect(parse('job list --limit 5')).toMatchObject({ job: { verb: 'list', limit: 5 } });
    expect(parse('job cancel big')).toMatchObject({ job: { verb: 'cancel', job: 'big' } });
    expect(parse('job logs big --index 3 -f')).toMatchObject({ job: { verb: 'logs', job: 'big', index: 3, follow: true } });
  });
  it('takes -N before or after `job`', () => {
    expect(parse('-N h:1 job submit f.yaml')).toMatchObject({ node: 'h:1', job: { verb: 'submit', file: 'f.yaml' } });
    expect(parse('job -N h:2 status x --json')).toMatchObject({ node: 'h:2', json: true, job: { verb: 'status', job: 'x' } });
  });
  it('rejects a missing or unknown verb and options of another verb', () => {
    expect(usageError(() => parse('job')).message).toMatch(/missing job command/);
    expect(usageError(() => parse('job frob x')).message).toMatch(/unknown job command "frob"/);
    expect(usageError(() => parse('job logs big')).message).toMatch(/index/);
    expect(usageError(() => parse('job submit f.yaml --index 3')).code).toBe('INVALID_ARGUMENT');
  });
  it('prints help listing the verbs', () => {
    const r = parse('job --help');
    expect(r.kind).toBe('output');
    expect((r as { text: string }).text).toMatch(/job submit FILE[\s\S]*job logs JOB --index N/);
  });
});
