/**
 * Tenancy against a real etcd and a real TLS node: owners take turns within
 * a priority (core/turns.ts), and who may submit urgent priorities.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { JobSpec, TaskState } from '../../src/gen/loom';
import { LoomApi } from '../../src/client/client';
import { readTlsFiles, TlsFiles, TlsMaterial } from '../../src/wire/tls';
import { initCa, issueCert } from '../../src/bin/certs-command';
import { NodeConfig } from '../../src/core/config';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { connectEtcd, Kv, put } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { encodeTask } from '../../src/store/codec';
import { TaskTransitions } from '../../src/store/transitions';
import { QueueWindow } from '../../src/store/queue-window';
import { sharedFile, sharedTmpDir, spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(120_000);

let dir: string;
const files: Record<string, TlsFiles> = {};
const ids: Record<string, TlsMaterial> = {};
const apis: LoomApi[] = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-tenancy-'));
  await initCa({ dir });
  const add = async (role: 'node' | 'client', name: string) => {
    const r = await issueCert({ dir, role, name, ...(role === 'node' ? { hosts: ['127.0.0.1'] } : {}) });
    files[name] = { caFile: path.join(dir, 'ca.crt'), certFile: r.cert, keyFile: r.key };
  };
  for (const n of ['f1', 'u1', 'q1', 'q2', 'q3']) await add('node', n);
  for (const c of ['alice', 'bob', 'ops', 'pager']) {
    await add('client', c);
    ids[c] = readTlsFiles(files[c]);
  }
});

afterAll(() => {
  for (const x of apis) x.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const client = (node: TestNode, who: string) => {
  const x = new LoomApi(node.node.address, { tls: ids[who], deadlineMs: 10_000 });
  apis.push(x);
  return x;
};

const start = (name: string, extra: Partial<NodeConfig> = {}, root = uniqueRoot()) => startNode(root, name, { tls: files[name], ...extra });

describe('owners take turns within a priority', () => {
  let n: TestNode;
  const root = uniqueRoot();
  beforeAll(async () => {
    n = await start('f1', { slots: 1, urgentSlots: 0 }, root);
  });
  afterAll(async () => stopNode(n));

  it("runs bob's one task among the first few after alice queued 200 (one node, one slot)", async () => {
    const alice = client(n, 'alice');
    const bob = client(n, 'bob');
    const order = sharedFile(sharedTmpDir('loom-turns-'), 'order');
    // Each task writes its owner's name when it starts; one slot runs them one at a time.
    const task = (who: string, sleep: string) => spec(['sh', '-c', `echo ${who} >> ${order}; sleep ${sleep}`]);
    const aliceIds = await alice.submit(Array.from({ length: 200 }, () => task('alice', '0.1')));
    const [bobId] = await bob.submit([task('bob', '0')]);
    // Without turns bob's task is the 201st: 20 s of alice's work ahead of it.
    const done = await waitFor(async () => {
      const t = await bob.get(bobId);
      return t.state === TaskState.COMPLETED && t;
    }, { timeoutMs: 10_000, what: "bob's task to complete" });
    const lines = fs.readFileSync(order, 'utf8').trim().split('\n');
    const position = lines.indexOf('bob');
    // The bound: alice's tasks claimed before bob's submit (c; the node claims
    // none ahead: they take 100 ms), then at most the one alice task sharing
    // bob's round (the head's round when bob submitted; hers was submitted
    // first), then bob.
    const aliceTasks = await Promise.all(aliceIds.map((id) => alice.get(id)));
    const claimedBefore = aliceTasks.filter((t) => t.startedAtMs > 0 && t.startedAtMs < done.submittedAtMs).length;
    // Usually 1 (bob submits within alice's first task); the bound below is what matters.
    expect(claimedBefore).toBeLessThanOrEqual(10);
    expect(position).toBeGreaterThanOrEqual(0);
    expect(position).toBeLessThanOrEqual(claimedBefore + 1);
    expect(done.queueRound).toBeGreaterThan(0);
    await alice.cancelQueued();
  });

  it('runs a task an older node queued under the old key (no round), ahead of the rounds of its band', async () => {
    const alice = client(n, 'alice');
    const order = sharedFile(sharedTmpDir('loom-turns-'), 'order');
    const aliceIds = await alice.submit(Array.from({ length: 20 }, () => spec(['sh', '-c', `echo alice >> ${order}; sleep 0.1`])));
    // What an older node's submit writes: the record and /task/status/queued/<ppp>/<id>.
    const etcd = connectEtcd({ endpoints: [testEtcdEndpoint()] });
    try {
      const keys = new Keys(root);
      const old = new TaskTransitions(new Kv(etcd), keys).newRecord(spec(['sh', '-c', `echo old >> ${order}`]), 'carol', Date.now());
      const value = encodeTask(old);
      expect(keys.queued(100, old.id)).toBe(`${root}/task/status/queued/899/${old.id}`);
      await new Kv(etcd).txn({ compare: [], success: [put(keys.task(old.id), value), put(keys.queued(100, old.id), value)] }, 'old submit');
      await waitFor(async () => (await alice.get(old.id)).state === TaskState.COMPLETED, { what: 'the old-key task to complete' });
    } finally {
      etcd.close();
    }
    const lines = fs.readFileSync(order, 'utf8').trim().split('\n');
    // It sorted first in its band: it ran while most of alice's 2 s of work still waited.
    expect(lines.indexOf('old')).toBeGreaterThanOrEqual(0);
    expect(lines.indexOf('old')).toBeLessThan(10);
    for (const id of aliceIds) await alice.cancel(id).catch(() => undefined);
  });
});

describe('urgent priorities', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await start('u1', { admins: ['ops'], urgentSubmitters: ['pager'] });
  });
  afterAll(async () => stopNode(n));

  const urgentDenied = (who: string, priority: number) =>
    `${who} may not submit priority ${priority}: priorities from 900 (--urgent-priority) are urgent, for admins (--admin) and identities ` +
    'the node names with --urgent-submitter only; use a priority below 900';

  it('refuses them to other identities with PERMISSION_DENIED, in a submit, a run and a job', async () => {
    const alice = client(n, 'alice');
    await expect(alice.submit([spec(['true'], { priority: 900 })])).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: urgentDenied('alice', 900) });
    await expect(alice.submit([spec(['true']), spec(['true'], { priority: 999 })])).rejects.toMatchObject({
      code: 'PERMISSION_DENIED', message: `task 1: ${urgentDenied('alice', 999)}`,
    });
    await expect(alice.run(spec(['true'], { priority: 950 }))).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: urgentDenied('alice', 950) });
    const job = JobSpec.fromPartial({ name: 'urgent-job', count: 2, template: spec(['true'], { priority: 990 }) });
    await expect(alice.submitJob(job)).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringContaining(urgentDenied('alice', 990)) });
    // Nothing of those was queued.
    expect((await alice.list({ state: TaskState.QUEUED })).tasks).toEqual([]);
    expect((await alice.listJobs(10, '')).jobs).toEqual([]);
    // Below the threshold: anyone's.
    const done = await alice.run(spec(['true'], { priority: 899 }));
    expect(done.state).toBe(TaskState.COMPLETED);
  });

  it('takes them from an admin and from an --urgent-submitter identity', async () => {
    for (const who of ['ops', 'pager']) {
      const t = await client(n, who).run(spec(['true'], { priority: 999 }));
      expect(t).toMatchObject({ state: TaskState.COMPLETED, owner: who });
    }
  });

  it('takes them from anyone without TLS (everyone is local and may)', async () => {
    const plain = await startNode(uniqueRoot(), 'p1', { urgentSubmitters: [] });
    try {
      expect((await plain.api.run(spec(['true'], { priority: 999 }))).state).toBe(TaskState.COMPLETED);
    } finally {
      await stopNode(plain);
    }
  });
});

describe("the queue window's view of a band's head round (saves a submit's read of it)", () => {
  it('finds the first round of a band in the window, none for an empty band, and does not guess past the window', async () => {
    const etcd = connectEtcd({ endpoints: [testEtcdEndpoint()] });
    const kv = new Kv(etcd);
    const keys = new Keys(uniqueRoot());
    const window = new QueueWindow(kv, keys, 3);
    try {
      const queue = async (priority: number, round: number) => {
        const t = new TaskTransitions(kv, keys).newRecord(spec(['true'], { priority }), 'x', Date.now());
        await kv.txn({ compare: [], success: [put(keys.queued(priority, t.id, round), encodeTask(t))] }, 't');
      };
      await queue(100, 0); // an old key: first in its band, and no round
      await queue(100, 6);
      await queue(100, 5);
      await queue(50, 2);
      await window.start();
      expect(window.view().map((e) => keys.parseQueued(e.key)?.round)).toEqual([0, 5, 6]);
      expect(window.headRound(100)).toBe(5);
      expect(window.headRound(200)).toBe(0); // sorts before the window's first key: empty
      expect(window.headRound(50)).toBeUndefined(); // beyond the full window: read it from etcd
      await queue(300, 9);
      await waitFor(() => window.headRound(300) === 9, { what: 'the window to see a new band' });
      expect(window.headRound(50)).toBeUndefined();
    } finally {
      await window.stop();
      etcd.close();
    }
  });
});

describe('--max-queued-per-owner', () => {
  const nodes: TestNode[] = [];
  const root = uniqueRoot();
  beforeAll(async () => {
    for (const name of ['q1', 'q2', 'q3']) nodes.push(await start(name, { maxQueuedPerOwner: 100, slots: 2 }, root));
  });
  afterAll(async () => {
    for (const x of nodes) await stopNode(x);
  });

  // Pinned to a node that does not exist: it stays queued.
  const parked = (n: number) => Array.from({ length: n }, () => spec(['true'], { pinNode: 'nowhere' }));
  const queuedOf = async (who: string) => (await client(nodes[0], who).list({ state: TaskState.QUEUED, pageSize: 1000 })).tasks.filter((t) => t.owner === who).length;

  it('refuses a submit that would pass the limit, naming it, and queues nothing of it; claims and cancels make room', async () => {
    const alice = client(nodes[0], 'alice');
    const mine = await alice.submit(parked(95));
    await expect(alice.submit(parked(6))).rejects.toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      message: '0 of 6 tasks queued; alice has 95 tasks queued; 6 more would pass the limit of 100 queued tasks per owner (--max-queued-per-owner): wait for some to run, or cancel some',
    });
    expect(await queuedOf('alice')).toBe(95);
    // Another owner has a queue of its own.
    await client(nodes[1], 'bob').submit(parked(100));
    // Queued, then claimed and run: they leave the count.
    const ran = await alice.submit([spec(['true']), spec(['true']), spec(['true']), spec(['true']), spec(['true'])]);
    for (const id of ran) expect((await alice.wait(id)).state).toBe(TaskState.COMPLETED);
    await alice.submit(parked(5));
    await expect(alice.submit(parked(1))).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    // A cancel leaves it too.
    await alice.cancel(mine[0]);
    await alice.submit(parked(1));
    expect(await queuedOf('alice')).toBe(100);
    // A job that would pass it is refused at its submit.
    const job = JobSpec.fromPartial({ name: 'too-big', count: 3, template: spec(['true']) });
    await expect(alice.submitJob(job)).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringContaining('a job of 3 more') });
    // `loom cancel --all-queued` empties the count as well.
    await alice.cancelQueued();
    await alice.submit(parked(100));
    await alice.cancelQueued();
    await client(nodes[1], 'bob').cancelQueued();
  });

  it('holds under concurrent submits of one owner through three nodes', async () => {
    const apis = nodes.map((x) => client(x, 'ops'));
    // 45 submits of 3 at once, 15 through each node: 33 fit under 100 (99 tasks; a 34th would make 102).
    const results = await Promise.allSettled(Array.from({ length: 45 }, (_, i) => apis[i % 3].submit(parked(3))));
    const accepted = results.filter((r) => r.status === 'fulfilled').length;
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    expect(await queuedOf('ops')).toBe(accepted * 3);
    expect(accepted).toBe(33);
    await apis[0].cancelQueued();
  });

  it('checks a submit of several transactions (42 tasks each) as a whole', async () => {
    const pager = client(nodes[2], 'pager');
    await expect(pager.submit(parked(101))).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringMatching(/^0 of 101 tasks queued; pager has 0 tasks queued/) });
    await pager.submit(parked(90));
    await expect(pager.submit(parked(11))).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    await pager.submit(parked(10));
    expect(await queuedOf('pager')).toBe(100);
    await pager.cancelQueued();
  });
});
