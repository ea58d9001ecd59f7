/** EngineWatch: the node's view of whether its Docker engine answers. */
import { EngineWatch, holdAfterStrikes, MAX_HOLD_MS } from '../../src/node/engine-watch';

const until = async (cond: () => boolean, what: string) => {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('EngineWatch', () => {
  let watch: EngineWatch | undefined;
  afterEach(() => watch?.stop());

  it('starts down when the first ping fails, and comes up when a later one answers', async () => {
    let answers = false;
    let pings = 0;
    const changes: [boolean, string][] = [];
    watch = new EngineWatch({ ping: async () => (pings++, answers), intervalMs: 10, onChange: (up, why) => changes.push([up, why]) });
    await watch.start();
    expect(watch.available).toBe(false);
    expect(changes).toEqual([]);
    answers = true;
    await until(() => watch!.available, 'the engine to be seen');
    expect(changes).toEqual([[true, 'the engine answers']]);
    answers = false;
    await until(() => !watch!.available, 'the engine to be seen gone');
    expect(changes[1]).toEqual([false, 'the engine does not answer']);
    expect(pings).toBeGreaterThanOrEqual(3);
  });

  it('is up at once when the engine answers at start', async () => {
    const changes: boolean[] = [];
    watch = new EngineWatch({ ping: async () => true, intervalMs: 60_000, onChange: (up) => changes.push(up) });
    await watch.start();
    expect(watch.available).toBe(true);
    expect(changes).toEqual([true]);
  });

  it('markDown takes it down at once, and a ping sent before does not bring it back', async () => {
    let release!: (ok: boolean) => void;
    let pending: Promise<boolean> = Promise.resolve(true);
    let pings = 0;
    const changes: [boolean, string][] = [];
    watch = new EngineWatch({ ping: () => (pings++, pending), intervalMs: 20, onChange: (up, why) => changes.push([up, why]) });
    await watch.start();
    expect(watch.available).toBe(true);
    // The next ping hangs; its answer ("up") arrives after markDown.
    pending = new Promise((r) => (release = r));
    const sent = pings;
    await until(() => pings > sent, 'the next ping to be in flight');
    watch.markDown('create container: connect ENOENT');
    expect(watch.available).toBe(false);
    release(true);
    await new Promise((r) => setTimeout(r, 5));
    expect(watch.available).toBe(false);
    expect(changes).toEqual([[true, 'the engine answers'], [false, 'create container: connect ENOENT']]);
    // A ping sent after markDown that answers brings it back.
    pending = Promise.resolve(true);
    await until(() => watch!.available, 'the engine to be seen again');
  });

  it('stops pinging on stop()', async () => {
    let pings = 0;
    watch = new EngineWatch({ ping: async () => (pings++, false), intervalMs: 5, onChange: () => undefined });
    await watch.start();
    await until(() => pings >= 3, 'a few pings');
    watch.stop();
    const seen = pings;
    await new Promise((r) => setTimeout(r, 50));
    expect(pings).toBeLessThanOrEqual(seen + 1);
  });

  it('creations failing again and again: answering pings bring it back only after a hold that doubles, until a container runs', async () => {
    let clock = 1_000_000;
    let pings = 0;
    const changes: [boolean, string][] = [];
    watch = new EngineWatch({ ping: async () => (pings++, true), intervalMs: 5, now: () => clock, onChange: (up, why) => changes.push([up, why]) });
    await watch.start();
    expect(watch.available).toBe(true);
    const pingsAfter = async (n: number) => {
      const from = pings;
      await until(() => pings >= from + n, `${n} more pings`);
    };
    // First failure: back with the next answering ping (as before any hold).
    watch.markDown('create container: connect ECONNRESET');
    await until(() => watch!.available, 'back after one failure');
    // Second in a row: held for 2 intervals (10 ms of the fake clock), whatever the pings say.
    watch.markDown('create container: connect ECONNRESET');
    expect(changes.at(-1)![1]).toMatch(/2 container creations failed in a row: container tasks again no sooner than 0 s from now/);
    await pingsAfter(3);
    expect(watch.available).toBe(false);
    clock += 10;
    await until(() => watch!.available, 'back once the hold passed');
    // Third: 4 intervals.
    watch.markDown('create container: connect ECONNRESET');
    clock += 19;
    await pingsAfter(3);
    expect(watch.available).toBe(false);
    clock += 1;
    await until(() => watch!.available, 'back after the doubled hold');
    // A container ran: the next failure is a first one again.
    watch.markWorked();
    watch.markDown('create container: connect ECONNRESET');
    await until(() => watch!.available, 'back at once after a container ran');
  });
});

describe('holdAfterStrikes', () => {
  it('none for the first failure, then doubling ping intervals, capped', () => {
    expect(holdAfterStrikes(1, 10_000)).toBe(0);
    expect(holdAfterStrikes(2, 10_000)).toBe(20_000);
    expect(holdAfterStrikes(3, 10_000)).toBe(40_000);
    expect(holdAfterStrikes(6, 10_000)).toBe(MAX_HOLD_MS);
    expect(holdAfterStrikes(1000, 10_000)).toBe(MAX_HOLD_MS);
  });
});
