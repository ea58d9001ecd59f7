/**
 * The autoscaler's kubernetes provider: the group is a worker Deployment
 * (deploy/kubernetes/), its size the Deployment's replicas, set through the
 * scale subresource with the pod's service account (RBAC: get/patch on
 * deployments/scale, patch on pods).
 *
 * Kubernetes picks which pods a smaller ReplicaSet deletes, so the provider
 * tells it: the pods of the nodes to remove (drained and idle; a worker's
 * node name is its pod name) get the lowest pod-deletion-cost first, and the
 * replicas drop only by as many as were named. A smaller size with no names
 * (the chosen nodes are still finishing their tasks) leaves the replicas
 * alone: the autoscaler names them once they are idle. Growing sets the
 * replicas at once.
 *
 * Plain HTTPS to the API server rather than @kubernetes/client-node: the
 * provider makes three calls with in-cluster credentials, and that client
 * would add an ESM-only package tree to every node for them.
 */
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { LoomError } from '../core/errors';
import type { KubernetesProviderSpec, ScaleProvider } from '../core/scale-provider-spec';
import { PROVIDER_TIMEOUT_MS } from './scale-provider';

const DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';

interface Call { method: 'GET' | 'PATCH'; path: string; body?: unknown }

export function kubernetesProvider(spec: KubernetesProviderSpec, log: (m: string) => void): ScaleProvider {
  const env = spec.env ?? {};
  const server = (): URL => {
    if (spec.apiServer) return new URL(spec.apiServer);
    const host = env.KUBERNETES_SERVICE_HOST;
    if (!host) throw new LoomError('UNAVAILABLE', 'autoscale kubernetes provider: not in a pod (KUBERNETES_SERVICE_HOST is unset) and the policy gives no provider.apiServer');
    return new URL(`https://${host.includes(':') ? `[${host}]` : host}:${env.KUBERNETES_SERVICE_PORT || '443'}`);
  };
  const readFile = (file: string, what: string): string => {
    try {
      return fs.readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new LoomError('UNAVAILABLE', `autoscale kubernetes provider: cannot read the ${what} ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  const call = (c: Call, signal: AbortSignal): Promise<{ status: number; body: Record<string, unknown> }> => {
    const url = new URL(c.path, server());
    // Read at each call: projected service-account tokens are rotated in place.
    const token = readFile(spec.tokenFile, 'service account token');
    const payload = c.body === undefined ? undefined : JSON.stringify(c.body);
    return new Promise((resolve, reject) => {
      const req = https.request(url, {
        method: c.method, ca: readFile(spec.caFile, 'API server CA'), signal, timeout: PROVIDER_TIMEOUT_MS,
        headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(payload ? { 'content-type': 'application/merge-patch+json' } : {}) },
      }, (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (d: string) => { if (text.length < 1 << 20) text += d; }).on('end', () => {
          let body: Record<string, unknown> = {};
          try { body = JSON.parse(text) as Record<string, unknown>; } catch { /* a proxy's HTML error page: the status says enough */ }
          resolve({ status: res.statusCode ?? 0, body });
        });
      });
      req.on('timeout', () => req.destroy(new Error('no answer')));
      req.on('error', (err) => reject(new LoomError('UNAVAILABLE', `autoscale kubernetes provider: ${c.method} ${url.href}: ${err.message}`)));
      req.end(payload);
    });
  };
  const failed = (c: Call, r: { status: number; body: Record<string, unknown> }) =>
    new LoomError('UNAVAILABLE', `autoscale kubernetes provider: ${c.method} ${c.path}: HTTP ${r.status}${typeof r.body.message === 'string' ? `: ${r.body.message.slice(0, 300)}` : ''}`);

  return async (req, signal) => {
    const ns = spec.namespace ?? readFile(path.join(path.dirname(spec.tokenFile), 'namespace'), 'service account namespace');
    const scalePath = `/apis/apps/v1/namespaces/${ns}/deployments/${spec.deployment}/scale`;
    const get: Call = { method: 'GET', path: scalePath };
    const now = await call(get, signal);
    if (now.status !== 200) throw failed(get, now);
    const replicas = Number((now.body.spec as { replicas?: number } | undefined)?.replicas ?? 0);
    let named = 0;
    for (const pod of req.remove) {
      const mark: Call = { method: 'PATCH', path: `/api/v1/namespaces/${ns}/pods/${encodeURIComponent(pod)}`, body: { metadata: { annotations: { [DELETION_COST]: '-1000' } } } };
      const r = await call(mark, signal);
      if (r.status === 200) named++;
      else if (r.status !== 404) throw failed(mark, r);
    }
    const want = req.count >= replicas ? req.count : Math.max(req.count, replicas - named);
    if (want === replicas) return;
    const set: Call = { method: 'PATCH', path: scalePath, body: { spec: { replicas: want } } };
    const r = await call(set, signal);
    if (r.status !== 200) throw failed(set, r);
    log(`autoscale ${req.group}: deployment ${ns}/${spec.deployment} replicas ${replicas} → ${want}${named ? ` (removing ${req.remove.join(', ')})` : ''}`);
  };
}
