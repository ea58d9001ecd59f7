/**
 * The API in TLS mode over a stand-in etcd: per-client stream limits, env
 * hiding, drain and member removal for admins only, and the node-only log call. (The same rules
 * against a real etcd and real nodes: test/integration/tls.test.ts.)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { v7 as uuidv7 } from 'uuid';
import { Task, TaskState } from '../../src/gen/loom';
import { ApiServer } from '../../src/node/api-server';
import { testEtcdMembers } from '../support/members';
import { LogService } from '../../src/node/logs';
import { loadNodeTls } from '../../src/node/tls';
import { Kv } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { TaskQueries } from '../../src/store/queries';
import { TaskTransitions } from '../../src/store/transitions';
import { JobStore } from '../../src/store/jobs';
import { encodeTask } from '../../src/store/codec';
import { LoomApi } from '../../src/client/client';
import { readTlsFiles, TlsMaterial } from '../../src/wire/tls';
import { initCa, issueCert } from '../../src/bin/certs-command';
import { fakeEtcd } from '../support/fake-etcd';

jest.setTimeout(60_000);

describe('API access rules (TLS)', () => {
  const keys = new Keys('');
  const ALICE_TASK = uuidv7();
  const ALICE_HTTP = uuidv7();
  let dir: string;
  let server: ApiServer;
  let address: string;
  const ids: Record<string, TlsMaterial> = {};
  const apis: LoomApi[] = [];
  const open = new Set<AbortController>();

  const api = (who: string) => {
    const a = new LoomApi(address, { tls: ids[who] });
    apis.push(a);
    return a;
  };

  let etcdMembers: ReturnType<typeof testEtcdMembers>;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-access-'));
    await initCa({ dir });
    const n = await issueCert({ dir, role: 'node', name: 'n1', hosts: ['127.0.0.1'] });
    const ca = path.join(dir, 'ca.crt');
    for (const who of ['alice', 'bob', 'ops']) {
      const c = await issueCert({ dir, role: 'client', name: who });
      ids[who] = readTlsFiles({ caFile: ca, certFile: c.cert, keyFile: c.key });
    }
    ids.n1 = loadNodeTls({ caFile: ca, certFile: n.cert, keyFile: n.key }, 'n1');
    const hook = { method: 'POST', url: 'https://hooks.example/x', headers: [{ name: 'Authorization', value: 'Bearer s3cret' }], body: Buffer.from('{"token":"s3cret"}') };
    const store = new Map([
      [keys.task(ALICE_TASK), encodeTask(Task.fromPartial({ id: ALICE_TASK, owner: 'alice', state: TaskState.RUNNING, attempt: 1, spec: { command: ['sleep', '9'], env: { TOKEN: 's3cret' } } }))],
      [keys.task(ALICE_HTTP), encodeTask(Task.fromPartial({ id: ALICE_HTTP, owner: 'alice', state: TaskState.RUNNING, attempt: 1, spec: { http: hook } }))],
    ]);
    const kv = new Kv(fakeEtcd(store));
    const transitions = new TaskTransitions(kv, keys);
    // A log stream that lasts until the client goes away.
    const logs = {
      stream: (_id: string, _f: boolean, _a: number, _w: unknown, signal: AbortSignal) => new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })),
      close: () => undefined,
    } as unknown as LogService;
    etcdMembers = testEtcdMembers();
  server = new ApiServer({
      members: etcdMembers.members,
      kv, queries: new TaskQueries(kv, keys), transitions, logs, log: () => undefined, jobs: new JobStore(kv, keys, transitions),
      tryRunHere: async () => false, nodeName: 'n1', tls: ids.n1, admins: ['ops'], limits: { streamsPerClient: 2 },
    });
    address = `127.0.0.1:${await server.listen('127.0.0.1:0')}`;
  });

  afterAll(async () => {
    for (const c of open) c.abort();
    for (const a of apis) a.close();
    await server.close(0);
    etcdMembers.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Opens a follow log stream; resolves once the node accepted it (or rejects with its error). */
  async function follow(a: LoomApi): Promise<AbortController> {
    const c = new AbortController();
    open.add(c);
    const it = a.logs(ALICE_TASK, true, c.signal)[Symbol.asyncIterator]();
    const first = it.next();
    const failed = await Promise.race([first.then(() => false, (e) => e), new Promise((r) => setTimeout(() => r(false), 300))]);
    if (failed) throw failed;
    first.catch(() => undefined);
    return c;
  }

  it('limits concurrent log streams per client, with the limit in the message', async () => {
    const alice = api('alice');
    const a1 = await follow(alice);
    await follow(alice);
    await expect(follow(alice)).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringContaining('(limit 2)') });
    // Another identity has its own budget (ops is an admin, so may read alice's task).
    await follow(api('ops'));
    // A finished stream frees its slot.
    a1.abort();
    await new Promise((r) => setTimeout(r, 200));
    await follow(alice);
  });

  it('counts a run against the same limit, refusing it before anything is submitted', async () => {
    const alice = api('alice');
    // Whatever earlier tests left open, alice holds her 2 slots after this.
    const held: AbortController[] = [];
    for (;;) {
      try {
        held.push(await follow(alice));
      } catch (e) {
        expect(e).toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
        break;
      }
    }
    const before = (await alice.list({})).tasks.length;
    await expect(alice.run({ command: ['true'] } as never)).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringContaining('(limit 2)') });
    expect((await alice.list({})).tasks.length).toBe(before);
    for (const c of held) c.abort();
  });

  it("shows a task's env values to its owner and admins only", async () => {
    expect((await api('alice').get(ALICE_TASK)).spec?.env).toEqual({ TOKEN: 's3cret' });
    expect((await api('ops').get(ALICE_TASK)).spec?.env).toEqual({ TOKEN: 's3cret' });
    expect((await api('bob').get(ALICE_TASK)).spec?.env).toEqual({ TOKEN: '(hidden)' });
  });

  it("shows an HTTP task's header values and body to its owner and admins only", async () => {
    expect((await api('alice').get(ALICE_HTTP)).spec?.http?.headers).toEqual([{ name: 'Authorization', value: 'Bearer s3cret' }]);
    expect((await api('ops').get(ALICE_HTTP)).spec?.http?.body.toString()).toBe('{"token":"s3cret"}');
    const bob = await api('bob').get(ALICE_HTTP);
    expect(bob.spec?.http).toMatchObject({ url: 'https://hooks.example/x', headers: [{ name: 'Authorization', value: '(hidden)' }] });
    expect(bob.spec?.http?.body.toString()).toBe('(hidden)');
  });

  it("refuses others' cancels and log reads, and drains from non-admins", async () => {
    await expect(api('bob').cancel(ALICE_TASK)).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringContaining('belongs to alice') });
    await expect(follow(api('bob'))).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(api('alice').drain('n1', true)).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringContaining('--admin') });
    await expect(api('alice').removeMember('n9')).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
      message: 'alice may not remove etcd members (only an admin, see --admin, may)',
    });
  });
});
