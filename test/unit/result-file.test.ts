import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { readResultFile, RESULT_MAX_BYTES } from '../../src/runner/result-file';

describe('result file', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-result-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const at = (name: string) => path.join(dir, name);

  it('has no result when the task wrote none', () => {
    expect(readResultFile(at('none'))).toEqual({});
  });

  it('returns what the task wrote, binary included, up to the limit', () => {
    const bytes = Buffer.from([0, 1, 2, 255, 10]);
    fs.writeFileSync(at('r'), bytes);
    expect(readResultFile(at('r')).result).toEqual(bytes);
    fs.writeFileSync(at('full'), Buffer.alloc(RESULT_MAX_BYTES, 7));
    expect(readResultFile(at('full')).result?.length).toBe(RESULT_MAX_BYTES);
    fs.writeFileSync(at('empty'), '');
    expect(readResultFile(at('empty')).result).toEqual(Buffer.alloc(0));
  });

  it('drops a result over the limit and says so', () => {
    fs.writeFileSync(at('big'), Buffer.alloc(RESULT_MAX_BYTES + 1));
    const r = readResultFile(at('big'));
    expect(r.result).toBeUndefined();
    expect(r.error).toMatch(/result dropped: .* 65537 bytes, over the 64 KiB limit/);
  });

  it('never follows a symlink, never blocks on a FIFO, takes only regular files of the task', () => {
    fs.writeFileSync(at('secret'), 'node key');
    fs.symlinkSync(at('secret'), at('link'));
    expect(readResultFile(at('link'))).toEqual({ error: 'result not read: $LOOM_RESULT is a symbolic link' });
    execFileSync('mkfifo', [at('fifo')]);
    expect(readResultFile(at('fifo')).error).toMatch(/not a regular file/);
    fs.mkdirSync(at('d'));
    expect(readResultFile(at('d')).error).toMatch(/not a regular file/);
    const mine = fs.statSync(at('secret')).uid;
    expect(readResultFile(at('secret'), mine + 1).error).toMatch(/owned by uid/);
    expect(readResultFile(at('secret'), mine).result?.toString()).toBe('node key');
  });
});
