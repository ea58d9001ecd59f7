import { forEachLimited } from '../../src/core/limited';

/** A call that resolves when the test says so. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}

describe('forEachLimited', () => {
  it('keeps at most `limit` calls in flight and starts them in order', async () => {
    const started: number[] = [];
    const gates = new Map<number, ReturnType<typeof gate>>();
    let inFlight = 0;
    let maxInFlight = 0;
    const run = forEachLimited([0, 1, 2, 3, 4, 5], 2, async (i) => {
      started.push(i);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      const g = gate();
      gates.set(i, g);
      await g.promise;
      inFlight--;
    });
    const tick = () => new Promise((r) => setImmediate(r));
    await tick();
    expect(started).toEqual([0, 1]);
    gates.get(1)!.open();
    await tick();
    expect(started).toEqual([0, 1, 2]);
    for (const i of [0, 2, 3, 4, 5]) {
      await tick();
      gates.get(i)!.open();
    }
    await run;
    expect(started).toEqual([0, 1, 2, 3, 4, 5]);
    expect(maxInFlight).toBe(2);
  });

  it('starts nothing new after a failure and rethrows the first one once the others end', async () => {
    const started: number[] = [];
    const slow = gate();
    const run = forEachLimited([0, 1, 2, 3], 2, async (i) => {
      started.push(i);
      if (i === 0) await slow.promise;
      if (i === 1) throw new Error('boom 1');
      if (i === 0) throw new Error('boom 0');
    });
    const settled = jest.fn();
    run.then(settled, settled);
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1]);
    expect(settled).not.toHaveBeenCalled(); // item 0 still running
    slow.open();
    await expect(run).rejects.toThrow('boom 1');
    expect(started).toEqual([0, 1]);
  });

  it('does nothing for no items', async () => {
    const fn = jest.fn(async () => undefined);
    await forEachLimited([], 4, fn);
    expect(fn).not.toHaveBeenCalled();
  });
});
