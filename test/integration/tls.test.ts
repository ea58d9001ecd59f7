/**
 * Mutual TLS end to end: in-process nodes serving the API over TLS (against
 * the shared, plaintext test etcd), the CLI with LOOM_TLS_*, ownership, the
 * node-to-node log proxy, every refusal explained on both sides, and an
 * embedded etcd running with client-cert auth and peer TLS.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { Etcd3 } from 'etcd3';
import { LogChunk, LoomClient, TaskState } from '../../src/gen/loom';
import { LoomApi } from '../../src/client/client';
import { channelCredentials, readTlsFiles, TlsFiles, TlsMaterial } from '../../src/wire/tls';
import { initCa, issueCert } from '../../src/bin/certs-command';
import { defaultNodeConfig } from '../../src/core/config';
import { LoomNode } from '../../src/node/node';
import { EmbeddedEtcd } from '../../src/etcd/embedded';
import { freePort, uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';
import { cli } from '../support/cluster';

jest.setTimeout(120_000);

let dir: string;
const files: Record<string, TlsFiles> = {};
const ids: Record<string, TlsMaterial> = {};

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-tls-'));
  const pki = path.join(dir, 'pki');
  const other = path.join(dir, 'other');
  await initCa({ dir: pki });
  await initCa({ dir: other });
  const add = async (key: string, d: string, role: 'node' | 'client', name: string, extra: { hosts?: string[]; days?: number } = {}) => {
    const r = await issueCert({ dir: d, role, name, ...extra });
    files[key] = { caFile: path.join(d, 'ca.crt'), certFile: r.cert, keyFile: r.key };
  };
  for (const n of ['t1', 't2', 'e1', 'm1', 'm2', 'm3']) await add(n, pki, 'node', n, { hosts: ['127.0.0.1'] });
  for (const c of ['alice', 'bob', 'ops']) await add(c, pki, 'client', c);
  await add('expired', pki, 'client', 'old', { days: -1 });
  await add('foreign', other, 'client', 'alice');
  for (const c of ['alice', 'bob', 'ops', 'expired', 'foreign', 't2']) ids[c] = readTlsFiles(files[c]);
  // Trusts this cluster's CA, but its certificate comes from another CA.
  ids.forged = { ...ids.alice, cert: ids.foreign.cert, key: ids.foreign.key };
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const envOf = (who: string) => ({ LOOM_TLS_CA: files[who].caFile, LOOM_TLS_CERT: files[who].certFile, LOOM_TLS_KEY: files[who].keyFile });

describe('a TLS cluster of two nodes', () => {
  let a: TestNode;
  let b: TestNode;
  const apis: LoomApi[] = [];
  const api = (node: TestNode, who: string | null) => {
    const x = new LoomApi(node.node.address, { tls: who === null ? null : ids[who], deadlineMs: 5000 });
    apis.push(x);
    return x;
  };
  const logsOf = async (x: LoomApi, id: string, follow = false) => {
    let out = '';
    for await (const c of x.logs(id, follow)) out += Buffer.from(c.data).toString();
    return out;
  };

  beforeAll(async () => {
    const root = uniqueRoot();
    a = await startNode(root, 't1', { tls: files.t1, admins: ['ops'] });
    b = await startNode(root, 't2', { tls: files.t2, admins: ['ops'] });
  });
  afterAll(async () => {
    for (const x of apis) x.close();
    await stopNode(b);
    await stopNode(a);
  });

  it('serves a client with a cluster certificate, and records it as the owner', async () => {
    const alice = api(a, 'alice');
    const [id] = await alice.submit([spec(['sh', '-c', 'echo hello from $LOOM_NODE'], { pinNode: 't1' })]);
    const t = await alice.wait(id);
    expect(t).toMatchObject({ state: TaskState.COMPLETED, owner: 'alice' });
    expect(await logsOf(alice, id)).toBe('hello from t1\n');
    expect((await alice.nodes()).map((n) => n.name).sort()).toEqual(['t1', 't2']);
  });

  it('proxies logs between nodes with the node certificate', async () => {
    const alice = api(a, 'alice');
    const [id] = await alice.submit([spec(['sh', '-c', 'echo one; sleep 1; echo two'], { pinNode: 't2' })]);
    await waitFor(async () => (await alice.get(id)).state === TaskState.RUNNING, { what: 'running on t2' });
    // Asked of t1 while t2 runs it: t1 proxies to t2 (Logs with attempt > 0).
    expect(await logsOf(alice, id, true)).toBe('one\ntwo\n');
  });

  it('a host network is for admins only: refused at submit with PERMISSION_DENIED, with no node allowing it to anyone', async () => {
    const container = (network: string) => ({ container: { image: 'loom-busybox:latest', pull: 'never', mounts: [], network, user: '' } });
    for (const network of ['host', 'container:other']) {
      await expect(api(a, 'alice').submit([spec(['true'], container(network))])).rejects.toMatchObject({
        code: 'PERMISSION_DENIED',
        message: `alice may not use network ${network}: only an admin (see --admin) may, or anyone on a node started with --allow-host-network (no live node is)`,
      });
    }
    // An admin's is accepted, and recorded as an admin's (the nodes that run it check that again).
    const ops = api(a, 'ops');
    const [id] = await ops.submit([spec(['true'], container('host'))]);
    expect(await ops.get(id)).toMatchObject({ owner: 'ops', submittedByAdmin: true });
    await ops.cancel(id);
    // Any other network is anyone's.
    const [plain] = await api(a, 'alice').submit([spec(['true'], container('bridge'))]);
    expect(await ops.get(plain)).toMatchObject({ owner: 'alice', submittedByAdmin: false });
    await ops.cancel(plain);
  });

  it('refuses a plaintext client, with the reason on both sides', async () => {
    await expect(api(a, null).nodes()).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringMatching(/requires mutual TLS.*LOOM_TLS_CA/) });
    await waitFor(() => a.logs.some((l) => /refused plaintext connection from 127\.0\.0\.1:\d+: this node requires mutual TLS/.test(l)), { what: 'node log line' });
  });

  it('refuses a client of another CA, with the reason on both sides', async () => {
    // Its CA does not know the node's certificate: the client gives up in the handshake.
    await expect(api(a, 'foreign').nodes()).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/not signed by the CA in LOOM_TLS_CA/) });
    await waitFor(() => a.logs.some((l) => /TLS handshake with 127\.0\.0\.1:\d+ failed: the client/.test(l)), { what: 'node log line' });
    // It trusts the node, but its own certificate is from another CA.
    await expect(api(a, 'forged').nodes()).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringMatching(/CN=alice: it is not signed by this cluster's CA/) });
    await waitFor(() => a.logs.some((l) => /refused TLS connection from .*CN=alice: it is not signed by this cluster's CA/.test(l)), { what: 'node log line' });
  });

  it('refuses an expired client certificate, with the reason on both sides', async () => {
    await expect(api(a, 'expired').nodes()).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringMatching(/CN=old: it expired on \d{4}-/) });
    await waitFor(() => a.logs.some((l) => /refused TLS connection from .*CN=old: it expired/.test(l)), { what: 'node log line' });
  });

  it('refuses a client certificate used as a node', async () => {
    const alice = api(a, 'alice');
    const [id] = await alice.submit([spec(['echo', 'x'], { pinNode: 't1' })]);
    await alice.wait(id);
    const attemptLog = (creds: TlsMaterial) =>
      new Promise<{ code?: number; details?: string; data: string }>((resolve) => {
        const c = new LoomClient(a.node.address, channelCredentials(creds));
        let data = '';
        const call = c.logs({ id, follow: false, attempt: 1 });
        call.on('data', (m: LogChunk) => (data += Buffer.from(m.data).toString()));
        call.on('error', (e: grpc.ServiceError) => {
          c.close();
          resolve({ code: e.code, details: e.details, data });
        });
        call.on('end', () => {
          c.close();
          resolve({ data });
        });
      });
    const denied = await attemptLog(ids.alice);
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.details).toMatch(/node-to-node call; alice presented a client certificate, not a node certificate/);
    await waitFor(() => a.logs.some((l) => /denied: .*node-to-node call; alice/.test(l)), { what: 'node log line' });
    // The same call with a node certificate is the proxy's, and works.
    expect(await attemptLog(ids.t2)).toEqual({ data: 'x\n' });
    // And a node will not start with a client certificate.
    await expect(
      LoomNode.start({ ...defaultNodeConfig(1), name: 'alice', listen: '127.0.0.1:0', dataDir: path.join(dir, 'nope'), etcdEndpoints: ['http://127.0.0.1:1'], tls: files.alice }, { log: () => undefined }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/is a client certificate.*needs a node certificate/) });
  });

  it("shows a task's result to its owner and admins, not to others", async () => {
    const alice = api(a, 'alice');
    const [id] = await alice.submit([spec(['sh', '-c', 'printf private > "$LOOM_RESULT"'])]);
    expect(Buffer.from((await alice.wait(id)).result).toString()).toBe('private');
    expect((await api(b, 'bob').get(id)).result).toHaveLength(0);
    expect((await api(b, 'bob').wait(id)).result).toHaveLength(0);
    expect(Buffer.from((await api(b, 'ops').get(id)).result).toString()).toBe('private');
  });

  it("lets only the owner or an admin cancel a task or read its logs (CLI exit code 7)", async () => {
    const alice = api(a, 'alice');
    const [id] = await alice.submit([spec(['sh', '-c', 'echo secret output; exec sleep 30'], { env: { TOKEN: 't0ken' } })]);
    await waitFor(async () => (await alice.get(id)).state === TaskState.RUNNING, { what: 'running' });
    const bob = api(b, 'bob');
    await expect(bob.cancel(id)).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringMatching(/bob may not cancel task .* belongs to alice/) });
    await expect(logsOf(bob, id)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    expect((await bob.get(id)).spec?.env).toEqual({ TOKEN: '(hidden)' });
    const node = a.node.address;
    const asBob = await cli(['-N', node, 'cancel', id], envOf('bob'));
    expect(asBob.code).toBe(7);
    expect(asBob.stderr).toMatch(/^loom: bob may not cancel task .* belongs to alice/);
    expect((await cli(['-N', node, 'logs', id], envOf('bob'))).code).toBe(7);
    const asOps = await cli(['-N', node, 'logs', id], envOf('ops'));
    expect(asOps).toMatchObject({ code: 0, stdout: 'secret output\n' });
    expect((await cli(['-N', node, 'cancel', id], envOf('ops'))).code).toBe(0);
    expect((await alice.wait(id)).state).toBe(TaskState.CANCELLED);
    // The owner may, too; and without LOOM_TLS_* the CLI is refused with the way out.
    const [mine] = await alice.submit([spec(['sleep', '30'])]);
    expect((await cli(['-N', node, 'cancel', mine], envOf('alice'))).code).toBe(0);
    const plain = await cli(['-N', node, 'status', mine], { LOOM_TLS_CA: '', LOOM_TLS_CERT: '', LOOM_TLS_KEY: '' });
    expect(plain.code).toBe(7);
    expect(plain.stderr).toMatch(/requires mutual TLS/);
  });

  it('cancels every queued task of the caller in one call (an admin: every one), leaving running tasks alone', async () => {
    const alice = api(a, 'alice');
    const bob = api(b, 'bob');
    const ops = api(a, 'ops');
    const [running] = await alice.submit([spec(['sleep', '30'])]);
    await waitFor(async () => (await alice.get(running)).state === TaskState.RUNNING, { what: 'running' });
    // Nothing is claimed while both nodes are drained: what is submitted stays queued.
    await ops.drain('t1', true);
    await ops.drain('t2', true);
    await waitFor(async () => (await ops.nodes()).every((n) => n.draining), { what: 'both nodes draining' });
    try {
      const alices = await alice.submit([spec(['true']), spec(['true']), spec(['true'])]);
      const bobs = await bob.submit([spec(['true']), spec(['true'])]);
      const asBob = await cli(['-N', b.node.address, 'cancel', '--all-queued', '--json'], envOf('bob'));
      expect(asBob).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(asBob.stdout)).toEqual({ cancelled: 2, changed: 0 });
      for (const id of bobs) expect((await bob.get(id)).state).toBe(TaskState.CANCELLED);
      for (const id of alices) expect((await alice.get(id)).state).toBe(TaskState.QUEUED);
      expect(await ops.cancelQueued()).toEqual({ cancelled: 3, changed: 0 });
      for (const id of alices) expect((await alice.get(id)).state).toBe(TaskState.CANCELLED);
      expect((await alice.get(running)).state).toBe(TaskState.RUNNING);
      expect(await alice.cancelQueued()).toEqual({ cancelled: 0, changed: 0 });
    } finally {
      await ops.drain('t1', false);
      await ops.drain('t2', false);
      await alice.cancel(running);
    }
  });

  it('lets only admins drain nodes', async () => {
    await expect(api(a, 'alice').drain('t2', true)).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    const ops = api(a, 'ops');
    await ops.drain('t2', true);
    await ops.drain('t2', false);
  });
});

describe('an embedded etcd member in TLS mode', () => {
  it('runs with client-cert auth, admits node certificates only, and serves a node over TLS', async () => {
    const [peer, client] = [await freePort(), await freePort()];
    const dataDir = path.join(dir, 'e1');
    const node = await LoomNode.start(
      {
        ...defaultNodeConfig(2),
        name: 'e1',
        listen: '127.0.0.1:0',
        dataDir,
        peerListen: `https://127.0.0.1:${peer}`,
        clientListen: `https://127.0.0.1:${client}`,
        tls: files.e1,
        killGraceMs: 500,
      },
      { log: (m) => process.env.LOOM_TEST_VERBOSE && process.stderr.write(`e1: ${m}\n`) },
    );
    const alice = new LoomApi(node.address, { tls: ids.alice });
    try {
      const [id] = await alice.submit([spec(['echo', 'over tls'])]);
      expect(await alice.wait(id)).toMatchObject({ state: TaskState.COMPLETED, owner: 'alice' });
      // loom members: the node probes its member over TLS with its own certificate.
      expect((await alice.members()).members).toEqual([
        expect.objectContaining({ name: 'e1', leader: true, answers: true, nodeUp: true, problem: '', clientUrls: [`https://127.0.0.1:${client}`] }),
      ]);
      const etcd = (creds: TlsMaterial) =>
        new Etcd3({ hosts: [`https://127.0.0.1:${client}`], credentials: { rootCertificate: creds.ca, certChain: creds.cert, privateKey: creds.key }, faultHandling: {} });
      // A node certificate may read etcd; a client certificate of the same CA may not.
      const asNode = etcd(ids.t2);
      const asClient = etcd(ids.alice);
      try {
        expect(await asNode.get(`/task/${id}`).buffer()).not.toBeNull();
        await expect(asClient.get(`/task/${id}`).buffer()).rejects.toThrow();
      } finally {
        asNode.close();
        asClient.close();
      }
      const log = fs.readFileSync(path.join(dataDir, 'etcd.log'), 'utf8');
      expect(log).toMatch(/--client-cert-auth/);
      expect(log).toMatch(/--peer-client-cert-auth/);
    } finally {
      alice.close();
      await node.stop({ graceMs: 0 });
    }
  });

  it('forms a three-member cluster over peer TLS; a member that lost its data rejoins over TLS with --join', async () => {
    const names = ['m1', 'm2', 'm3'];
    const p = await Promise.all(names.map(async () => ({ peer: await freePort(), client: await freePort() })));
    const members = names.map((name, i) => ({ name, url: `https://127.0.0.1:${p[i].peer}` }));
    const started: EmbeddedEtcd[] = [];
    try {
      for (const [i, name] of names.entries()) {
        started.push(
          await EmbeddedEtcd.start({
            name,
            dataDir: path.join(dir, name),
            peerListen: members[i].url,
            clientListen: `https://127.0.0.1:${p[i].client}`,
            peers: members,
            etcdBin: process.env.LOOM_ETCD_BIN || 'etcd',
            tls: files[name],
          }),
        );
      }
      await Promise.all(started.map((e) => e.waitHealthy({ timeoutMs: 60_000 })));
      const c = new Etcd3({ hosts: started.map((e) => e.clientUrl), credentials: { rootCertificate: ids.t2.ca, certChain: ids.t2.cert, privateKey: ids.t2.key }, faultHandling: {} });
      try {
        expect((await c.cluster.memberList({})).members.map((m) => m.name).sort()).toEqual(names);
        await c.put('/tls-check').value('ok');
      } finally {
        c.close();
      }
      // Members on one host dial each other from 127.0.0.1: etcd must not insist on the source IP.
      for (const e of started) expect(fs.readFileSync(e.logPath, 'utf8')).not.toMatch(/does not match any of/);

      // m3 loses its data dir and comes back with join (peer API and member
      // changes over TLS, with its node certificate).
      const m3 = started.pop()!;
      await m3.stop(3000);
      fs.rmSync(path.join(dir, 'm3', 'etcd'), { recursive: true, force: true });
      const again = await EmbeddedEtcd.start({
        name: 'm3', dataDir: path.join(dir, 'm3'), peerListen: members[2].url, clientListen: `https://127.0.0.1:${p[2].client}`,
        peers: members, etcdBin: process.env.LOOM_ETCD_BIN || 'etcd', tls: files.m3, join: true,
      });
      started.push(again);
      await again.waitHealthy({ timeoutMs: 60_000 });
      const c3 = new Etcd3({ hosts: [again.clientUrl], credentials: { rootCertificate: ids.t2.ca, certChain: ids.t2.cert, privateKey: ids.t2.key }, faultHandling: {} });
      try {
        expect((await c3.get('/tls-check').string())).toBe('ok');
        expect((await c3.cluster.memberList({})).members.map((m) => m.name).sort()).toEqual(names);
      } finally {
        c3.close();
      }
    } finally {
      for (const e of started) await e.stop(3000);
    }
  });
});
