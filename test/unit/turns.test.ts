import { v7 as uuidv7 } from 'uuid';
import { firstRound, formatTurn, lastTurnMatters, parseTurn, ROUND_MAX } from '../../src/core/turns';
import { Keys } from '../../src/store/keys';

describe('owners take turns within a priority (firstRound)', () => {
  it('starts a newcomer at the head of the band, not behind the queue nor before the head', () => {
    expect(firstRound(0, undefined)).toBe(1); // an empty band: round 1
    expect(firstRound(57, undefined)).toBe(57);
    expect(firstRound(57, { round: 12, queued: true })).toBe(57); // its old turns were passed by the head
  });

  it("places an owner's next task after its last one still queued", () => {
    expect(firstRound(3, { round: 200, queued: true })).toBe(201);
  });

  it('forgets a turn whose task is no longer queued (ran, or the band emptied)', () => {
    expect(firstRound(3, { round: 100_000, queued: false })).toBe(3);
    expect(firstRound(0, { round: 100_000, queued: false })).toBe(1);
  });

  it('never passes the largest round', () => {
    expect(firstRound(0, { round: ROUND_MAX, queued: true })).toBe(ROUND_MAX);
  });

  it('looks the last task up only when it could place the owner after the head', () => {
    expect(lastTurnMatters(10, undefined)).toBe(false);
    expect(lastTurnMatters(10, 8)).toBe(false);
    expect(lastTurnMatters(10, 9)).toBe(false);
    expect(lastTurnMatters(10, 10)).toBe(true);
    expect(lastTurnMatters(0, 1)).toBe(true);
  });

  it('stores a turn as text and refuses anything else', () => {
    const id = uuidv7();
    expect(parseTurn(formatTurn(42, id))).toEqual({ round: 42, taskId: id });
    for (const bad of ['', '42', `0 ${id}`, `x ${id}`, `42 ${id} extra`, `${ROUND_MAX + 1} ${id}`]) expect(parseTurn(bad)).toBeUndefined();
  });
});

/**
 * The queue as the keys order it: owners submit, a node claims the head. A
 * model of what TurnBook and the claims do, on the real key schema.
 */
class Band {
  readonly keys = new Keys('');
  private queued = new Map<string, string>(); // key -> owner
  private last = new Map<string, { round: number; key: string }>();

  submit(owner: string, n: number, priority = 100): void {
    const head = this.head(priority);
    const l = this.last.get(owner);
    let round = firstRound(head, l && { round: l.round, queued: this.queued.has(l.key) });
    for (let i = 0; i < n; i++, round++) {
      const key = this.keys.queued(priority, uuidv7(), round);
      this.queued.set(key, owner);
      this.last.set(owner, { round, key });
    }
  }

  private head(priority: number): number {
    const [start, end] = this.keys.bandRounds(priority);
    const first = [...this.queued.keys()].filter((k) => k >= start && k < end).sort()[0];
    return first ? this.keys.parseQueued(first)!.round : 0;
  }

  /** Claims the head of the queue; its owner. */
  claim(): string | undefined {
    const first = [...this.queued.keys()].sort()[0];
    if (first === undefined) return undefined;
    const owner = this.queued.get(first)!;
    this.queued.delete(first);
    return owner;
  }

  drain(): string[] {
    const out: string[] = [];
    for (let o = this.claim(); o !== undefined; o = this.claim()) out.push(o);
    return out;
  }
}

describe('the queue order turns give', () => {
  it("runs bob's one task second after alice's 200 were queued, and right after the one running", () => {
    const q = new Band();
    q.submit('alice', 200);
    q.submit('bob', 1);
    // bob shares round 1 with alice's first task, which was submitted first.
    expect(q.drain().indexOf('bob')).toBe(1);
  });

  it('puts a newcomer at the round being served, after tasks already claimed', () => {
    const q = new Band();
    q.submit('alice', 200);
    for (let i = 0; i < 50; i++) q.claim();
    q.submit('bob', 1);
    expect(q.drain().indexOf('bob')).toBe(1); // with alice's round-51 task
  });

  it('interleaves two backlogs one for one, whoever submitted first', () => {
    const q = new Band();
    q.submit('alice', 100);
    for (let i = 0; i < 10; i++) q.claim();
    q.submit('bob', 50);
    const order = q.drain();
    expect(order.slice(0, 100)).toEqual(Array.from({ length: 50 }, () => ['alice', 'bob']).flat());
    expect(order.slice(100)).toEqual(Array(40).fill('alice'));
  });

  it('does not hold an owner back for turns it took long ago', () => {
    const q = new Band();
    q.submit('alice', 1000);
    q.drain();
    q.submit('bob', 100);
    q.claim();
    q.submit('alice', 1); // its last turn (1000) is gone: it starts at the head, not after round 1000
    expect(q.drain().indexOf('alice')).toBeLessThanOrEqual(1);
  });

  it("keeps an owner's own tasks in submit order, and three owners in turn", () => {
    const q = new Band();
    q.submit('a', 3);
    q.submit('b', 3);
    q.submit('c', 3);
    expect(q.drain()).toEqual(['a', 'b', 'c', 'a', 'b', 'c', 'a', 'b', 'c']);
  });

  it('leaves priority first: turns only order tasks of one priority', () => {
    const q = new Band();
    q.submit('alice', 5, 100);
    q.submit('bob', 1, 500);
    expect(q.drain()[0]).toBe('bob');
  });
});
