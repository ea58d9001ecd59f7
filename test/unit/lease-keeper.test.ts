/**
 * The fence deadline of a lease keeper, driven through a scripted keepalive
 * stream: timing logic only (the real stream is exercised by the node and
 * chaos tests, which cannot place an acknowledgement at an exact instant).
 */
import { EventEmitter } from 'events';
import { LeaseKeeper } from '../../src/store/membership';
import { Kv } from '../../src/store/etcd';

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

/** The lease was granted `grantedAgoMs` ago (its grant request's send time bounds the first deadline). */
function keeper(ttlSeconds: number, onAck?: (fenceAt: number) => void, grantedAgoMs = 100): { k: LeaseKeeper; stream: ScriptedStream } {
  const stream = new ScriptedStream();
  const kv = { client: { leaseClient: { leaseKeepAlive: async () => stream } } } as unknown as Kv;
  const k = new LeaseKeeper(kv, '42', Date.now() - grantedAgoMs, { name: 'n', ttlSeconds, onAck });
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
    const kv = {
      client: {
        leaseClient: {
          leaseKeepAlive: async () => {
            const st = new ScriptedStream();
            st.on('end', () => ended.push(st));
            streams.push(st);
            return st;
          },
        },
      },
    } as unknown as Kv;
    const k = new LeaseKeeper(kv, '42', Date.now() - 100, { name: 'n', ttlSeconds: 4 });
    k.start();
    try {
      const until = async (cond: () => boolean, what: string) => {
        const give = Date.now() + 3000;
        while (!cond()) {
          if (Date.now() > give) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 10));
        }
      };
      // The first stream (a member that died) never answers: given up after staleAfterMs.
      await until(() => streams.length === 2 && streams[1].writes > 0, 'a second stream');
      expect(ended).toContain(streams[0]);
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
    const kv = { client: { leaseClient: { leaseKeepAlive: async () => stream } } } as unknown as Kv;
    const beats: ((ok: boolean) => void)[] = [];
    const beat = () => new Promise<boolean>((resolve) => beats.push(resolve));
    // Granted 600 ms ago: more than half a keepalive interval (333 ms at TTL 2 s), so the first tick writes a heartbeat.
    const k = new LeaseKeeper(kv, '42', Date.now() - 600, { name: 'n', ttlSeconds: 2 }, beat);
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
    const kv = { client: { leaseClient: { leaseKeepAlive: async () => stream } } } as unknown as Kv;
    const k = new LeaseKeeper(kv, '42', Date.now() - 600, { name: 'n', ttlSeconds: 2 }, async () => false);
    k.start();
    await new Promise<void>((resolve) => k.signal.addEventListener('abort', () => resolve(), { once: true }));
    expect((k.signal.reason as Error).message).toMatch(/declared dead/);
    expect(Date.now()).toBeLessThan(k.fenceAtMs()); // long before the deadline
  });

  it('a committed write of the node key (a load update) counts as a heartbeat: no extra write', async () => {
    const stream = new ScriptedStream();
    const kv = { client: { leaseClient: { leaseKeepAlive: async () => stream } } } as unknown as Kv;
    let beats = 0;
    const k = new LeaseKeeper(kv, '42', Date.now() - 600, { name: 'n', ttlSeconds: 2 }, async () => (beats++, true));
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
});
