import { v7 as uuidv7 } from 'uuid';
import { isTimeBucket, nextTimeBucket, timeBucketAt, timeBucketOf } from '../../src/core/ids';
import { prefixEnd } from '../../src/etcd/client';
import { Keys, pad, checkTaskId } from '../../src/store/keys';
import { TaskState } from '../../src/gen/loom';

describe('key schema', () => {
  const k = new Keys('');
  const id = uuidv7();

  it('builds and parses every key shape', () => {
    expect(k.task(id)).toBe(`/task/${id}`);
    expect(k.parseTask(k.task(id))).toBe(id);
    expect(k.parseQueued(k.queued(90, id))).toEqual({ priority: 90, round: 0, id });
    expect(k.queued(90, id, 7)).toBe(`/task/status/queued/909/r0000000007/${id}`);
    expect(k.parseQueued(k.queued(90, id, 7))).toEqual({ priority: 90, round: 7, id });
    expect(k.turn(90, 'alice')).toBe('/turn/909/alice');
    expect(k.parseRunning(k.running('node2', id))).toEqual({ node: 'node2', id });
    expect(k.parseStatus(k.terminal(TaskState.COMPLETED, 1700000000000, id))).toEqual({ state: 'completed', id });
    expect(k.parseNode(k.node('n1'))).toBe('n1');
    expect(k.parseCancel(k.cancel('n1', id))).toEqual({ node: 'n1', id });
  });

  it('rejects keys of other shapes', () => {
    expect(k.parseTask('/task/status/queued/100/x')).toBeUndefined();
    expect(k.parseQueued(`/task/status/queued/1/${id}`)).toBeUndefined();
    expect(k.parseQueued(`/task/status/queued/100/not-an-id`)).toBeUndefined();
    expect(k.parseQueued(`/task/status/queued/100/r12/${id}`)).toBeUndefined();
    expect(k.parseQueued(`/task/status/queued/100/r0000000001/x/${id}`)).toBeUndefined();
    expect(() => k.turn(1, 'a/b')).toThrow(/holds a '\/'/);
    expect(k.parseRunning(`/task/status/running/${id}`)).toBeUndefined();
    expect(k.parseNode('/node/a/b')).toBeUndefined();
  });

  it('queued keys sort by priority (high first), then submit order', () => {
    const ids = Array.from({ length: 50 }, () => uuidv7());
    const keys = [
      ...ids.map((i) => k.queued(10, i)),
      k.queued(90, ids[49]),
      k.queued(999, ids[10]),
      k.queued(0, ids[0]),
    ];
    const sorted = [...keys].sort();
    expect(sorted[0]).toBe(k.queued(999, ids[10]));
    expect(sorted[1]).toBe(k.queued(90, ids[49]));
    expect(sorted.slice(2, 52)).toEqual(ids.map((i) => k.queued(10, i)));
    expect(sorted[52]).toBe(k.queued(0, ids[0]));
  });

  it('within a priority: keys without a round (older nodes) first, then by round, then submit order', () => {
    const [a, b, c, d] = Array.from({ length: 4 }, () => uuidv7());
    const keys = [k.queued(100, d, 2), k.queued(100, a, 10), k.queued(100, c), k.queued(100, b, 2), k.queued(101, d, 99)];
    expect([...keys].sort()).toEqual([k.queued(101, d, 99), k.queued(100, c), k.queued(100, b, 2), k.queued(100, d, 2), k.queued(100, a, 10)]);
    const [start, end] = k.bandRounds(100);
    expect(keys.filter((x) => x >= start && x < end).sort()).toEqual([k.queued(100, b, 2), k.queued(100, d, 2), k.queued(100, a, 10)]);
    expect(k.queued(100, c).startsWith(k.band(100))).toBe(true);
  });

  it('terminal keys sort by finish time; epochs are fixed width', () => {
    const a = k.terminal(TaskState.FAILED, 999, id);
    const b = k.terminal(TaskState.FAILED, 1000, id);
    expect(a < b).toBe(true);
    expect(pad(42, 13)).toHaveLength(13);
  });

  it('keeps records apart from the status index', () => {
    expect(k.task(id) >= k.taskRangeStart && k.task(id) < k.taskRangeEnd).toBe(true);
    for (const key of [k.queued(1, id), k.running('n', id), k.terminal(TaskState.LOST, 1, id)]) {
      expect(key >= k.taskRangeStart && key < k.taskRangeEnd).toBe(false);
    }
  });

  it('uses a root for every key and validates it', () => {
    const r = new Keys('/t-1');
    expect(r.task(id).startsWith('/t-1/task/')).toBe(true);
    expect(r.parseQueued(r.queued(5, id, 3))).toEqual({ priority: 5, round: 3, id });
    expect(() => new Keys('bad root')).toThrow(/invalid key root/);
  });

  it('computes prefix range ends', () => {
    expect(prefixEnd('/a/')).toBe('/a0');
    expect(() => checkTaskId('nope')).toThrow(/not a task id/);
  });
});

describe('time buckets of task ids', () => {
  it('puts a UUIDv7 in the 4,096 ms bucket of its creation time', () => {
    const ms = Date.UTC(2026, 10, 29, 12, 0, 0, 123);
    const id = uuidv7({ msecs: ms });
    expect(timeBucketOf(id)).toBe(timeBucketAt(ms));
    expect(isTimeBucket(timeBucketOf(id))).toBe(true);
    // Every id of the bucket sorts inside [bucket, next bucket).
    const first = Math.floor(ms / 4096) * 4096;
    for (const t of [first, first + 4095]) {
      const other = uuidv7({ msecs: t });
      expect(timeBucketOf(other)).toBe(timeBucketAt(ms));
      expect(other >= timeBucketAt(ms) && other < nextTimeBucket(timeBucketAt(ms))).toBe(true);
    }
    expect(timeBucketOf(uuidv7({ msecs: first + 4096 }))).toBe(nextTimeBucket(timeBucketAt(ms)));
    expect(timeBucketOf(uuidv7({ msecs: first - 1 }))).not.toBe(timeBucketAt(ms));
  });

  it('steps to the next bucket across the dash and at the end of time', () => {
    expect(nextTimeBucket('01a229c0-7')).toBe('01a229c0-8');
    expect(nextTimeBucket('01a229cf-f')).toBe('01a229d0-0');
    expect(nextTimeBucket('0fffffff-f')).toBe('10000000-0');
    expect(nextTimeBucket('ffffffff-f')).toBe('g');
    expect(timeBucketAt(0)).toBe('00000000-0');
    expect(isTimeBucket('01a229c0-')).toBe(false);
    expect(isTimeBucket('01A229C0-7')).toBe(false);
  });

  it('names time markers under their own prefix, outside the record range', () => {
    const k = new Keys('/r');
    expect(k.timeMarker('01a229c0-7')).toBe('/r/tasktime/01a229c0-7');
    expect(k.parseTimeMarker(k.timeMarker('01a229c0-7'))).toBe('01a229c0-7');
    expect(k.timeMarker('01a229c0-7') >= k.taskRangeStart && k.timeMarker('01a229c0-7') < k.taskRangeEnd).toBe(false);
  });
});
