/**
 * The fence deadline of a lease keeper, driven through a scripted keepalive
 * stream: timing logic only (the real stream is exercised by the node and
 * chaos tests, which cannot place an acknowledgement at an exact instant).
 */
import { EventEmitter } from 'events';
import { fenceReason, KeepaliveLinks, LeaseKeeper, roundMembers } from '../../src/etcd/lease-keeper';

class ScriptedStream extends EventEmitter {
  writes = 0;
  write(): boolean {
    this.writes++;
    return true;
  }
  end(): void {
    this.emit('end');
  }
}

/** Links with no member list: every stream from `open` (the keeper then uses one per round). */
const anyMember = (open: () => ScriptedStream): KeepaliveLinks => ({ members: () => [], skipped: () => false, openStream: async () => open() });

/** Links over a member list: every stream opened is recorded with its member. */
function memberLinks(members: string[], skipped: (m: string) => boolean = () => false) {
  const opened: { member: string | undefined; stream: ScriptedStream }[] = [];
  const links: KeepaliveLinks = {
    members: () => members,
    skipped,
    openStream: async (member) => {
      const stream = new ScriptedStream();
      opened.push({ member, stream });
      return stream;
    },
  };
  return { links, opened };
}

/** The lease was granted `grantedAgoMs` ago (its grant request's send time bounds the first deadline). */
function keeper(ttlSeconds: number, onAck?: (fenceAt: number) => void, grantedAgoMs = 100): { k: LeaseKeeper; stream: ScriptedStream } {
  const stream = new ScriptedStream();
  const k = new LeaseKeeper(anyMember(() => stream), '42', Date.now() - grantedAgoMs, { ttlSeconds, onAck });
  return { k, stream };
}

const busyUntil = (ms: number) => {
  while (Date.now() < ms) {
    // a frozen event loop: no timer can fire
  }
};

