import { validateSpec, validateBatch, LIMITS, PRIORITY_DEFAULT } from '../../src/core/spec';
import { parseDurationMs } from '../../src/core/duration';
import { parsePeer, parseLabel, validateNodeConfig, defaultNodeConfig } from '../../src/core/config';
import { LoomError, ERROR_CODES } from '../../src/core/errors';

const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return (e as LoomError).code;
  }
  return 'no error';
};

describe('spec validation', () => {
  it('normalises defaults', () => {
    const s = validateSpec({ name: '', command: ['ls'], env: {}, cwd: '', timeoutMs: 0, retries: 0 });
    expect(s.priority).toBe(PRIORITY_DEFAULT);
    expect(s.restartOnNodeFailure).toBe(true);
  });

  it('rejects bad input with INVALID_ARGUMENT and the limit', () => {
    const base = { name: '', command: ['ls'], env: {}, cwd: '', timeoutMs: 0, retries: 0 };
    expect(code(() => validateSpec({ ...base, command: [] }))).toBe('INVALID_ARGUMENT');
    expect(code(() => validateSpec({ ...base, command: ['a\0b'] }))).toBe('INVALID_ARGUMENT');
    expect(code(() => validateSpec({ ...base, priority: 1000 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => validateSpec({ ...base, env: { 'BAD-NAME': 'x' } }))).toBe('INVALID_ARGUMENT');
    expect(() => validateSpec({ ...base, command: ['x', 'y'.repeat(LIMITS.argvBytes)] })).toThrow(String(LIMITS.argvBytes));
    expect(code(() => validateBatch([]))).toBe('INVALID_ARGUMENT');
    expect(() => validateBatch([base, { ...base, command: [] }])).toThrow(/task 1/);
  });
});

describe('durations, peers, labels, node config', () => {
  it('parses durations', () => {
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('1h30m')).toBe(5_400_000);
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('2')).toBe(2000);
    expect(code(() => parseDurationMs('soon'))).toBe('INVALID_ARGUMENT');
    expect(code(() => parseDurationMs('5x'))).toBe('INVALID_ARGUMENT');
  });

  it('parses the prototype peer form and labels', () => {
    expect(parsePeer('node2=http://127.0.0.2:2380')).toEqual({ name: 'node2', url: 'http://127.0.0.2:2380' });
    expect(code(() => parsePeer('node2'))).toBe('INVALID_ARGUMENT');
    expect(code(() => parsePeer('node2=127.0.0.2:2380'))).toBe('INVALID_ARGUMENT');
    expect(parseLabel('zone=a')).toEqual(['zone', 'a']);
  });

  it('validates node config', () => {
    const d = defaultNodeConfig(2);
    expect(validateNodeConfig(d)).toBe(d);
    expect(code(() => validateNodeConfig({ ...d, slots: 0 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => validateNodeConfig({ ...d, listen: 'nope' }))).toBe('INVALID_ARGUMENT');
    expect(code(() => validateNodeConfig({ ...d, leaseTtlSeconds: 1 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => validateNodeConfig({ ...d, urgentSlots: -1 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => validateNodeConfig({ ...d, urgentSlots: 1.5 }))).toBe('INVALID_ARGUMENT');
    expect(code(() => validateNodeConfig({ ...d, urgentPriority: 1000 }))).toBe('INVALID_ARGUMENT');
    expect(validateNodeConfig({ ...d, urgentSlots: 0 }).urgentSlots).toBe(0);
    expect(d.taskNice).toBe(0);
    for (const taskNice of [-1, 20, 2.5, NaN]) expect(code(() => validateNodeConfig({ ...d, taskNice }))).toBe('INVALID_ARGUMENT');
    expect(validateNodeConfig({ ...d, taskNice: 19 }).taskNice).toBe(19);
  });

  it('maps every code to a gRPC status and an exit status', () => {
    expect(ERROR_CODES.NOT_FOUND.exit).toBe(3);
    expect(ERROR_CODES.INVALID_STATE.exit).toBe(4);
    expect(ERROR_CODES.UNAVAILABLE.exit).toBe(5);
    expect(ERROR_CODES.INVALID_ARGUMENT.exit).toBe(2);
  });
});
