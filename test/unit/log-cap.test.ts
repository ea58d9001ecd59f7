/**
 * --max-log-bytes: a real process printing far more than the cap leaves a
 * log file of the head, a note of what was cut and each stream's tail, and
 * is never blocked by it.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readFrames, STREAM_STDERR, STREAM_STDOUT } from '../../src/runner/log-file';
import { ProcessRunner } from '../../src/runner/process-runner';
import { RunRequest } from '../../src/runner/types';

const CAP = 64 * 1024;
const TAIL = 4096;

let dir: string;
beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-logcap-'))));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function req(argv: string[], maxLogBytes?: number): RunRequest {
  return { argv, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: '', logPath: path.join(dir, 'logs', 't.1.log'), timeoutMs: 0, killGraceMs: 100, tailBytes: TAIL, maxLogBytes };
}

async function frames(file: string): Promise<{ stdout: Buffer; stderr: string; size: number }> {
  const out: Buffer[] = [];
  let stderr = '';
  for await (const f of readFrames(file)) {
    if (f.stream === STREAM_STDOUT) out.push(Buffer.from(f.data));
    else if (f.stream === STREAM_STDERR) stderr += f.data.toString();
  }
  return { stdout: Buffer.concat(out), stderr, size: fs.statSync(file).size };
}

test('keeps the head up to the cap, says what was cut, then the tail', async () => {
  const runner = new ProcessRunner({ defaultCwd: dir });
  // 20 MB of numbered lines, then a last line to find in the tail.
  const script = 'seq 1 2500000; echo LAST LINE';
  const r = await runner.start(req(['sh', '-c', script], CAP)).done;
  expect(r.exitCode).toBe(0);
  const { stdout, stderr, size } = await frames(path.join(dir, 'logs', 't.1.log'));
  expect(size).toBeLessThan(CAP + 2 * TAIL + 1024);
  expect(stdout.subarray(0, 8).toString()).toBe('1\n2\n3\n4\n');
  expect(stderr).toMatch(/reached --max-log-bytes \(65536 bytes\): \d+ bytes of stdout and 0 bytes of stderr were not written/);
  const cut = Number(/: (\d+) bytes of stdout/.exec(stderr)![1]);
  expect(cut).toBe((r.stdoutBytes ?? 0) - (stdout.length - TAIL));
  expect(stdout.subarray(stdout.length - 10).toString()).toBe('LAST LINE\n');
});

test('no cap: the whole output is in the file', async () => {
  const runner = new ProcessRunner({ defaultCwd: dir });
  const r = await runner.start(req(['sh', '-c', 'seq 1 50000'])).done;
  const { stdout, stderr } = await frames(path.join(dir, 'logs', 't.1.log'));
  expect(stdout.length).toBe(r.stdoutBytes);
  expect(stderr).toBe('');
});