describe('LeaseKeeper', () => {
  it('an acknowledgement handled after the fence deadline fences instead of extending the lease', async () => {
    const acks: number[] = [];
    const { k, stream } = keeper(2, (f) => acks.push(f));
    k.start();
    await new Promise((r) => setImmediate(r));
    expect(stream.writes).toBe(1); // the first keepalive went out (sent before the deadline)
    const deadline = k.fenceAtMs();
    busyUntil(deadline + 20); // the loop was stuck past the deadline...
    stream.emit('data', { ID: '42', TTL: '2' }); // ...and the ack is handled before the fence timer
    expect(k.signal.aborted).toBe(true);
    expect((k.signal.reason as Error).message).toMatch(/fenced/);
    expect(acks).toHaveLength(1); // only the initial deadline was ever published
  });

  it('an acknowledgement in time moves the deadline forward', async () => {
    const { k, stream } = keeper(2);
    k.start();
    await new Promise((r) => setImmediate(r));
    const before = k.fenceAtMs(); // from the grant, sent 100 ms before the keepalive
    stream.emit('data', { ID: '42', TTL: '2' });
    expect(k.signal.aborted).toBe(false);
    expect(k.fenceAtMs()).toBeGreaterThan(before);
    k.stop(new Error('done') as never);
  });

  it('replaces a stream whose keepalive goes unacknowledged, and ignores acks from the old one', async () => {
    const streams: ScriptedStream[] = [];
    const ended: ScriptedStream[] = [];
    const links = anyMember(() => {
      const st = new ScriptedStream();
      st.on('end', () => ended.push(st));
      streams.push(st);
      return st;
    });
    const k = new LeaseKeeper(links, '42', Date.now() - 100, { ttlSeconds: 4 });
    k.start();
    try {
      const until = async (cond: () => boolean, what: string) => {
        const give = Date.now() + 3000;
        while (!cond()) {
          if (Date.now() > give) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      // The first stream (a member that died) never answers: the next round does not
      // queue behind it but opens a new stream, and it is closed after staleAfterMs.
      await until(() => streams.length >= 2 && streams[1].writes > 0, 'a second stream');
      expect(streams[0].writes).toBe(1);
      await until(() => ended.includes(streams[0]), 'the first stream closed');
      expect(k.signal.aborted).toBe(false);
      const before = k.fenceAtMs();
      streams[0].emit('data', { ID: '42', TTL: '4' }); // late ack on the abandoned stream
      expect(k.fenceAtMs()).toBe(before);
      streams[1].emit('data', { ID: '42', TTL: '4' }); // the live member answers
      expect(k.fenceAtMs()).toBeGreaterThan(before);
    } finally {
      k.stop(new Error('done') as never);
    }
  });

  it('fences at the deadline when no acknowledgement comes', async () => {
    const { k } = keeper(2);
    k.start();
    const deadline = k.fenceAtMs();
    await new Promise<void>((resolve) => k.signal.addEventListener('abort', () => resolve(), { once: true }));
    // The timer wakes at the deadline itself, not a keepalive interval later.
    expect(Date.now()).toBeGreaterThanOrEqual(deadline);
    expect(Date.now() - deadline).toBeLessThan(200);
  });

  it('with heartbeats, the deadline follows the older of the last keepalive ack and the last committed heartbeat', async () => {
    const stream = new ScriptedStream();
    const beats: ((ok: boolean) => void)[] = [];
    const beat = () => new Promise<boolean>((resolve) => beats.push(resolve));
    // Granted 600 ms ago: more than half a keepalive interval (333 ms at TTL 2 s), so the first tick writes a heartbeat.
    const k = new LeaseKeeper(anyMember(() => stream), '42', Date.now() - 600, { ttlSeconds: 2 }, beat);
    k.start();
    try {
      await new Promise((r) => setImmediate(r));
      expect(stream.writes).toBe(1);
      expect(beats).toHaveLength(1);
      const fromGrant = k.fenceAtMs();
      stream.emit('data', { ID: '42', TTL: '2' });
      expect(k.fenceAtMs()).toBe(fromGrant); // the heartbeat has not committed: no extension
      beats[0](true);
      await new Promise((r) => setImmediate(r));
      expect(k.fenceAtMs()).toBeGreaterThan(fromGrant);
      expect(k.signal.aborted).toBe(false);
    } finally {
      k.stop(new Error('done') as never);
    }
  });

  it('fences at once when a heartbeat finds its node key gone (declared dead)', async () => {
    const stream = new ScriptedStream();
    const k = new LeaseKeeper(anyMember(() => stream), '42', Date.now() - 600, { ttlSeconds: 2 }, async () => false);
    k.start();
    await new Promise<void>((resolve) => k.signal.addEventListener('abort', () => resolve(), { once: true }));
    expect((k.signal.reason as Error).message).toMatch(/declared dead/);
    expect(Date.now()).toBeLessThan(k.fenceAtMs()); // long before the deadline
  });

  it('a committed write of the node key (a load update) counts as a heartbeat: no extra write', async () => {
    const stream = new ScriptedStream();
    let beats = 0;
    const k = new LeaseKeeper(anyMember(() => stream), '42', Date.now() - 600, { ttlSeconds: 2 }, async () => (beats++, true));
    const fromGrant = k.fenceAtMs();
    k.beatCommitted(Date.now());
    k.start();
    try {
      await new Promise((r) => setImmediate(r));
      expect(stream.writes).toBe(1);
      expect(beats).toBe(0);
      stream.emit('data', { ID: '42', TTL: '2' });
      expect(k.fenceAtMs()).toBeGreaterThan(fromGrant);
    } finally {
      k.stop(new Error('done') as never);
    }
  });

  it('each round goes to two members at once, each on a stream of its own', async () => {
    const { links, opened } = memberLinks(['a', 'b', 'c'], (m) => m === 'c');
    const k = new LeaseKeeper(links, '42', Date.now() - 100, { ttlSeconds: 2 });
    k.start();
    try {
      await new Promise((r) => setImmediate(r));
      // c is skipped (its probe does not answer): a and b, one stream each, one keepalive each.
      expect(opened.map((o) => o.member).sort()).toEqual(['a', 'b']);
      expect(opened.map((o) => o.stream.writes)).toEqual([1, 1]);
      const before = k.fenceAtMs();
      opened[1].stream.emit('data', { ID: '42', TTL: '2' }); // either member's answer is proof
      expect(k.fenceAtMs()).toBeGreaterThan(before);
    } finally {
      k.stop(new Error('done') as never);
    }
  });

  it('a stream stuck on an old keepalive is not used by the next round, and its late answer still counts', async () => {
    const streams: ScriptedStream[] = [];
    const k = new LeaseKeeper(
      anyMember(() => {
        const st = new ScriptedStream();
        streams.push(st);
        return st;
      }),
      '42',
      Date.now() - 100,
      { ttlSeconds: 6 }, // a round every second; a stream is closed after its keepalive waited 1.2 s
    );
    k.start();
    try {
      const give = Date.now() + 3000;
      while (streams.length < 2 || streams[1].writes === 0) {
        if (Date.now() > give) throw new Error('timed out waiting for the second round');
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(streams[0].writes).toBe(1); // nothing queued behind the stuck keepalive
      const before = k.fenceAtMs();
      streams[0].emit('data', { ID: '42', TTL: '6' }); // the leader answered the first round after all
      expect(k.fenceAtMs()).toBeGreaterThan(before);
      const afterFirst = k.fenceAtMs();
      streams[1].emit('data', { ID: '42', TTL: '6' });
      expect(k.fenceAtMs()).toBeGreaterThan(afterFirst); // the second round was sent later
    } finally {
      k.stop(new Error('done') as never);
    }
  });

  it('a heartbeat goes to the member that acknowledged the last keepalive', async () => {
    const { links, opened } = memberLinks(['a', 'b']);
    const beatsTo: (string | undefined)[] = [];
    const k = new LeaseKeeper(links, '42', Date.now() - 600, { ttlSeconds: 2 }, async (member) => (beatsTo.push(member), true));
    k.start();
    try {
      await new Promise((r) => setImmediate(r));
      expect(beatsTo).toEqual([undefined]); // no member has answered yet: any member
      const b = opened.find((o) => o.member === 'b')!;
      b.stream.emit('data', { ID: '42', TTL: '2' });
      const give = Date.now() + 3000;
      while (beatsTo.length < 2) {
        if (Date.now() > give) throw new Error('timed out waiting for the second heartbeat');
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(beatsTo[1]).toBe('b');
    } finally {
      k.stop(new Error('done') as never);
    }
  });
});

it('after a gap, the first acknowledgement sends the lagging heartbeat at once, to the member that answered', async () => {
  const { links, opened } = memberLinks(['a', 'b']);
  const beatsTo: (string | undefined)[] = [];
  // Granted 2 s ago with a 6 s TTL (a round every second): the heartbeat is two rounds behind.
  const k = new LeaseKeeper(links, '42', Date.now() - 2000, { ttlSeconds: 6 }, (member) => {
    beatsTo.push(member);
    return new Promise<boolean>(() => undefined); // never commits: the heartbeat stays behind
  });
  k.start();
  try {
    await new Promise((r) => setImmediate(r));
    expect(beatsTo).toEqual([undefined]); // the round's own heartbeat, before anyone answered
    opened.find((o) => o.member === 'a')!.stream.emit('data', { ID: '42', TTL: '6' });
    expect(beatsTo).toEqual([undefined, 'a']); // at once, not a round later
    opened.find((o) => o.member === 'b')!.stream.emit('data', { ID: '42', TTL: '6' });
    expect(beatsTo).toHaveLength(2); // same round: its send time is not newer
  } finally {
    k.stop(new Error('done') as never);
  }
});

describe('roundMembers', () => {
  const never = () => 0;
  it('picks two distinct members, leaving out skipped ones while others answer', () => {
    const got = roundMembers(['a', 'b', 'c', 'a'], (m) => m === 'a', never);
    expect(got.sort()).toEqual(['b', 'c']);
  });
  it('uses skipped members when every member is skipped (an outage: try them all)', () => {
    expect(roundMembers(['a', 'b'], () => true, never).sort()).toEqual(['a', 'b']);
  });
  it('prefers the members that acknowledged most recently', () => {
    const last: Record<string, number> = { a: 10, b: 30, c: 20 };
    expect(roundMembers(['a', 'b', 'c'], () => false, (m) => last[m])).toEqual(['b', 'c']);
  });
  it('one member: one stream per round; none: none', () => {
    expect(roundMembers(['a'], () => false, never)).toEqual(['a']);
    expect(roundMembers([], () => false, never)).toEqual([]);
  });
});

describe('LeaseKeeper fence reason', () => {
  const fenced = (k: LeaseKeeper) => new Promise<string>((resolve) => k.signal.addEventListener('abort', () => resolve((k.signal.reason as Error).message)));

  it('blames etcd when no acknowledgement came while the event loop was free', async () => {
    const { k } = keeper(2); // fences ~1 s after the grant
    const why = fenced(k);
    k.start();
    expect(await why).toMatch(/^no keepalive acknowledged for \d+ ms while this node's event loop answered within \d+ ms \(etcd did not answer in time\)/);
  });

  it('blames the node when its event loop was held past the deadline', async () => {
    const { k } = keeper(2);
    const why = fenced(k);
    k.start();
    await new Promise((r) => setTimeout(r, 50));
    busyUntil(k.fenceAtMs() + 300);
    expect(await why).toMatch(/event loop was held up to \d+ ms meanwhile \(too busy to hear etcd\)/);
  });
});

describe('fence reason', () => {
  it('says whether the node itself was held up or etcd did not answer', () => {
    expect(fenceReason('keepalive acknowledged', 3800, 2400.4, 5000)).toBe(
      "no keepalive acknowledged for 3800 ms, and this node's event loop was held up to 2400 ms meanwhile (too busy to hear etcd); fenced",
    );
    expect(fenceReason('heartbeat committed', 3900, 35, 5000)).toBe(
      "no heartbeat committed for 3900 ms while this node's event loop answered within 35 ms (etcd did not answer in time); fenced",
    );
    // The line is a keepalive's own wait (staleAfterMs: 1 s at a 5 s TTL).
    expect(fenceReason('keepalive acknowledged', 3800, 999, 5000)).toMatch(/etcd did not answer/);
    expect(fenceReason('keepalive acknowledged', 3800, 1000, 5000)).toMatch(/too busy/);
  });
});
