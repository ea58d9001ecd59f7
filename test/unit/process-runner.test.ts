import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readFrames, STREAM_STDERR, STREAM_STDOUT } from '../../src/runner/log-file';
import { ProcessRunner } from '../../src/runner/process-runner';
import { Reaper } from '../../src/runner/reaper';
import { Spawner } from '../../src/runner/spawner';
import { RunHandle, RunRequest } from '../../src/runner/types';

const PATH = process.env.PATH ?? '/usr/bin:/bin';

/** Polls a condition (a wait on state, not a fixed sleep); fails after timeoutMs. */
async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Gone, or a zombie nobody reaps yet (PID 1 in a container may not). */
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
  } catch {
    return true;
  }
}

async function frames(file: string) {
  const out: Array<{ stream: number; text: string }> = [];
  for await (const f of readFrames(file, {})) out.push({ stream: f.stream, text: f.data.toString('latin1') });
  return out;
}

/** Concatenates consecutive frames of the same stream (chunking is up to the OS). */
function merged(list: Array<{ stream: number; text: string }>) {
  const out: Array<{ stream: number; text: string }> = [];
  for (const f of list) {
    const last = out[out.length - 1];
    if (last && last.stream === f.stream) last.text += f.text;
    else out.push({ ...f });
  }
  return out;
}

/** Waits until the task has written something to its log. */
function firstOutput(h: RunHandle): Promise<void> {
  return new Promise((resolve) => {
    if (h.logBytes > 0) return resolve();
    const off = h.onProgress(() => {
      if (h.logBytes > 0) {
        off();
        resolve();
      }
    });
  });
}

