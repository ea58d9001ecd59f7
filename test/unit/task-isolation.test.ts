/**
 * What a task can see of its node: its log file is private to the node's user
 * (0600 in a 0700 directory), and its environment is the submitted one plus
 * loom's own variables, never the node's (PATH is the one documented exception).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Task, TaskState } from '../../src/gen/loom';
import { readFrames } from '../../src/runner/log-file';
import { ProcessRunner } from '../../src/runner/process-runner';
import { logPathFor, taskEnv } from '../../src/node/executor';

describe('task isolation from the node', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-iso-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes task logs readable only by the node user, and hides the node environment', async () => {
    const task = Task.fromPartial({ id: '01890000-0000-7000-8000-000000000001', attempt: 1, state: TaskState.RUNNING, spec: { command: ['env'], env: { MINE: 'yes' } } });
    process.env.LOOM_TEST_NODE_SECRET = 'do-not-leak';
    let env: Record<string, string>;
    try {
      env = taskEnv(task, 'n1');
    } finally {
      delete process.env.LOOM_TEST_NODE_SECRET;
    }
    const logPath = logPathFor(dir, task.id, 1);
    const old = process.umask(0o022);
    try {
      const h = new ProcessRunner({ defaultCwd: dir }).start({ argv: ['env'], env, cwd: '', logPath, timeoutMs: 0, killGraceMs: 100, tailBytes: 4096 });
      const r = await h.done;
      expect(r.exitCode).toBe(0);
    } finally {
      process.umask(old);
    }
    expect(fs.statSync(logPath).mode & 0o777).toBe(0o600);
    expect(path.dirname(logPath)).toBe(path.join(dir, 'logs'));
    expect(fs.statSync(path.join(dir, 'logs')).mode & 0o777).toBe(0o700);
    let out = '';
    for await (const f of readFrames(logPath, {})) out += f.data.toString();
    const names = out.trim().split('\n').map((l) => l.slice(0, l.indexOf('='))).sort();
    expect(names).toEqual(['LOOM_ATTEMPT', 'LOOM_NODE', 'LOOM_RESULT', 'LOOM_TASK_ID', 'MINE', 'PATH']);
    expect(out).not.toContain('do-not-leak');
  });
});
