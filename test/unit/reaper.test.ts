import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ProcessRunner } from '../../src/runner/process-runner';
import { Reaper } from '../../src/runner/reaper';
import { waitFor } from '../support/etcd';


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

/** A `sleep 30` in its own process group (pgid = pid), like a task. */
function sleeper(detached = true): ChildProcess {
  return spawn('sleep', ['30'], { detached, stdio: 'ignore' });
}

function exitOf(child: ChildProcess): Promise<NodeJS.Signals | number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.signalCode ?? child.exitCode);
    child.once('exit', (code, signal) => resolve(signal ?? code));
  });
}

function nextFenced(reaper: Reaper): Promise<number> {
  return new Promise((resolve) => reaper.onFenced(resolve));
}

describe('Reaper', () => {
  const cleanup: Array<() => void> = [];
  afterEach(() => {
    for (const fn of cleanup.splice(0)) fn();
  });
  function track(child: ChildProcess): ChildProcess {
    cleanup.push(() => {
      try {
        child.kill('SIGKILL');
      } catch {
        // already gone
      }
    });
    return child;
  }

  test('kills registered task groups when heartbeats stop', async () => {
    const reaper = Reaper.start();
    try {
      const a = track(sleeper());
      const b = track(sleeper());
      reaper.addTask(a.pid!);
      reaper.addTask(b.pid!);
      reaper.removeTask(b.pid!);
      const fenced = nextFenced(reaper);
      reaper.heartbeat(100);
      expect(await fenced).toBe(1);
      expect(await exitOf(a)).toBe('SIGKILL');
      expect(b.exitCode).toBeNull(); // unregistered: left alone
      expect(b.signalCode).toBeNull();
    } finally {
      await reaper.close();
    }
  });

  test('sync: once a killed task\'s exit is seen, the fence report is in before sync resolves', async () => {
    const reaper = Reaper.start();
    try {
      for (let round = 0; round < 5; round++) {
        const a = track(sleeper());
        reaper.addTask(a.pid!);
        let reported = 0;
        reaper.onFenced(() => reported++);
        const before = reaper.fenceCount;
        reaper.heartbeat(5 + round * 7);
        expect(await exitOf(a)).toBe('SIGKILL');
        // The executor does exactly this before recording a failure.
        await reaper.sync();
        expect(reaper.fenceCount).toBe(before + 1);
        expect(reported).toBe(1);
        reaper.heartbeat(60_000); // un-fence for the next round
      }
      // No kill pending: sync still answers.
      await reaper.sync();
    } finally {
      await reaper.close();
    }
  });

  test('sync resolves at once when the reaper is closed', async () => {
    const reaper = Reaper.start();
    await reaper.close();
    await reaper.sync();
  });

  test('a task survives while heartbeats continue', async () => {
    const reaper = Reaper.start();
    try {
      const a = track(sleeper());
      reaper.addTask(a.pid!);
      let fencedCount = 0;
      reaper.onFenced(() => fencedCount++);
      for (let i = 0; i < 20; i++) {
        reaper.heartbeat(300);
        await new Promise((r) => setTimeout(r, 50)); // the heartbeat cadence itself
      }
      reaper.clearHeartbeat();
      expect(fencedCount).toBe(0);
      expect(a.exitCode).toBeNull();
      expect(a.signalCode).toBeNull();
      const exit = exitOf(a);
      await reaper.close(); // stdin EOF: everything dies
      expect(await exit).toBe('SIGKILL');
    } finally {
      await reaper.close();
    }
  });

  test('close kills all task groups and terminates members', async () => {
    const reaper = Reaper.start();
    const tasks = [track(sleeper()), track(sleeper())];
    const member = track(sleeper(false));
    for (const t of tasks) reaper.addTask(t.pid!);
    reaper.addMember(member.pid!);
    const exits = Promise.all([...tasks, member].map(exitOf));
    await reaper.close();
    expect(await exits).toEqual(['SIGKILL', 'SIGKILL', 'SIGTERM']);
    reaper.addTask(12345); // after close: dropped, never throws
  });

  test('ignores SIGTERM/SIGINT/SIGHUP and keeps working', async () => {
    const reaper = Reaper.start();
    try {
      // A first fence round proves the reaper is up (its handlers are installed before it reads stdin).
      const ready = nextFenced(reaper);
      reaper.heartbeat(1);
      expect(await ready).toBe(0);
      for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.kill(reaper.pid!, sig);
      const a = track(sleeper());
      reaper.heartbeat(10_000); // a fresh heartbeat ends the fenced state
      reaper.addTask(a.pid!);
      const fenced = nextFenced(reaper);
      reaper.heartbeat(50);
      expect(await fenced).toBe(1);
      expect(await exitOf(a)).toBe('SIGKILL');
    } finally {
      await reaper.close();
    }
  });

  test('a dead reaper does not make commands throw', async () => {
    const logs: string[] = [];
    const reaper = Reaper.start({ log: (m) => logs.push(m) });
    process.kill(reaper.pid!, 'SIGKILL');
    await waitFor(() => logs.length > 0);
    expect(() => {
      reaper.addTask(12345);
      reaper.heartbeat(10);
      reaper.removeTask(12345);
    }).not.toThrow();
    expect(logs).toHaveLength(1); // logged once
    await reaper.close();
  });

  test('fences ProcessRunner tasks; the runner reports the kill', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-reaper-'));
    const reaper = Reaper.start();
    try {
      const runner = new ProcessRunner({ reaper, defaultCwd: dir });
      const h = runner.start({
        argv: ['sh', '-c', 'sleep 30 & wait'],
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        cwd: '',
        logPath: path.join(dir, 'a.log'),
        timeoutMs: 0,
        killGraceMs: 1000,
        tailBytes: 100,
      });
      const fenced = nextFenced(reaper);
      reaper.heartbeat(100);
      expect(await fenced).toBe(1);
      expect((await h.done).signal).toBe('SIGKILL');
    } finally {
      await reaper.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  describe('when the node process dies or freezes', () => {
    // A stand-in node: starts a reaper, runs a task group, prints the task pid.
    // tagged: the task carries the reaper's tag and its registration is batched
    // (it may not be written yet when the node dies: the reaper's scan must find it).
    const nodeScript = (heartbeat: boolean, tagged = false) => `
      const { spawn } = require('child_process');
      const { Reaper } = require(${JSON.stringify(path.join(__dirname, '../../src/runner/reaper.js'))});
      const reaper = Reaper.start();
      const env = ${tagged} ? { ...process.env, LOOM_REAPER_TAG: reaper.tag } : process.env;
      const task = spawn('sleep', ['30'], { detached: true, stdio: 'ignore', env });
      reaper.addTask(task.pid, { tagged: ${tagged} });
      if (${heartbeat}) {
        reaper.heartbeat(300); // a deadline is in force before we report ready
        setInterval(() => reaper.heartbeat(300), 50);
      } else {
        setInterval(() => {}, 1000);
      }
      console.log(task.pid);
    `;

    function startNode(heartbeat: boolean, tagged = false): Promise<{ node: ChildProcess; taskPid: number }> {
      const node = track(spawn(process.execPath, ['-e', nodeScript(heartbeat, tagged)], { stdio: ['ignore', 'pipe', 'inherit'] }));
      return new Promise((resolve, reject) => {
        let out = '';
        node.stdout!.on('data', (d) => {
          out += d;
          if (out.includes('\n')) resolve({ node, taskPid: Number(out.trim()) });
        });
        node.once('exit', () => reject(new Error('node exited early')));
      });
    }

    test('SIGKILL of the node kills its tasks', async () => {
      const { node, taskPid } = await startNode(false);
      expect(isGone(taskPid)).toBe(false);
      node.kill('SIGKILL');
      await waitFor(() => isGone(taskPid));
    });

    test('SIGKILL of the node kills a tagged task whose registration was still batched', async () => {
      const { node, taskPid } = await startNode(false, true);
      expect(isGone(taskPid)).toBe(false);
      node.kill('SIGKILL'); // within the batch window of its registration
      await waitFor(() => isGone(taskPid));
    });

    test('SIGSTOP of the node kills its tasks once the heartbeat lapses', async () => {
      const { node, taskPid } = await startNode(true);
      expect(isGone(taskPid)).toBe(false);
      node.kill('SIGSTOP');
      try {
        await waitFor(() => isGone(taskPid));
      } finally {
        node.kill('SIGCONT');
        node.kill('SIGKILL');
      }
    });
  });

  test('a task registered after the fence deadline, before a new heartbeat, is killed at once', async () => {
    const reaper = Reaper.start();
    try {
      const fenced = nextFenced(reaper);
      reaper.heartbeat(1);
      await fenced;
      const late = track(sleeper());
      reaper.addTask(late.pid!);
      expect(await exitOf(late)).toBe('SIGKILL');
    } finally {
      await reaper.close();
    }
  });

  test('after a crash (stdin closed, no bye) it rescans: a tagged task that started late is killed', async () => {
    // The node died while spawning a task: the reaper sees EOF first, the task execs a moment later.
    const tag = `crash-${process.pid}-${Date.now()}`;
    const main = path.resolve(__dirname, '../../src/runner/reaper-main.js');
    const reaper = track(spawn(process.execPath, [main, tag], { detached: true, stdio: ['pipe', 'pipe', 'inherit'] }));
    const reaperExit = exitOf(reaper);
    let out = '';
    reaper.stdout!.on('data', (d) => (out += d));
    reaper.stdin!.write('ping 1\n');
    await waitFor(() => out.includes('pong 1')); // up and reading its stdin
    reaper.stdin!.end(); // no `bye`
    await new Promise((r) => setTimeout(r, 50)); // its first scan (at EOF) runs now, before this task exists
    const late = track(spawn('sleep', ['30'], { detached: true, stdio: 'ignore', env: { ...process.env, LOOM_REAPER_TAG: tag } }));
    expect(await exitOf(late)).toBe('SIGKILL'); // found by the rescan at 200 ms or 1 s
    expect(await reaperExit).toBe(0);
  });

  test('finds and kills a tagged task that was never registered', async () => {
    const reaper = Reaper.start();
    try {
      const { spawn } = await import('child_process');
      const orphan = spawn('sleep', ['30'], { detached: true, stdio: 'ignore', env: { ...process.env, LOOM_REAPER_TAG: reaper.tag } });
      const exited = new Promise<string | null>((r) => orphan.once('exit', (_c, sig) => r(sig)));
      const fenced = nextFenced(reaper);
      reaper.heartbeat(20);
      expect(await fenced).toBe(1);
      expect(await exited).toBe('SIGKILL');
    } finally {
      await reaper.close();
    }
  });

  test('killTask kills the tagged processes of that task and attempt only', async () => {
    const reaper = Reaper.start();
    try {
      const task = (id: string, attempt: string, tag = reaper.tag) =>
        track(spawn('sleep', ['30'], { detached: true, stdio: 'ignore', env: { ...process.env, LOOM_REAPER_TAG: tag, LOOM_TASK_ID: id, LOOM_ATTEMPT: attempt } }));
      const target = task('task-a', '2');
      const otherAttempt = task('task-a', '1');
      const otherTask = task('task-b', '2');
      const notOurs = task('task-a', '2', 'someone-else');
      await waitFor(() => [target, otherAttempt, otherTask, notOurs].every((c) => fs.readFileSync(`/proc/${c.pid}/environ`).includes('LOOM_TASK_ID=')));
      const exited = exitOf(target);
      expect(await reaper.killTask('task-a', '2')).toBe(1);
      expect(await exited).toBe('SIGKILL');
      for (const c of [otherAttempt, otherTask, notOurs]) expect(isGone(c.pid!)).toBe(false);
      expect(await reaper.killTask('no-such-task', '1')).toBe(0);
    } finally {
      await reaper.close();
    }
  });
});