// Every behaviour holds whichever way the task is started: Node's spawn, or
// loom-spawner (posix_spawn; built by `npm run build`, see spawner.ts).
describe.each([
  ['Node spawn', false],
  ['loom-spawner', true],
])('ProcessRunner (%s)', (_how, useSpawner) => {
  let dir: string;
  let runner: ProcessRunner;
  let spawner: Spawner | undefined;
  let spawnerDir: string;
  let n = 0;

  beforeAll(async () => {
    if (!useSpawner) return;
    spawnerDir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-spawner-'));
    const log: string[] = [];
    spawner = await Spawner.start({ socketPath: path.join(spawnerDir, 's.sock'), log: (m) => log.push(m) });
    if (!spawner) throw new Error(`loom-spawner did not start: ${log.join('; ')}`);
  });
  afterAll(async () => {
    await spawner?.close();
    if (spawnerDir) fs.rmSync(spawnerDir, { recursive: true, force: true });
  });

  function req(argv: string[], extra: Partial<RunRequest> = {}): RunRequest {
    return {
      argv,
      env: { PATH },
      cwd: '',
      logPath: path.join(dir, 'logs', `attempt-${n++}.log`), // 'logs' does not exist yet
      timeoutMs: 0,
      killGraceMs: 1000,
      tailBytes: 4096,
      ...extra,
    };
  }

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-runner-'));
    runner = new ProcessRunner({ defaultCwd: dir, spawner });
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('--task-nice: the task runs at that niceness, and so does its autogroup where the kernel has them', async () => {
    let niceSpawner: Spawner | undefined;
    if (useSpawner) {
      niceSpawner = await Spawner.start({ socketPath: path.join(spawnerDir, 'nice.sock'), log: () => undefined, taskNice: 7 });
      expect(niceSpawner).toBeDefined();
    }
    try {
      const logs: string[] = [];
      const nice = new ProcessRunner({ defaultCwd: dir, spawner: niceSpawner, taskNice: 7, log: (m) => logs.push(m) });
      // Field 19 of /proc/<pid>/stat is the nice value; the autogroup file reads "/autogroup-N nice M".
      // Read once start() has returned: on the Node-spawn path the priority is
      // lowered just after the exec (see spawnHere), the spawner sets it before.
      const go = path.join(dir, 'go');
      const script = `while [ ! -e ${go} ]; do sleep 0.01; done; cut -d" " -f19 /proc/$$/stat; if [ -e /proc/$$/autogroup ]; then cat /proc/$$/autogroup; else echo none; fi`;
      const started = nice.start(req(['sh', '-c', script]));
      fs.writeFileSync(go, '');
      const r = await started.done;
      expect(r.exitCode).toBe(0);
      const [niceValue, autogroup] = r.stdoutTail.toString().trim().split('\n');
      expect(niceValue).toBe('7');
      if (autogroup !== 'none') expect(autogroup).toMatch(/ nice 7$/);
      expect(logs).toEqual([]);
      // Without the option a task runs at the runner's own niceness.
      const plain = await runner.start(req(['sh', '-c', script.replace(`while [ ! -e ${go} ]; do sleep 0.01; done; `, '')])).done;
      expect(plain.stdoutTail.toString().split('\n')[0]).toBe(String(os.getPriority()));
    } finally {
      await niceSpawner?.close();
    }
  });

  test('reports the exit code and the tails', async () => {
    const h = runner.start(req(['sh', '-c', 'printf out; printf err >&2; exit 3']));
    const r = await h.done;
    expect(h.pid).toBeGreaterThan(0);
    expect(r.exitCode).toBe(3);
    expect(r.signal).toBeUndefined();
    expect(r.error).toBeUndefined();
    expect(r.timedOut).toBe(false);
    expect(r.stdoutTail.toString()).toBe('out');
    expect(r.stderrTail.toString()).toBe('err');
    expect(r.stdoutTruncated).toBe(false);
    expect(r.finishedAtMs).toBeGreaterThanOrEqual(r.startedAtMs);
  });

  test('writes stdout and stderr interleaved, in order, bytes intact', async () => {
    // Each step waits until the previous output reached the log, so the order is deterministic.
    const script = [
      // The log file is opened asynchronously, so it may not exist yet on the first check.
      'w() { until grep -qa "$1" "$LOG" 2>/dev/null; do sleep 0.01; done; }',
      'echo one', 'w one', 'echo two >&2', 'w two', "printf '\\377\\376three\\n'", 'w three', 'echo four >&2',
    ].join('; ');
    const r0 = req(['sh', '-c', script]);
    r0.env.LOG = r0.logPath;
    const h = runner.start(r0);
    const r = await h.done;
    expect(r.exitCode).toBe(0);
    expect(merged(await frames(r0.logPath))).toEqual([
      { stream: STREAM_STDOUT, text: 'one\n' },
      { stream: STREAM_STDERR, text: 'two\n' },
      { stream: STREAM_STDOUT, text: '\xff\xfethree\n' },
      { stream: STREAM_STDERR, text: 'four\n' },
    ]);
    expect(h.logBytes).toBe(fs.statSync(r0.logPath).size);
  });

  test('the environment is exactly the one given, and where to leave a result', async () => {
    const r0 = req(['env'], { env: { FOO: 'bar baz', PATH: '/usr/bin:/bin' } });
    const h = runner.start(r0);
    const r = await h.done;
    expect(r.exitCode).toBe(0);
    expect(r.stdoutTail.toString().trim().split('\n').sort()).toEqual(['FOO=bar baz', `LOOM_RESULT=${r0.logPath}.result`, 'PATH=/usr/bin:/bin']);
  });

  test('reports what the task left in $LOOM_RESULT, then removes the file', async () => {
    const r0 = req(['sh', '-c', 'printf "%s" done > "$LOOM_RESULT"']);
    const r = await runner.start(r0).done;
    expect(r.result?.toString()).toBe('done');
    expect(fs.existsSync(`${r0.logPath}.result`)).toBe(false);
    const none = await runner.start(req(['true'])).done;
    expect(none.result).toBeUndefined();
    expect(none.resultError).toBeUndefined();
  });

  test('runs in the given cwd, or the default one', async () => {
    const sub = fs.mkdtempSync(path.join(dir, 'cwd-'));
    const a = await runner.start(req(['pwd'], { cwd: sub })).done;
    expect(fs.realpathSync(a.stdoutTail.toString().trim())).toBe(fs.realpathSync(sub));
    const b = await runner.start(req(['pwd'])).done;
    expect(fs.realpathSync(b.stdoutTail.toString().trim())).toBe(fs.realpathSync(dir));
  });

  test('a task killed by a signal reports the signal', async () => {
    const r = await runner.start(req(['sh', '-c', 'kill -9 $$'])).done;
    expect(r.signal).toBe('SIGKILL');
    expect(r.exitCode).toBeUndefined();
  });

  test('timeout: SIGTERM to the group and timedOut', async () => {
    const r = await runner.start(req(['sleep', '30'], { timeoutMs: 200, killGraceMs: 5000 })).done;
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGTERM');
    expect(r.finishedAtMs - r.startedAtMs).toBeLessThan(5000);
  });

  test('stop escalates to SIGKILL when SIGTERM is ignored', async () => {
    const h = runner.start(req(['sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 0.05; done']));
    await firstOutput(h);
    h.stop('cancel', 200);
    h.stop('shutdown', 10_000); // idempotent, and cannot postpone the SIGKILL
    const r = await h.done;
    expect(r.signal).toBe('SIGKILL');
    expect(r.stoppedFor).toBe('cancel');
    expect(r.timedOut).toBe(false);
  });

  test('stop kills the whole process group, grandchildren included', async () => {
    const rq = req(['sh', '-c', 'sleep 30 & echo $!; wait']);
    const h = runner.start(rq);
    await firstOutput(h);
    const grandchild = Number((await frames(rq.logPath))[0].text.trim());
    expect(grandchild).toBeGreaterThan(0);
    expect(isGone(grandchild)).toBe(false);
    h.stop('fence', 2000);
    const r = await h.done;
    expect(r.stoppedFor).toBe('fence');
    expect(r.signal).toBe('SIGTERM');
    await waitFor(() => isGone(grandchild));
    h.stop('cancel', 0); // after exit: a no-op, never throws
  });

  test('background jobs left behind by the task are killed when it exits', async () => {
    const h = runner.start(req(['sh', '-c', 'sleep 30 & echo $!']));
    const r = await h.done; // would hang 30 s if the orphan kept the pipe open
    expect(r.exitCode).toBe(0);
    await waitFor(() => isGone(Number(r.stdoutTail.toString().trim())));
  });

  test('command not found: error and 127, no exit code', async () => {
    const h = runner.start(req(['loom-no-such-command-xyz']));
    expect(h.pid).toBeUndefined();
    h.stop('cancel', 0); // harmless
    const r = await h.done;
    expect(r.error).toBe('command not found: loom-no-such-command-xyz');
    expect(r.errorExitCode).toBe(127);
    expect(r.exitCode).toBeUndefined();
    expect(r.signal).toBeUndefined();
  });

  test('not executable: permission denied and 126', async () => {
    const file = path.join(dir, 'script.sh');
    fs.writeFileSync(file, '#!/bin/sh\necho hi\n', { mode: 0o644 });
    const r = await runner.start(req([file])).done;
    expect(r.error).toBe(`permission denied: ${file}`);
    expect(r.errorExitCode).toBe(126);
  });

  test('missing cwd: error naming the cwd and 126', async () => {
    const missing = path.join(dir, 'nope');
    const r = await runner.start(req(['true'], { cwd: missing })).done;
    expect(r.error).toContain(missing);
    expect(r.errorExitCode).toBe(126);
    expect(r.exitCode).toBeUndefined();
  });

  test('an unwritable log does not stop the task; output still reaches the tails', async () => {
    const logs: string[] = [];
    const r2 = new ProcessRunner({ defaultCwd: dir, log: (m) => logs.push(m) });
    const r = await r2.start(req(['sh', '-c', 'echo hi; exit 4'], { logPath: dir })).done; // a directory
    expect(r.exitCode).toBe(4);
    expect(r.stdoutTail.toString()).toBe('hi\n');
    expect(logs.join('\n')).toContain('EISDIR');
  });

  test('an impossible log directory is a start failure', async () => {
    const file = path.join(dir, 'plain-file');
    fs.writeFileSync(file, '');
    const r = await runner.start(req(['true'], { logPath: path.join(file, 'sub', 'a.log') })).done;
    expect(r.error).toContain('cannot create log directory');
    expect(r.errorExitCode).toBe(126);
    expect(r.exitCode).toBeUndefined();
  });

  test('the log directory is made once per runner, not per task (removed underneath: a failing log, the task still runs)', async () => {
    const logs: string[] = [];
    const r2 = new ProcessRunner({ defaultCwd: dir, log: (m) => logs.push(m), spawner });
    expect((await r2.start(req(['true'])).done).exitCode).toBe(0);
    fs.rmSync(path.join(dir, 'logs'), { recursive: true });
    const r = await r2.start(req(['sh', '-c', 'echo hi'])).done;
    expect(r.exitCode).toBe(0);
    expect(r.stdoutTail.toString()).toBe('hi\n');
    expect(fs.existsSync(path.join(dir, 'logs'))).toBe(false); // no mkdir for the second task
    expect(logs.join('\n')).toContain('ENOENT');
  });

  test('a task that prints nothing leaves no log file (opened at the first output)', async () => {
    const quiet = req(['true']);
    const loud = req(['sh', '-c', 'echo x']);
    expect((await runner.start(quiet).done).exitCode).toBe(0);
    expect((await runner.start(loud).done).exitCode).toBe(0);
    expect(fs.existsSync(quiet.logPath)).toBe(false);
    expect(fs.existsSync(loud.logPath)).toBe(true);
  });

  test('progress fires after writes and at exit; unsubscribe works', async () => {
    const h = runner.start(req(['sh', '-c', 'echo a']));
    let calls = 0;
    let removedCalls = 0;
    h.onProgress(() => calls++);
    const off = h.onProgress(() => removedCalls++);
    off();
    await h.done;
    expect(calls).toBeGreaterThanOrEqual(2); // one write + exit
    expect(removedCalls).toBe(0);
    expect(h.logBytes).toBe(5 + 2);
  });

  test('a script without #! runs under /bin/sh, as execvp does', async () => {
    const file = path.join(dir, 'plain-script');
    fs.writeFileSync(file, 'echo "plain $1"\n', { mode: 0o755 });
    const r = await runner.start(req([file, 'arg'])).done;
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(0);
    expect(r.stdoutTail.toString()).toBe('plain arg\n');
  });

  test('the task gets stdin from /dev/null and its own session (and, from loom-spawner, no other descriptor)', async () => {
    const r = await runner.start(req(['sh', '-c', 'ls /proc/$$/fd; readlink /proc/$$/fd/0; ps -o sid= -o pgid= -p $$'])).done;
    expect(r.exitCode).toBe(0);
    const [fds, stdin, ids] = r.stdoutTail.toString().split(/\n(?=\/)|\n(?=\s*\d+\s+\d+\s*$)/);
    // Node's spawn passes on what the node itself inherited without close-on-exec
    // (e.g. from the shell that started it); loom-spawner closes all of it.
    if (useSpawner) expect(fds.trim().split('\n').sort()).toEqual(['0', '1', '2']);
    else expect(fds.trim().split('\n')).toEqual(expect.arrayContaining(['0', '1', '2']));
    expect(stdin.trim()).toBe('/dev/null');
    const [sid, pgid] = ids.trim().split(/\s+/).map(Number);
    expect(sid).toBeGreaterThan(0);
    expect(sid).toBe(pgid);
    expect(sid).not.toBe(process.pid);
  });

  test('a start past notAfterMs (the fence deadline) is refused and the command never runs', async () => {
    const marker = path.join(dir, 'ran');
    const r = await runner.start(req(['touch', marker], { notAfterMs: Date.now() - 1 })).done;
    expect(r.stoppedFor).toBe('fence');
    expect(r.error).toBe('node fenced before the task started');
    expect(fs.existsSync(marker)).toBe(false);
  });

  test('a stop asked for at once (before the pid may be known) still stops the task', async () => {
    const h = runner.start(req(['sleep', '30']));
    h.stop('cancel', 0);
    const r = await h.done;
    expect(r.stoppedFor).toBe('cancel');
    expect(r.signal).toBe('SIGKILL');
  });

  test('200 MB of output: bounded memory, exact tail', async () => {
    const tailBytes = 1000;
    const rssBefore = process.memoryUsage.rss();
    let rssMax = rssBefore;
    const rq = req(['head', '-c', '200000000', '/dev/zero'], { tailBytes });
    const h = runner.start(rq);
    h.onProgress(() => {
      rssMax = Math.max(rssMax, process.memoryUsage.rss());
    });
    const r = await h.done;
    expect(r.exitCode).toBe(0);
    expect(r.stdoutTail.equals(Buffer.alloc(tailBytes))).toBe(true);
    expect(r.stdoutTruncated).toBe(true);
    expect(r.stderrTail.length).toBe(0);
    const size = fs.statSync(rq.logPath).size;
    expect(h.logBytes).toBe(size);
    expect(size).toBeGreaterThan(200_000_000);
    expect(rssMax - rssBefore).toBeLessThan(100 * 1024 * 1024);
  }, 120_000);
});

