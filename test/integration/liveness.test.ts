/**
 * Heartbeats and declareDead against a real etcd: a node whose heartbeats
 * stop fences itself, and only then do survivors delete its key, while its
 * lease would still have kept the key alive.
 */
import { Etcd3 } from 'etcd3';
import { NodeInfo } from '../../src/gen/loom';
import { connectEtcd, Kv } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { Membership } from '../../src/store/membership';
import { NodeDirectory } from '../../src/store/node-directory';
import { Liveness } from '../../src/node/liveness';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { TcpProxy } from '../support/tcp-proxy';

let client: Etcd3;
let kv: Kv;

beforeAll(() => {
  client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
  kv = new Kv(client);
});
afterAll(() => client.close());

const info = (name: string) => NodeInfo.fromPartial({ name, slots: 1 });

describe('heartbeats', () => {
  it('declareDead fails once the node has written its key since the revision seen', async () => {
    const keys = new Keys(uniqueRoot());
    const m = new Membership(kv, keys, { name: 'x', ttlSeconds: 10 });
    const inc = await m.join(() => info('x'));
    try {
      const first = (await kv.get(keys.node('x'), 'test'))!;
      expect(await m.publish(info('x'))).toBe(true);
      const survivor = new Membership(kv, keys, { name: 'y', ttlSeconds: 10 });
      const stale = await survivor.declareDead('x', inc.lease, first.mod_revision);
      expect(stale.dead).toBe(false);
      expect(BigInt(stale.current!.mod_revision)).toBeGreaterThan(BigInt(first.mod_revision));
      expect(await kv.get(keys.node('x'), 'test')).toBeDefined();
      const fresh = await survivor.declareDead('x', inc.lease, stale.current!.mod_revision);
      expect(fresh.dead).toBe(true);
      expect(await kv.get(keys.node('x'), 'test')).toBeUndefined();
      // The node learns it on its next heartbeat and fences.
      await waitFor(() => inc.signal.aborted, { what: 'x fenced', timeoutMs: 5000 });
      expect((inc.signal.reason as Error).message).toMatch(/declared dead/);
    } finally {
      await m.leave();
    }
  });

  it('a heartbeat that repeats the record moves the sighting on without a decode; a changed record is decoded', async () => {
    const keys = new Keys(uniqueRoot());
    let record = info('x');
    const m = new Membership(kv, keys, { name: 'x', ttlSeconds: 2 });
    await m.join(() => record);
    const directory = new NodeDirectory(kv, keys);
    await directory.start();
    const revision = () => directory.silent('y', 0).find((s) => s.name === 'x')?.modRevision ?? '0';
    try {
      await waitFor(() => directory.get('x') !== undefined, { what: 'x listed' });
      const first = directory.get('x');
      const seen = BigInt(revision());
      await waitFor(() => BigInt(revision()) >= seen + 2n, { what: 'two heartbeats seen' });
      expect(directory.get('x')).toBe(first); // the same object: those puts were not decoded
      record = NodeInfo.fromPartial({ name: 'x', slots: 2 });
      await waitFor(() => directory.get('x')?.slots === 2, { what: 'changed record decoded' });
    } finally {
      await directory.stop();
      await m.leave();
    }
  });

  it('a node whose heartbeats stop is fenced before a survivor deletes its key, while its lease still lives', async () => {
    const keys = new Keys(uniqueRoot());
    let beating = true;
    const m = new Membership(kv, keys, { name: 'x', ttlSeconds: 3 });
    const inc = await m.join(() => {
      if (!beating) throw new Error('heartbeat write fails (test)');
      return info('x');
    });
    const directory = new NodeDirectory(kv, keys);
    await directory.start();
    const logs: string[] = [];
    const liveness = new Liveness({
      directory, membership: new Membership(kv, keys, { name: 'y', ttlSeconds: 3 }), self: 'y', silentMs: 3000,
      log: (l) => logs.push(l), checkEveryMs: 50,
    });
    let fencedAt = 0;
    let goneAt = 0;
    let leaseTtlAtGone = -1;
    inc.signal.addEventListener('abort', () => (fencedAt = Date.now()));
    directory.onGone((name) => {
      if (name !== 'x' || goneAt) return;
      goneAt = Date.now();
      void client.leaseClient.leaseTimeToLive({ ID: inc.lease }).then((r) => (leaseTtlAtGone = Number(r.TTL)));
    });
    try {
      await waitFor(() => directory.get('x') !== undefined, { what: 'x listed' });
      liveness.start();
      beating = false; // keepalives go on; only the heartbeat writes fail
      await waitFor(() => goneAt > 0, { what: 'x declared dead', timeoutMs: 10_000 });
      await waitFor(() => leaseTtlAtGone >= 0, { what: 'lease time to live read' });
      expect(fencedAt).toBeGreaterThan(0);
      expect(fencedAt).toBeLessThan(goneAt);
      expect((inc.signal.reason as Error).message).toMatch(/no heartbeat committed/);
      expect(leaseTtlAtGone).toBeGreaterThan(0); // not an expiry: the key was deleted by the survivor
      expect(liveness.declared).toBe(1);
      expect(logs.join('\n')).toMatch(/node x declared dead/);
    } finally {
      liveness.stop();
      await directory.stop();
      await m.leave();
    }
  });
});

describe('leaving', () => {
  it('a leave etcd never answers (quorum lost) gives up after its timeout; the lease then expires by itself', async () => {
    const keys = new Keys(uniqueRoot());
    const proxy = TcpProxy.fromUrl(testEtcdEndpoint());
    await proxy.start();
    const viaProxy = connectEtcd({ endpoints: [proxy.url] });
    const m = new Membership(new Kv(viaProxy), keys, { name: 'x', ttlSeconds: 2 });
    try {
      const inc = await m.join(() => info('x'));
      expect(await kv.get(keys.node('x'), 'test')).toBeDefined();
      proxy.stall();
      const t0 = Date.now();
      await m.leave('test', 300);
      // The revoke's default wait is 3 s; told 300 ms, it must not take anything like that.
      expect(Date.now() - t0).toBeLessThan(2000);
      expect(inc.signal.aborted).toBe(true);
      // Never revoked, the key goes with the lease's TTL.
      await waitFor(async () => (await kv.get(keys.node('x'), 'test')) === undefined, { what: 'x gone with its lease', timeoutMs: 10_000 });
    } finally {
      viaProxy.close();
      await proxy.stop();
    }
  });
});
