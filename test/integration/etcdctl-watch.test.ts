/**
 * The key schema as an operator sees it: the real `etcdctl watch --prefix
 * <root>/task/status/` while tasks run on a real node shows each task's status
 * keys come and go in order (queued, running, completed), plaintext and, with
 * the flags README.md gives, against a TLS member (a node certificate; a client
 * certificate is refused by etcd).
 */
import { ChildProcessWithoutNullStreams, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initCa, issueCert } from '../../src/bin/certs-command';
import { LoomApi } from '../../src/client/client';
import { readTlsFiles } from '../../src/wire/tls';
import { defaultNodeConfig } from '../../src/core/config';
import { TaskState } from '../../src/gen/loom';
import { LoomNode } from '../../src/node/node';
import { freePort, testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode } from '../support/nodes';

jest.setTimeout(90_000);

const watchers: ChildProcessWithoutNullStreams[] = [];
afterAll(() => {
  for (const w of watchers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
});

/** etcdctl's flags for one endpoint, with TLS files if given. */
function etcdctlArgs(endpoint: string, tls?: { ca: string; cert: string; key: string }): string[] {
  return ['--endpoints', endpoint, ...(tls ? ['--cacert', tls.ca, '--cert', tls.cert, '--key', tls.key] : [])];
}

function etcdctl(flags: string[], args: string[]) {
  return spawnSync('etcdctl', [...flags, ...args], { env: { ...process.env, ETCDCTL_API: '3' }, encoding: 'utf8', timeout: 10_000 });
}

/** The store's revision now, as etcdctl reads it: the watch starts after it, so it misses nothing however late it connects. */
function revisionNow(flags: string[]): number {
  const r = etcdctl(flags, ['get', '/', '--prefix', '--keys-only', '--limit', '1', '-w', 'json']);
  if (r.status !== 0) throw new Error(`etcdctl get failed: ${r.stderr}`);
  return Number(JSON.parse(r.stdout).header.revision);
}

interface Watch {
  /** "PUT queued", "DELETE running", ... for the keys of task `id`, in the order etcd sent them. */
  eventsOf(id: string): string[];
}

function watchStatus(flags: string[], root: string, fromRevision: number): Watch {
  const prefix = `${root}/task/status/`;
  const proc = spawn('etcdctl', [...flags, 'watch', '--prefix', prefix, '--rev', String(fromRevision), '-w', 'json'], { env: { ...process.env, ETCDCTL_API: '3' } });
  watchers.push(proc);
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  return {
    eventsOf(id: string) {
      if (proc.exitCode !== null) throw new Error(`etcdctl watch exited ${proc.exitCode}: ${err}`);
      const events: string[] = [];
      for (const line of out.split('\n')) {
        if (!line.trim()) continue;
        for (const ev of JSON.parse(line).Events ?? []) {
          const key = Buffer.from(ev.kv.key, 'base64').toString();
          if (!key.startsWith(prefix) || !key.endsWith(`/${id}`)) continue;
          // etcd's JSON leaves out the PUT type (0); DELETE is 1.
          events.push(`${ev.type === 1 || ev.type === 'DELETE' ? 'DELETE' : 'PUT'} ${key.slice(prefix.length).split('/')[0]}`);
        }
      }
      return events;
    },
  };
}

const IN_ORDER = ['PUT queued', 'DELETE queued', 'PUT running', 'DELETE running', 'PUT completed'];

async function runAndWatch(api: LoomApi, watch: Watch): Promise<void> {
  // Two tasks in one submit: a one-task submit may be claimed in the submit
  // transaction itself, and its queued key never written.
  const ids = await api.submit([spec(['sh', '-c', 'sleep 0.2']), spec(['sh', '-c', 'sleep 0.2'])]);
  for (const id of ids) expect((await api.wait(id)).state).toBe(TaskState.COMPLETED);
  for (const id of ids) {
    await waitFor(() => watch.eventsOf(id).length >= IN_ORDER.length, { what: `etcdctl's events for ${id} (so far ${watch.eventsOf(id).join(', ')})` });
    expect(watch.eventsOf(id)).toEqual(IN_ORDER);
  }
}

test('plaintext: etcdctl watch sees queued, running, completed in order', async () => {
  const root = uniqueRoot();
  const n = await startNode(root, 'w1', { slots: 2 });
  try {
    const flags = etcdctlArgs(testEtcdEndpoint());
    await runAndWatch(n.api, watchStatus(flags, root, revisionNow(flags) + 1));
  } finally {
    await stopNode(n);
  }
});

test('TLS: the README flags with a node certificate; a client certificate is refused', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-etcdctl-'));
  const pki = path.join(dir, 'pki');
  await initCa({ dir: pki });
  const nodeCert = await issueCert({ dir: pki, role: 'node', name: 'node1', hosts: ['127.0.0.1'] });
  const clientCert = await issueCert({ dir: pki, role: 'client', name: 'alice' });
  const ca = path.join(pki, 'ca.crt');
  const [peer, client] = [await freePort(), await freePort()];
  const node = await LoomNode.start(
    {
      ...defaultNodeConfig(2),
      name: 'node1',
      listen: '127.0.0.1:0',
      dataDir: path.join(dir, 'node1'),
      peerListen: `https://127.0.0.1:${peer}`,
      clientListen: `https://127.0.0.1:${client}`,
      tls: { caFile: ca, certFile: nodeCert.cert, keyFile: nodeCert.key },
      killGraceMs: 500,
    },
    { log: (m) => process.env.LOOM_TEST_VERBOSE && process.stderr.write(`node1: ${m}\n`) },
  );
  const api = new LoomApi(node.address, { tls: readTlsFiles({ caFile: ca, certFile: clientCert.cert, keyFile: clientCert.key }) });
  try {
    const endpoint = `https://127.0.0.1:${client}`;
    const asNode = etcdctlArgs(endpoint, { ca, cert: nodeCert.cert, key: nodeCert.key });
    // etcd admits node certificates only (--client-cert-auth, the loom-node name).
    const refused = etcdctl(etcdctlArgs(endpoint, { ca, cert: clientCert.cert, key: clientCert.key }), ['get', '/task/', '--prefix', '--keys-only']);
    expect(refused.status).not.toBe(0);
    await runAndWatch(api, watchStatus(asNode, '', revisionNow(asNode) + 1));
  } finally {
    api.close();
    await node.stop({ graceMs: 0 });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
