/**
 * `loom node` numeric flags: what was typed is what the error quotes, and
 * only plain decimal numbers are taken.
 */
import { parseNodeArgs } from '../../src/bin/node-command';
import { numberFlag } from '../../src/bin/flags';
import { LoomError } from '../../src/core/errors';

const failure = (fn: () => unknown): LoomError => {
  try {
    fn();
  } catch (e) {
    return e as LoomError;
  }
  throw new Error('expected an error');
};

describe('loom node numeric flags', () => {
  it('quote the text of a value that is not a number', () => {
    for (const [flag, text] of [['--slots', 'abc'], ['--lease-ttl', '5x'], ['--cpu', ''], ['--urgent-priority', '9.5e'], ['--task-nice', '0x0a'], ['--urgent-slots', '1,5']]) {
      const e = failure(() => parseNodeArgs([flag, text], {}));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toBe(`${flag} must be a number (got "${text}")`);
      expect(e.exitCode).toBe(2);
    }
  });

  it('take decimal numbers and leave ranges to the config check', () => {
    const c = parseNodeArgs(['--slots', '4', '--cpu', '1.5', '--lease-ttl', ' 7 ', '--urgent-priority', '9e2', '--task-nice', '+3'], {});
    expect([c.slots, c.capacity.cpu, c.leaseTtlSeconds, c.urgentPriority, c.taskNice]).toEqual([4, 1.5, 7, 900, 3]);
    expect(failure(() => parseNodeArgs(['--slots', '0'], {})).message).toMatch(/--slots must be an integer from 1 to 4096 \(got 0\)/);
    expect(numberFlag(12, '--slots')).toBe(12);
    expect(numberFlag('.5', '--cpu')).toBe(0.5);
  });

  it('keep the defaults when the flags are absent', () => {
    const c = parseNodeArgs([], {});
    expect(c.leaseTtlSeconds).toBe(5);
    expect(c.taskNice).toBe(0);
    expect(c.capacity.cpu).toBe(0);
  });
});

describe('numberFlag', () => {
  it('refuses a flag given twice and a flag with no value', () => {
    expect(failure(() => parseNodeArgs(['--slots', '1', '--slots', '2'], {})).message).toBe('--slots given more than once');
    expect(failure(() => parseNodeArgs(['--slots'], {})).code).toBe('INVALID_ARGUMENT');
  });
});

describe('--join', () => {
  it('needs embedded etcd and the peers to join', () => {
    expect(failure(() => parseNodeArgs(['--join', '--etcd', 'http://127.0.0.1:2379'], {})).message).toMatch(/--join adds an embedded etcd member/);
    expect(failure(() => parseNodeArgs(['--join'], {})).message).toMatch(/--join needs --peer members of the running cluster/);
    expect(parseNodeArgs(['--join', '--peer', 'b=http://127.0.0.1:2390'], {}).joinEtcd).toBe(true);
    expect(parseNodeArgs([], {}).joinEtcd).toBe(false);
  });
});
