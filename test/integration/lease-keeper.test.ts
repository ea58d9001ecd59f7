/**
 * Keepalive rounds against a real etcd, with a second "member" that accepts
 * connections and never answers (a member cut off with its packets lost): no
 * round may be lost to it, since each round also goes to the member that
 * answers, on a stream no stuck keepalive blocks.
 */
import { Etcd3 } from 'etcd3';
import { connectEtcd, Kv } from '../../src/etcd/client';
import { EndpointHealth } from '../../src/etcd/endpoint-health';
import { LeaseKeeper } from '../../src/etcd/lease-keeper';
import { MemberClients } from '../../src/store/member-clients';
import { testEtcdEndpoint, waitFor } from '../support/etcd';
import { TcpProxy } from '../support/tcp-proxy';

let client: Etcd3;
let kv: Kv;
let silent: TcpProxy;

beforeAll(async () => {
  client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
  kv = new Kv(client);
  silent = TcpProxy.fromUrl(testEtcdEndpoint());
  await silent.start();
  silent.stall();
});
afterAll(async () => {
  client.close();
  await silent.stop();
});

it('with one of two members silent, every keepalive round is acknowledged', async () => {
  const live = testEtcdEndpoint();
  // Not started: no probe marks the silent member down, the keeper has to cope by itself.
  const health = new EndpointHealth([silent.url, live], { connect: (e) => connectEtcd({ endpoints: [e] }) });
  const links = new MemberClients({ health, fallback: kv, callTimeoutMs: 1000, connect: (e) => connectEtcd({ endpoints: [e], ownConnection: true }) });
  let rounds = 0;
  const counted = { ...links, members: () => (rounds++, links.members()), skipped: (m: string) => links.skipped(m), openStream: (m: string | undefined) => links.openStream(m) };
  const sentMs = Date.now();
  const grant = await client.leaseClient.leaseGrant({ TTL: 3 });
  let acks = -1; // start() publishes the grant's deadline once
  const keeper = new LeaseKeeper(counted, String(grant.ID), sentMs, { ttlSeconds: 3, onAck: () => acks++ });
  keeper.start();
  try {
    // 3 s TTL: a round every 500 ms, a stuck stream closed after 600 ms.
    await waitFor(() => rounds >= 8, { what: '8 keepalive rounds', timeoutMs: 15_000 });
    // The round in flight may not be answered yet; every earlier one must be.
    await waitFor(() => acks >= rounds - 1, { what: `an acknowledgement for each of ${rounds} rounds (have ${acks})`, timeoutMs: 2000 });
    expect(keeper.signal.aborted).toBe(false);
  } finally {
    keeper.stop(new Error('done') as never);
    links.close();
    await client.leaseClient.leaseRevoke({ ID: String(grant.ID) }).catch(() => undefined);
  }
});

it('a member that leaves the list loses its client, and a keeper stream on it moves to the members left', async () => {
  const a = TcpProxy.fromUrl(testEtcdEndpoint());
  const b = TcpProxy.fromUrl(testEtcdEndpoint());
  await a.start();
  await b.start();
  const health = new EndpointHealth([a.url, b.url], { connect: (e) => connectEtcd({ endpoints: [e] }) });
  const links = new MemberClients({ health, fallback: kv, callTimeoutMs: 1000, connect: (e) => connectEtcd({ endpoints: [e], ownConnection: true }) });
  const sentMs = Date.now();
  const grant = await client.leaseClient.leaseGrant({ TTL: 3 });
  let acks = 0;
  const keeper = new LeaseKeeper(links, String(grant.ID), sentMs, { ttlSeconds: 3, onAck: () => acks++ });
  try {
    const aKv = links.kv(a.url);
    expect(await aKv.get('/x', 'test')).toBeUndefined(); // a's client works
    keeper.start();
    await waitFor(() => acks >= 3, { what: 'acknowledgements through both members' });
    health.setEndpoints([b.url]); // a was removed from the cluster (endpoint-sync.ts)
    a.partition(); // and is gone: a stream left on it would never answer
    const before = acks;
    await waitFor(() => acks >= before + 4, { what: 'acknowledgements through b alone', timeoutMs: 10_000 });
    await expect(aKv.get('/x', 'test')).rejects.toThrow(/closed/);
    expect(keeper.signal.aborted).toBe(false);
  } finally {
    keeper.stop(new Error('done') as never);
    links.close();
    await client.leaseClient.leaseRevoke({ ID: String(grant.ID) }).catch(() => undefined);
    await a.stop();
    await b.stop();
  }
});
