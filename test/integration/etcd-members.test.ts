/**
 * EtcdMembers (loom members) against real etcd members: the list with roles
 * and who answers, and the guarded removal of a member whose node is gone.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { connectEtcd } from '../../src/etcd/client';
import { EmbeddedEtcd, EmbeddedEtcdOptions } from '../../src/etcd/embedded';
import { EtcdMembers, probeWith } from '../../src/etcd/members';
import { freePort } from '../support/etcd';
import { rejectionOf } from '../support/errors';

const running: EmbeddedEtcd[] = [];
const dirs: string[] = [];
const clients: { close(): void }[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const e of running.splice(0).reverse()) await e.stop(3000);
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function member(name: string, peers: { name: string; url: string }[], join: boolean): Promise<{ etcd: EmbeddedEtcd; peer: { name: string; url: string } }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `loom-members-${name}-`));
  dirs.push(dir);
  const [p, c] = [await freePort(), await freePort()];
  const opts: EmbeddedEtcdOptions = {
    name, dataDir: dir, peerListen: `http://127.0.0.1:${p}`, clientListen: `http://127.0.0.1:${c}`,
    peers, etcdBin: process.env.LOOM_ETCD_BIN || 'etcd', join, log: () => undefined,
  };
  const etcd = await EmbeddedEtcd.start(opts);
  running.push(etcd);
  await etcd.waitHealthy({ timeoutMs: 20_000 });
  return { etcd, peer: { name, url: opts.peerListen } };
}

it('lists the members with their roles; removes only the member of a node that is gone', async () => {
  const a = await member('a', [], false);
  const b = await member('b', [a.peer], true);
  const c = await member('c', [a.peer, b.peer], true);
  const client = connectEtcd({ endpoints: [a.etcd.clientUrl] });
  clients.push(client);
  const members = new EtcdMembers(client, probeWith((url) => connectEtcd({ endpoints: [url], ownConnection: true })));

  const listed = await members.list();
  expect(listed.map((m) => [m.name, m.learner, m.answers, m.problem])).toEqual([
    ['a', false, true, ''],
    ['b', false, true, ''],
    ['c', false, true, ''],
  ]);
  expect(listed.filter((m) => m.leader)).toHaveLength(1);
  expect(listed[1].id).toMatch(/^[0-9a-f]+$/);
  expect(listed[1].clientUrls).toEqual([b.etcd.clientUrl]);

  // b's node is alive, or its member answers: refused, nothing removed.
  const alive = await rejectionOf(members.remove('b', ['a', 'b']));
  expect(alive.code).toBe('INVALID_STATE');
  expect(alive.message).toContain('node "b" is alive: stop it first');
  const answers = await rejectionOf(members.remove(listed[1].id, ['a']));
  expect(answers.code).toBe('INVALID_STATE');
  expect(answers.message).toContain(`etcd member "b" still answers at ${b.etcd.clientUrl}`);
  const unknown = await rejectionOf(members.remove('zz', []));
  expect(unknown.code).toBe('NOT_FOUND');
  expect(unknown.message).toContain('(members: a, b, c)');

  // b and c gone: no majority of the three answers, so no change can commit.
  await c.etcd.stop();
  await b.etcd.stop();
  const noQuorum = await rejectionOf(members.remove('b', ['a']));
  expect(noQuorum.code).toBe('UNAVAILABLE');
  expect(noQuorum.message).toContain('only 1 of the 3 voting members answer');

  // b back, c gone for good: c no longer answers, and its member is removed by name.
  const b2 = await EmbeddedEtcd.start({
    name: 'b', dataDir: path.dirname(b.etcd.etcdDir), peerListen: b.peer.url, clientListen: b.etcd.clientUrl,
    peers: [a.peer], etcdBin: process.env.LOOM_ETCD_BIN || 'etcd', log: () => undefined,
  });
  running.push(b2);
  await b2.waitHealthy({ timeoutMs: 20_000 });
  const down = (await members.list()).find((m) => m.name === 'c');
  expect(down).toMatchObject({ answers: false, problem: `${c.etcd.clientUrl}: connection refused` });
  const { removed, members: left } = await members.remove('c', ['a', 'b']);
  expect(removed.name).toBe('c');
  expect(left.map((m) => m.name)).toEqual(['a', 'b']);
  expect((await members.list()).map((m) => m.name)).toEqual(['a', 'b']);
}, 60_000);
