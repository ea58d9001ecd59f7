/**
 * A running node follows the etcd cluster's membership: members that join
 * later receive its requests, removed ones are dropped (src/etcd/endpoint-sync.ts).
 * Real nodes, each embedding its etcd member.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultNodeConfig, NodeConfig } from '../../src/core/config';
import { Etcd3 } from 'etcd3';
import { LoomNode } from '../../src/node/node';
import { EmbeddedEtcd } from '../../src/etcd/embedded';
import { connectEtcd } from '../../src/etcd/client';
import { EndpointHealth } from '../../src/etcd/endpoint-health';
import { LoomApi } from '../../src/client/client';
import { TaskState } from '../../src/gen/loom';
import { freePort, testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode } from '../support/nodes';
import { TcpProxy } from '../support/tcp-proxy';

const SYNC_MS = 200;
const nodes: LoomNode[] = [];
const dirs: string[] = [];

afterEach(async () => {
  // One at a time: a leader stopping hands leadership to a peer first.
  for (const n of nodes.splice(0).reverse()) await n.stop({ graceMs: 0 }).catch(() => undefined);
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

interface Member {
  name: string;
  peer: string;
  client: string;
  logs: string[];
}

async function member(name: string): Promise<Member> {
  return { name, peer: `http://127.0.0.1:${await freePort()}`, client: `http://127.0.0.1:${await freePort()}`, logs: [] };
}

async function start(m: Member, peers: Member[], join: boolean): Promise<LoomNode> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `loom-sync-${m.name}-`));
  dirs.push(dataDir);
  const config: NodeConfig = {
    ...defaultNodeConfig(2),
    name: m.name,
    listen: '127.0.0.1:0',
    dataDir,
    peerListen: m.peer,
    clientListen: m.client,
    peers: peers.map((p) => ({ name: p.name, url: p.peer })),
    joinEtcd: join,
    etcdBin: process.env.LOOM_ETCD_BIN || 'etcd',
    killGraceMs: 500,
  };
  const node = await LoomNode.start(config, {
    endpointSyncMs: SYNC_MS,
    log: (msg) => {
      m.logs.push(msg);
      if (process.env.LOOM_TEST_VERBOSE) process.stderr.write(`${m.name}: ${msg}\n`);
    },
  });
  nodes.push(node);
  return node;
}

const sorted = (urls: string[]) => [...urls].sort();

it('a running node sends requests to members that joined after it, and stops using a removed one', async () => {
  const [ma, mb, mc] = [await member('sa'), await member('sb'), await member('sc')];
  const a = await start(ma, [], false);
  expect(a.endpointSync!.endpoints()).toEqual([ma.client]);

  // A learner (added and started, never promoted) gets no requests: sa's
  // list leaves it out, and a probe of its own says what it is.
  const ml = await member('sl');
  const learnerDir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-sync-sl-'));
  dirs.push(learnerDir);
  const learner = await EmbeddedEtcd.start({
    name: 'sl', dataDir: learnerDir, peerListen: ml.peer, clientListen: ml.client, peers: [{ name: 'sa', url: ma.peer }],
    etcdBin: process.env.LOOM_ETCD_BIN || 'etcd', join: true, log: (msg) => ml.logs.push(msg),
  });
  const health = new EndpointHealth([ma.client, ml.client], { connect: (e) => connectEtcd({ endpoints: [e], ownConnection: true }), everyMs: 100 });
  try {
    health.start();
    await waitFor(() => health.status()[ml.client] === 'it is a learner' || undefined, { timeoutMs: 15_000, what: 'the learner probed' });
    const seen = a.endpointSync!.lists;
    await waitFor(() => a.endpointSync!.lists > seen + 1 || undefined, { what: 'two more member lists on sa' });
    expect(a.endpointSync!.endpoints()).toEqual([ma.client]);
  } finally {
    health.stop();
    await learner.stop(3000);
  }
  // etcd 3.4 takes one learner at a time: remove it before the next join.
  const admin = new Etcd3({ hosts: [ma.client] });
  try {
    const listed = await admin.cluster.memberList({});
    const id = listed.members.find((x) => (x.peerURLs ?? []).includes(ml.peer))!.ID;
    await admin.cluster.memberRemove({ ID: id });
  } finally {
    admin.close();
  }

  const b = await start(mb, [ma], true);
  await waitFor(() => a.endpointSync!.endpoints().includes(mb.client) || undefined, { timeoutMs: 10_000, what: "sb's member in sa's endpoints" });
  expect(ma.logs.join('\n')).toContain(`etcd members changed: added ${mb.client}; requests now go to ${ma.client},${mb.client}`);

  const c = await start(mc, [ma, mb], true);
  const all = sorted([ma.client, mb.client, mc.client]);
  for (const n of [a, b]) await waitFor(() => sorted(n.endpointSync!.endpoints()).join() === all.join() || undefined, { timeoutMs: 10_000, what: 'all three members listed' });
  // sc started after the others joined: it listed all three itself, its own member first.
  const [first, ...others] = c.endpointSync!.endpoints();
  expect(first).toBe(mc.client);
  expect(sorted(others)).toEqual(sorted([ma.client, mb.client]));

  // sc goes away for good; its member is removed through sa (loom members remove).
  await c.stop({ graceMs: 0 });
  nodes.splice(nodes.indexOf(c), 1);
  const api = new LoomApi(a.address);
  try {
    await waitFor(async () => (await api.removeMember('sc')) && true, { timeoutMs: 20_000, what: "sc's member removed (once its node key is gone)" });
    for (const n of [a, b]) {
      await waitFor(() => !n.endpointSync!.endpoints().includes(mc.client) || undefined, { timeoutMs: 10_000, what: "sc's URL dropped" });
    }
    expect(ma.logs.join('\n')).toContain(`etcd members changed: removed ${mc.client}`);
    // The cluster of two still runs tasks through both nodes.
    for (const n of [a, b]) {
      const to = new LoomApi(n.address);
      try {
        const [id] = await to.submit([spec(['true'])]);
        expect(await to.wait(id)).toMatchObject({ state: TaskState.COMPLETED, exitCode: 0 });
      } finally {
        to.close();
      }
    }
  } finally {
    api.close();
  }
}, 90_000);

it('a node given --etcd URLs that are not the members\' own keeps them as given', async () => {
  const via = TcpProxy.fromUrl(testEtcdEndpoint());
  await via.start();
  const proxied = await startNode(uniqueRoot(), 'via-proxy', { etcdEndpoints: [via.url] }, { endpointSyncMs: 50 });
  const direct = await startNode(uniqueRoot(), 'direct', {}, { endpointSyncMs: 50 });
  try {
    await waitFor(() => proxied.logs.find((l) => l.startsWith('etcd endpoints stay as given by --etcd')), { what: 'the log line' });
    expect(proxied.logs.join('\n')).toContain(`etcd endpoints stay as given by --etcd (${via.url}): they are not the members' advertised client URLs`);
    expect(proxied.node.endpointSync!.endpoints()).toEqual([via.url]);
    // The test etcd's own URL: followed (the list is the same one member).
    await waitFor(() => direct.node.endpointSync!.lists > 1 || undefined, { what: 'two member lists read' });
    expect(direct.node.endpointSync!.endpoints()).toEqual([testEtcdEndpoint()]);
    expect(direct.logs.join('\n')).not.toContain('etcd endpoints stay as given');
  } finally {
    await stopNode(proxied);
    await stopNode(direct);
    await via.stop();
  }
});
