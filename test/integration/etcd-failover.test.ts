/**
 * The etcd client against a member that stops answering without closing its
 * connections (packets lost): requests skip it while its probe fails
 * (EndpointHealth), and a watch stream on it is closed by the gRPC keepalive
 * and opened again. The member is the shared test etcd behind TcpProxies
 * that stall on demand.
 */
import { Etcd3 } from 'etcd3';
import { connectEtcd, KEEPALIVE_EMBEDDED_MS } from '../../src/etcd/client';
import { EndpointHealth } from '../../src/etcd/endpoint-health';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { TcpProxy } from '../support/tcp-proxy';

const proxies: TcpProxy[] = [];
/** Undone last-first after each test, so a failed test leaves nothing running. */
const closers: (() => unknown)[] = [];

async function proxy(): Promise<TcpProxy> {
  const p = TcpProxy.fromUrl(testEtcdEndpoint());
  await p.start();
  proxies.push(p);
  return p;
}

function track<T extends { close(): void } | { stop(): void }>(x: T): T {
  closers.push(() => ('close' in x ? x.close() : x.stop()));
  return x;
}

afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  for (const p of proxies.splice(0)) await p.stop();
});

it('requests skip a member that stops answering and use it again once it answers; with every member down none is skipped', async () => {
  const [a, b] = [await proxy(), await proxy()];
  const health = track(new EndpointHealth([a.url, b.url], { connect: (e) => connectEtcd({ endpoints: [e], ownConnection: true }), everyMs: 200, timeoutMs: 500 }));
  const client = track(connectEtcd({ endpoints: [a.url, b.url], health }));
  health.start();
  const key = `${uniqueRoot()}/k`;
  await client.put(key).value('v');

  a.stall();
  await waitFor(() => health.skipReason(a.url), { what: 'the stalled member to be skipped' });
  // Every request now goes to b: none waits for a deadline on a.
  for (let i = 0; i < 30; i++) {
    expect(await client.get(key).options({ deadline: Date.now() + 1000 })).toBe('v');
  }

  a.heal();
  await waitFor(() => health.status()[a.url] === undefined, { what: 'the member to answer again' });
  expect(health.skipReason(a.url)).toBeUndefined();

  a.stall();
  b.stall();
  await waitFor(() => health.status()[a.url] !== undefined && health.status()[b.url] !== undefined, { what: 'both members to be seen down' });
  expect([health.skipReason(a.url), health.skipReason(b.url)]).toEqual([undefined, undefined]);
});

it('a watch on a member that stops answering is closed by the keepalive and resumes on a new connection', async () => {
  const a = await proxy();
  const client = track(connectEtcd({ endpoints: [a.url], keepaliveMs: KEEPALIVE_EMBEDDED_MS }));
  const writer = track(new Etcd3({ hosts: testEtcdEndpoint() }));
  const root = uniqueRoot();
  const watcher = await client.watch().prefix(root).create();
  closers.push(() => watcher.cancel().catch(() => undefined));
  const seen: string[] = [];
  watcher.on('put', (kv) => seen.push(kv.value.toString()));
  let disconnected = false;
  watcher.on('disconnected', () => (disconnected = true));
  await writer.put(`${root}/1`).value('before');
  await waitFor(() => seen.includes('before'), { what: 'the first event' });

  a.stall();
  // Nothing passes, nothing is closed: only the keepalive can tell.
  await waitFor(() => disconnected, { timeoutMs: 10_000, what: 'the watch stream to be closed' });
  a.heal();
  await writer.put(`${root}/2`).value('after');
  await waitFor(() => seen.includes('after'), { timeoutMs: 10_000, what: 'an event on the reopened watch' });
});
