import { KeyedQueue, retryPause } from '../../src/core/keyed-queue';
import { parseNodeArgs } from '../../src/bin/node-command';

describe('--max-queued-per-owner', () => {
  it('is off by default and takes 0 (off) to 100,000,000', () => {
    expect(parseNodeArgs([], {}).maxQueuedPerOwner).toBe(0);
    expect(parseNodeArgs(['--max-queued-per-owner', '5000'], {}).maxQueuedPerOwner).toBe(5000);
    for (const bad of ['-1', '1.5', '100000001', 'lots']) {
      expect(() => parseNodeArgs(['--max-queued-per-owner', bad], {})).toThrow(/--max-queued-per-owner/);
    }
  });
});

describe('KeyedQueue: guarded writes of one key in one process wait for each other', () => {
  it('runs work of one key one at a time in call order, and other keys meanwhile', async () => {
    const q = new KeyedQueue();
    const log: string[] = [];
    const gate: Record<string, () => void> = {};
    const step = (name: string) => () => {
      log.push(`start ${name}`);
      return new Promise<string>((resolve) => (gate[name] = () => { log.push(`end ${name}`); resolve(name); }));
    };
    const a1 = q.run('alice', step('a1'));
    const a2 = q.run('alice', step('a2'));
    const b1 = q.run('bob', step('b1'));
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(['start a1', 'start b1']);
    gate.b1();
    gate.a1();
    await a1;
    await new Promise((r) => setImmediate(r));
    expect(log).toEqual(['start a1', 'start b1', 'end b1', 'end a1', 'start a2']);
    gate.a2();
    expect(await Promise.all([a1, a2, b1])).toEqual(['a1', 'a2', 'b1']);
    await new Promise((r) => setImmediate(r));
    expect(q.size).toBe(0);
  });

  it('goes on after a failure, which reaches only its own caller', async () => {
    const q = new KeyedQueue();
    const failed = q.run('k', async () => { throw new Error('lost'); });
    const next = q.run('k', async () => 'next');
    await expect(failed).rejects.toThrow('lost');
    expect(await next).toBe('next');
  });

  it('pauses a retry a little, longer the more tries, and never for long', async () => {
    const t0 = Date.now();
    await retryPause(100, () => 0.999);
    expect(Date.now() - t0).toBeLessThan(200);
  });
});
