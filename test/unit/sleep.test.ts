import { sleep } from '../../src/core/sleep';

describe('sleep', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('resolves after ms', async () => {
    let done = false;
    const p = sleep(1000).then(() => (done = true));
    await jest.advanceTimersByTimeAsync(999);
    expect(done).toBe(false);
    await jest.advanceTimersByTimeAsync(1);
    await p;
    expect(done).toBe(true);
  });

  it('resolves (not rejects) as soon as its signal aborts, and at once if aborted already', async () => {
    const ac = new AbortController();
    let done = false;
    const p = sleep(60_000, ac.signal).then(() => (done = true));
    await jest.advanceTimersByTimeAsync(10);
    expect(done).toBe(false);
    ac.abort(new Error('stop'));
    await p;
    expect(done).toBe(true);
    expect(jest.getTimerCount()).toBe(0);
    await expect(sleep(60_000, ac.signal)).resolves.toBeUndefined();
  });
});
