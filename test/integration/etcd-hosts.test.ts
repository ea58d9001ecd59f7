/**
 * Changing a running etcd3 client's members (src/etcd/hosts.ts) and the
 * probes that follow them, against the real test etcd: a proxy gives the same
 * member a second address, so a client can be moved from one to the other.
 */
import { Etcd3 } from 'etcd3';
import { connectEtcd } from '../../src/etcd/client';
import { EndpointHealth } from '../../src/etcd/endpoint-health';
import { clientEndpoints, setClientHosts } from '../../src/etcd/hosts';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { TcpProxy } from '../support/tcp-proxy';
import { thrownBy } from '../support/errors';

const cleanup: Array<() => unknown> = [];

afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function proxy(): Promise<TcpProxy> {
  const p = TcpProxy.fromUrl(testEtcdEndpoint());
  await p.start();
  cleanup.push(() => p.stop());
  return p;
}

function client(endpoints: string[]): Etcd3 {
  const c = connectEtcd({ endpoints });
  cleanup.push(() => c.close());
  return c;
}

it('moves requests and an open watch to the members it is given; the dropped member is never used again', async () => {
  const via = await proxy();
  const direct = testEtcdEndpoint();
  const c = client([via.url]);
  const key = `${uniqueRoot()}/k`;
  await c.put(key).value('1');
  const events: string[] = [];
  const watcher = await c.watch().key(key).create();
  cleanup.push(() => watcher.cancel());
  watcher.on('put', (kv) => events.push(kv.value.toString()));

  expect(setClientHosts(c, [direct])).toEqual({ added: [direct], removed: [via.url] });
  expect(clientEndpoints(c)).toEqual([direct]);
  // The old address goes away for good: requests and the watch must use the new one.
  via.partition();
  expect(await c.get(key).string()).toBe('1');
  const writer = client([direct]);
  await writer.put(key).value('2');
  await waitFor(() => events.includes('2') || undefined, { timeoutMs: 10_000, what: 'the watch to see the put through the new member' });
});

it('keeps the connections of members still listed and adds new ones with the same fault policy', async () => {
  const a = await proxy();
  const b = await proxy();
  const c = client([a.url]);
  await c.get('/x').string();
  expect(setClientHosts(c, [a.url, b.url])).toEqual({ added: [b.url], removed: [] });
  expect(setClientHosts(c, [b.url, a.url])).toEqual({ added: [], removed: [] });
  // b is cut: with two members the client's retry goes to a (b's failure never reached etcd).
  b.partition();
  for (let i = 0; i < 10; i++) await c.put(`${uniqueRoot()}/y`).value(String(i));
  expect(clientEndpoints(c).sort()).toEqual([a.url, b.url].sort());
});

it('refuses an empty list or a URL of the other scheme, leaving the client as it was', async () => {
  const c = client([testEtcdEndpoint()]);
  expect(thrownBy(() => setClientHosts(c, []))).toMatchObject({ code: 'INVALID_ARGUMENT' });
  const wrong = thrownBy(() => setClientHosts(c, ['https://127.0.0.1:1']));
  expect(wrong).toMatchObject({ code: 'INVALID_ARGUMENT' });
  expect(wrong.message).toBe("etcd endpoint https://127.0.0.1:1 does not use the client's scheme (http)");
  expect(clientEndpoints(c)).toEqual([testEtcdEndpoint()]);
});

it('probes follow the endpoint list: new ones are probed, dropped ones forgotten; with one left nothing is skipped', async () => {
  const a = await proxy();
  const b = await proxy();
  const logs: string[] = [];
  const health = new EndpointHealth([a.url], { connect: (e) => connectEtcd({ endpoints: [e], ownConnection: true }), everyMs: 100, timeoutMs: 500, log: (m) => logs.push(m) });
  cleanup.push(() => health.stop());
  health.start();
  expect(health.status()).toEqual({});
  b.partition();
  health.setEndpoints([a.url, b.url]);
  // Added while running: skipped until a probe of its own answered.
  expect(health.skipReason(b.url)).toBe('not probed yet');
  await waitFor(() => health.status()[b.url] || undefined, { timeoutMs: 5000, what: 'b probed and found down' });
  expect(health.status()[a.url]).toBeUndefined();
  expect(health.skipReason(b.url)).toBeDefined();
  health.setEndpoints([a.url]);
  expect(health.status()).toEqual({});
  expect(health.endpoints).toEqual([a.url]);
  expect(health.skipReason(b.url)).toBeUndefined();
  // The one member left is never skipped, even when its probe finds it down.
  a.partition();
  await waitFor(() => logs.find((l) => l.startsWith(`etcd member ${a.url} does not answer`)), { timeoutMs: 5000, what: "a's probe finding it down" });
  expect(health.skipReason(a.url)).toBeUndefined();
});
