/**
 * --run-as owner over mutual TLS: a task runs as the local account named like
 * the client certificate that submitted it (Slurm's model). Accounts every
 * Debian machine has stand in for users: `nobody` (65534) and `daemon` (1);
 * an identity with no account, and one named `root`, are refused.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LoomApi } from '../../src/client/client';
import { readTlsFiles, TlsFiles } from '../../src/wire/tls';
import { initCa, issueCert } from '../../src/bin/certs-command';
import { TaskState } from '../../src/gen/loom';
import { findAccount } from '../../src/runner/confine';
import { uniqueRoot } from '../support/etcd';
import { collectLogs, spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(120_000);

const passwd = fs.existsSync('/etc/passwd') ? fs.readFileSync('/etc/passwd', 'utf8') : '';
const usable = process.getuid?.() === 0 && findAccount(passwd, 'nobody') && findAccount(passwd, 'daemon') && !findAccount(passwd, 'loom-no-such-user');
const describeIf = usable ? describe : describe.skip;
if (!usable) console.warn('run-as owner tests skipped: they need root and the accounts nobody and daemon');

describeIf('a node with --run-as owner', () => {
  let dir: string;
  let n: TestNode;
  const files: Record<string, TlsFiles> = {};
  const apis: LoomApi[] = [];
  const as = (who: string) => {
    const api = new LoomApi(n.node.address, { tls: readTlsFiles(files[who]), deadlineMs: 10_000 });
    apis.push(api);
    return api;
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-owner-'));
    const pki = path.join(dir, 'pki');
    await initCa({ dir: pki });
    const add = async (role: 'node' | 'client', name: string) => {
      const r = await issueCert({ dir: pki, role, name, ...(role === 'node' ? { hosts: ['127.0.0.1'] } : {}) });
      files[name] = { caFile: path.join(pki, 'ca.crt'), certFile: r.cert, keyFile: r.key };
    };
    await add('node', 'own1');
    for (const c of ['nobody', 'daemon', 'root', 'loom-no-such-user']) await add('client', c);
    n = await startNode(uniqueRoot(), 'own1', { tls: files.own1, runAs: 'owner' });
  });
  afterAll(async () => {
    for (const a of apis) a.close();
    if (n) await stopNode(n);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function idOf(who: string): Promise<{ state: TaskState; out: string; reason: string }> {
    const api = as(who);
    const [id] = await api.submit([spec(['id', '-u'])]);
    const t = await api.wait(id);
    return { state: t.state, out: (await collectLogs(api, id, false)).stdout.trim(), reason: t.reason };
  }

  it("runs each owner's task as the account of its name", async () => {
    expect(await idOf('nobody')).toMatchObject({ state: TaskState.COMPLETED, out: String(findAccount(passwd, 'nobody')!.uid) });
    expect(await idOf('daemon')).toMatchObject({ state: TaskState.COMPLETED, out: String(findAccount(passwd, 'daemon')!.uid) });
  });

  it('refuses an owner without an account, and never runs one as root', async () => {
    const none = await idOf('loom-no-such-user');
    expect(none.state).toBe(TaskState.FAILED);
    expect(none.reason).toMatch(/no local account for owner "loom-no-such-user"/);
    const root = await idOf('root');
    expect(root.state).toBe(TaskState.FAILED);
    expect(root.reason).toMatch(/maps to root; tasks never run as root/);
    expect(root.out).toBe('');
  });
});
