/**
 * The kubernetes provider over real HTTPS against a stand-in for the API
 * server: no Kubernetes can run on this machine (no images, no registry), so
 * a local TLS server answers the three calls the provider makes, as the API
 * server documents them: GET and merge-PATCH of deployments/{name}/scale,
 * merge-PATCH of a pod's annotations; bearer token checked, 404 for a pod
 * that is gone. What is real: the TLS set-up from a CA file, the token read
 * from its file at each call, the namespace from the service account
 * directory, and which calls a size and a remove list turn into.
 */
import * as fs from 'fs';
import * as https from 'https';
import * as os from 'os';
import * as path from 'path';
import { AddressInfo } from 'net';
import { initCa, issueCert } from '../../src/bin/certs-command';
import { LoomError } from '../../src/core/errors';
import { KubernetesProviderSpec, ScaleRequest } from '../../src/core/scale-provider-spec';
import { kubernetesProvider } from '../../src/node/kube-scale';

let dir: string;
let server: https.Server;
let url: string;
let replicas = 1;
let pods: Record<string, Record<string, string>>;
const calls: string[] = [];
const SCALE = '/apis/apps/v1/namespaces/loom/deployments/loom-worker/scale';

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-kube-'));
  const pki = path.join(dir, 'pki');
  await initCa({ dir: pki });
  await initCa({ dir: path.join(dir, 'other') });
  const api = await issueCert({ dir: pki, role: 'node', name: 'apiserver', hosts: ['127.0.0.1'] });
  fs.mkdirSync(path.join(dir, 'sa'));
  fs.writeFileSync(path.join(dir, 'sa', 'token'), 'token-1\n');
  fs.writeFileSync(path.join(dir, 'sa', 'namespace'), 'loom');
  fs.copyFileSync(path.join(pki, 'ca.crt'), path.join(dir, 'sa', 'ca.crt'));
  server = https.createServer({ cert: fs.readFileSync(api.cert), key: fs.readFileSync(api.key) }, (req, res) => {
    let text = '';
    req.on('data', (d) => { text += d; }).on('end', () => {
      const send = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      const token = fs.readFileSync(path.join(dir, 'sa', 'token'), 'utf8').trim();
      if (req.headers.authorization !== `Bearer ${token}`) return send(401, { kind: 'Status', message: 'Unauthorized' });
      calls.push(`${req.method} ${req.url}${text ? ` ${text}` : ''}`);
      if (req.method === 'PATCH' && req.headers['content-type'] !== 'application/merge-patch+json') return send(415, { message: 'unsupported media type' });
      if (req.url === SCALE && req.method === 'GET') return send(200, { kind: 'Scale', spec: { replicas } });
      if (req.url === SCALE && req.method === 'PATCH') {
        replicas = (JSON.parse(text) as { spec: { replicas: number } }).spec.replicas;
        return send(200, { kind: 'Scale', spec: { replicas } });
      }
      const pod = /^\/api\/v1\/namespaces\/loom\/pods\/([^/]+)$/.exec(req.url ?? '')?.[1];
      if (pod && req.method === 'PATCH') {
        if (!pods[pod]) return send(404, { kind: 'Status', message: `pods "${pod}" not found` });
        Object.assign(pods[pod], (JSON.parse(text) as { metadata: { annotations: Record<string, string> } }).metadata.annotations);
        return send(200, { kind: 'Pod', metadata: { name: pod, annotations: pods[pod] } });
      }
      send(404, { message: `no route ${req.method} ${req.url}` });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  fs.rmSync(dir, { recursive: true, force: true });
});

beforeEach(() => {
  calls.length = 0;
});

const spec = (o: Partial<KubernetesProviderSpec> = {}): KubernetesProviderSpec => ({
  kind: 'kubernetes', deployment: 'loom-worker', tokenFile: path.join(dir, 'sa', 'token'), caFile: path.join(dir, 'sa', 'ca.crt'),
  env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: new URL(url).port }, ...o,
});
const req = (count: number, remove: string[] = []): ScaleRequest => ({ group: 'workers', count, remove, labels: {}, etcdEndpoints: [] });
const signal = new AbortController().signal;
const logs: string[] = [];
const provider = (o: Partial<KubernetesProviderSpec> = {}) => kubernetesProvider(spec(o), (m) => logs.push(m));

test('grows the Deployment through its scale subresource, with the service account found in the pod', async () => {
  replicas = 1;
  pods = { 'w-a': {} };
  await provider()(req(3), signal);
  expect(replicas).toBe(3);
  expect(calls).toEqual([`GET ${SCALE}`, `PATCH ${SCALE} {"spec":{"replicas":3}}`]);
  expect(logs.pop()).toBe('autoscale workers: deployment loom/loom-worker replicas 1 → 3');
  // Nothing to change: one read, no write.
  await provider()(req(3), signal);
  expect(calls).toHaveLength(3);
});

test('shrinks only by the pods it is told to remove, marked as the cheapest to delete', async () => {
  replicas = 3;
  pods = { 'w-a': {}, 'w-b': {}, 'w-c': {} };
  // Smaller, but no node is idle yet: Kubernetes would pick the pods itself (and stop running work).
  await provider()(req(1), signal);
  expect(replicas).toBe(3);
  await provider()(req(1, ['w-b']), signal);
  expect(pods['w-b']).toEqual({ 'controller.kubernetes.io/pod-deletion-cost': '-1000' });
  expect(pods['w-a']).toEqual({});
  expect(replicas).toBe(2);
  // A pod already gone counts for nothing: no second drop for it.
  delete pods['w-b'];
  await provider()(req(1, ['w-b']), signal);
  expect(replicas).toBe(2);
  await provider()(req(1, ['w-a']), signal);
  expect(replicas).toBe(1);
});

test('reads the token at each call (projected tokens rotate) and says why a call was refused', async () => {
  replicas = 1;
  fs.writeFileSync(path.join(dir, 'sa', 'token'), 'token-2');
  await provider()(req(2), signal);
  expect(replicas).toBe(2);
  const stale = path.join(dir, 'stale-token');
  fs.writeFileSync(stale, 'token-1');
  await expect(provider({ tokenFile: stale, namespace: 'loom' })(req(4), signal)).rejects.toThrow(/GET \/apis\/apps\/v1\/namespaces\/loom\/deployments\/loom-worker\/scale: HTTP 401: Unauthorized/);
  await expect(provider({ deployment: 'other' })(req(4), signal)).rejects.toThrow(/deployments\/other\/scale: HTTP 404/);
  expect(replicas).toBe(2);
});

test('refuses clearly outside a pod, with a CA it cannot read, or a server it does not trust', async () => {
  const errors = [
    await provider({ env: {} })(req(1), signal).catch((e: unknown) => e),
    await provider({ caFile: path.join(dir, 'nope.crt') })(req(1), signal).catch((e: unknown) => e),
    await provider({ caFile: path.join(dir, 'other', 'ca.crt'), apiServer: url })(req(1), signal).catch((e: unknown) => e),
  ];
  for (const e of errors) expect(e).toBeInstanceOf(LoomError);
  expect((errors[0] as LoomError).message).toMatch(/not in a pod \(KUBERNETES_SERVICE_HOST is unset\)/);
  expect((errors[1] as LoomError).message).toMatch(/cannot read the API server CA .*nope.crt \(ENOENT\)/);
  expect((errors[2] as LoomError).message).toMatch(/GET https:\/\/127\.0\.0\.1:\d+\/apis.*: (unable to verify|self.signed|certificate)/);
});