describe('loom-spawner failures', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-spawner-fail-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('the helper dying: its running task is killed and reported, later tasks start with Node spawn', async () => {
    const log: string[] = [];
    const spawner = await Spawner.start({ socketPath: path.join(dir, 's.sock'), log: (m) => log.push(m) });
    expect(spawner).toBeDefined();
    const runner = new ProcessRunner({ defaultCwd: dir, spawner });
    const base = { env: { PATH }, cwd: '', timeoutMs: 0, killGraceMs: 100, tailBytes: 4096 };
    const h = runner.start({ ...base, argv: ['sh', '-c', 'echo up; exec sleep 30'], logPath: path.join(dir, 'a.log') });
    await firstOutput(h);
    const pid = h.pid!;
    expect(isGone(pid)).toBe(false);
    process.kill(spawner!.helperPid!, 'SIGKILL');
    const r = await h.done;
    expect(r.error).toMatch(/^loom-spawner exited \(code null, signal SIGKILL\); the task was killed and its exit status is unknown$/);
    expect(r.errorExitCode).toBe(125);
    await waitFor(() => isGone(pid));
    expect(spawner!.usable).toBe(false);
    expect(log.join('\n')).toContain("tasks are started with Node's spawn from now on");
    const r2 = await runner.start({ ...base, argv: ['sh', '-c', 'exit 4'], logPath: path.join(dir, 'b.log') }).done;
    expect(r2.exitCode).toBe(4);
    await spawner!.close();
  });

  test('the helper dying between starting a task and reporting it: the task is found by its environment and killed before the start is reported failed', async () => {
    // Processes whose environment names the task id (this test's own /proc scan).
    const id = `t-${process.pid}-${Date.now()}`;
    const running = () => fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/environ`).includes(`LOOM_TASK_ID=${id}\0`) && !isGone(Number(p));
      } catch {
        return false;
      }
    });
    const spawner = await Spawner.start({
      socketPath: path.join(dir, 's.sock'), log: () => undefined, env: { ...process.env, LOOM_SPAWNER_FAILPOINT: 'exit-after-spawn' },
    });
    const reaper = Reaper.start();
    const logs: string[] = [];
    try {
      const runner = new ProcessRunner({ defaultCwd: dir, spawner, reaper, log: (m) => logs.push(m) });
      const h = runner.start({
        argv: ['sleep', '30'], env: { PATH, LOOM_TASK_ID: id, LOOM_ATTEMPT: '1' }, cwd: '', timeoutMs: 0, killGraceMs: 100, tailBytes: 4096,
        logPath: path.join(dir, 'a.log'),
      });
      const r = await h.done;
      expect(h.pid).toBeUndefined();
      expect(r.error).toBe('cannot start task: loom-spawner exited (code 3, signal null) before the task was started');
      expect(r.errorExitCode).toBe(126);
      // Gone by the time the failure is reported: a retry cannot run beside it.
      expect(running()).toEqual([]);
      expect(logs.join('\n')).toContain(`task ${id}: killed 1 process group(s) started before loom-spawner died`);
    } finally {
      await reaper.close();
      await spawner?.close();
    }
  });

  test('the helper itself refuses a request whose deadline passed while it was on its way', async () => {
    const spawner = await Spawner.start({ socketPath: path.join(dir, 's.sock'), log: () => undefined });
    const marker = path.join(dir, 'ran');
    try {
      // As if the node had been frozen between asking and the helper reading the request.
      const outcome = await new Promise<string>((resolve) => {
        spawner!.spawn({ argv: ['touch', marker], env: { PATH }, cwd: '', notAfterMs: Date.now() - 1 }, {
          started: () => resolve('started'), failed: (w) => resolve(`failed ${w}`), late: () => resolve('late'),
          stream: (_id, s) => s.resume(), exited: () => undefined, lost: (w) => resolve(`lost ${w}`),
        });
      });
      expect(outcome).toBe('late');
      // The same request with time left starts.
      const ok = await new Promise<string>((resolve) => {
        spawner!.spawn({ argv: ['touch', marker], env: { PATH }, cwd: '', notAfterMs: Date.now() + 60_000 }, {
          started: () => undefined, failed: (w) => resolve(`failed ${w}`), late: () => resolve('late'),
          stream: (_id, s) => s.resume(), exited: (code) => resolve(`exit ${code}`), lost: (w) => resolve(`lost ${w}`),
        });
      });
      expect(ok).toBe('exit 0');
      expect(fs.existsSync(marker)).toBe(true);
    } finally {
      await spawner!.close();
    }
  });

  test('malformed requests get an err reply naming their seq; the helper does not crash', async () => {
    const { spawnSync } = await import('child_process');
    const { spawnerBinary } = await import('../../src/runner/spawner');
    const request = (fields: string[]) => {
      const payload = Buffer.from(fields.join('\0') + '\0');
      return Buffer.concat([Buffer.from(`${payload.length}\n`), payload]);
    };
    const input = Buffer.concat([
      Buffer.from(`${'a'.repeat(32)}\n`),
      request(['5', 'x']), // too few fields
      request(['7', '0', '', '2', 'sh']), // argc says 2, one argument, no envc
      request(['8', '0', '', '1', 'true', '5']), // envc says 5, none follow
    ]);
    const r = spawnSync(spawnerBinary(), [path.join(dir, 'none.sock')], { input, timeout: 5000 });
    expect(r.status).toBe(0); // stdin EOF: a clean exit, not a crash
    expect(r.stdout.toString().trim().split('\n')).toEqual(['err 5 22', 'err 7 22', 'err 8 22']);
  });

  test('no binary: start resolves undefined and says why', async () => {
    const log: string[] = [];
    const s = await Spawner.start({ socketPath: path.join(dir, 's.sock'), binary: path.join(dir, 'nope'), log: (m) => log.push(m) });
    expect(s).toBeUndefined();
    expect(log[0]).toMatch(/^spawner: not used \(no executable .*nope/);
  });

  test('a socket path too long for a unix socket: not used, says why', async () => {
    const log: string[] = [];
    const s = await Spawner.start({ socketPath: path.join(dir, 'x'.repeat(120)), log: (m) => log.push(m) });
    expect(s).toBeUndefined();
    expect(log[0]).toMatch(/socket path longer than 107 bytes/);
  });
});

describe('loom-spawner and the event loop', () => {
  test('a process whose only pending work is a spawn does not exit before the task ends', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-spawner-loop-'));
    try {
      // Nothing but the spawn is pending in this child process.
      const script = `
        const { Spawner } = require(${JSON.stringify(path.join(__dirname, '../../src/runner/spawner.js'))});
        Spawner.start({ socketPath: ${JSON.stringify(path.join(dir, 's.sock'))}, log: (m) => console.error(m) }).then((s) => {
          let left = 3;
          const done = () => { if (--left === 0) { console.log('done'); s.close(); } };
          s.spawn({ argv: ['sleep', '0.2'], env: { PATH: process.env.PATH }, cwd: '' }, {
            started: () => {}, failed: (w) => console.error('failed ' + w), lost: (w) => console.error('lost ' + w), late: () => console.error('late'),
            stream: (_id, sock) => { sock.resume(); sock.once('close', done); },
            exited: done,
          });
        });`;
      const { execFileSync } = await import('child_process');
      const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
      expect(out.trim()).toBe('done');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
