/**
 * The `provider` of an autoscale policy (core/autoscale.ts): where the
 * group's size goes, and what each kind needs. Checked here, run by
 * node/scale-provider.ts (exec), runner/docker-scale.ts (docker) and
 * node/kube-scale.ts (kubernetes).
 */
import { invalid } from './errors';

/** What the autoscaler asks of a provider: the group's size, and which drained, idle nodes may go. */
export interface ScaleRequest {
  group: string;
  count: number;
  /** Nodes to stop (drained and idle: stopping them loses no work). Stopping must be idempotent. */
  remove: string[];
  /** Labels new nodes get besides autoscale=<group>. */
  labels: Record<string, string>;
  /** The cluster's etcd client URLs, for the new nodes' --etcd. */
  etcdEndpoints: string[];
}

export type ScaleProvider = (req: ScaleRequest, signal: AbortSignal) => Promise<void>;

export interface ExecProviderSpec {
  kind: 'exec';
  command: string[];
  /** What the command's environment starts from (src/bin gives the node's own). */
  env?: Record<string, string | undefined>;
}

export interface DockerProviderSpec {
  kind: 'docker';
  /** An image whose entrypoint is loom (the project's Dockerfile builds one). */
  image: string;
  /** The engine: a socket path, unix:///path or tcp://host:port; default the node's (--docker-socket). */
  engine?: string;
  /** Docker network the containers join (host: the machine's own). */
  network: string;
  /** The new nodes' --listen (port 0: any free port, for network host). */
  listen: string;
  /** Their --etcd, when the cluster's own client URLs are not reachable from the containers. */
  etcd?: string[];
  /** More `loom node` flags. */
  args: string[];
  env: Record<string, string>;
  /** Bind mounts, as `docker run -v`: /host:/container[:ro]. */
  binds: string[];
}

export interface KubernetesProviderSpec {
  kind: 'kubernetes';
  /** The worker Deployment whose replicas are the group's size. */
  deployment: string;
  /** Default: the namespace of the pod's service account. */
  namespace?: string;
  /** Default: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT. */
  apiServer?: string;
  tokenFile: string;
  caFile: string;
  /** Environment (src/bin passes the node's): KUBERNETES_SERVICE_HOST/PORT. */
  env?: Record<string, string | undefined>;
}

export type ScaleProviderSpec = ExecProviderSpec | DockerProviderSpec | KubernetesProviderSpec;

const SERVICE_ACCOUNT = '/var/run/secrets/kubernetes.io/serviceaccount';
const KINDS = ['exec', 'docker', 'kubernetes'];
const FIELDS: Record<string, string[]> = {
  exec: ['kind', 'command'],
  docker: ['kind', 'image', 'engine', 'network', 'listen', 'etcd', 'args', 'env', 'binds'],
  kubernetes: ['kind', 'deployment', 'namespace', 'apiServer', 'tokenFile', 'caFile'],
};
/** Kubernetes object names (RFC 1123 labels) and docker image references, loosely. */
const DNS_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IMAGE = /^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$/;

function strings(v: unknown, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((a) => typeof a !== 'string')) throw invalid(`autoscale policy: provider.${what} must be a list of strings`);
  return v as string[];
}

function text(v: unknown, what: string, pattern?: RegExp): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '' || (pattern && !pattern.test(v))) throw invalid(`autoscale policy: provider.${what} ${JSON.stringify(v)?.slice(0, 80)} is not valid`);
  return v;
}

export function parseScaleProvider(v: unknown): ScaleProviderSpec {
  const p = v as Record<string, unknown> | undefined;
  if (!p || typeof p !== 'object' || Array.isArray(p)) throw invalid('autoscale policy: provider is missing (provider: {kind: exec, command: [scale.sh]})');
  if (typeof p.kind !== 'string' || !KINDS.includes(p.kind)) throw invalid(`autoscale policy: provider kind ${JSON.stringify(p.kind)} is not supported (supported: ${KINDS.join(', ')})`);
  const extra = Object.keys(p).filter((k) => !FIELDS[p.kind as string].includes(k));
  if (extra.length) throw invalid(`autoscale policy: provider kind ${p.kind} has no field ${extra.map((k) => `"${k.slice(0, 40)}"`).join(', ')} (it has ${FIELDS[p.kind].join(', ')})`);
  if (p.kind === 'exec') {
    const command = typeof p.command === 'string' ? [p.command] : p.command;
    if (!Array.isArray(command) || command.length === 0 || command.some((a) => typeof a !== 'string' || a === '')) {
      throw invalid('autoscale policy: provider.command must be a command, as a string or a list of strings');
    }
    return { kind: 'exec', command: command as string[] };
  }
  if (p.kind === 'docker') {
    const image = text(p.image, 'image', IMAGE);
    if (!image) throw invalid('autoscale policy: provider.image is missing (an image whose entrypoint is loom, e.g. one built from the project\'s Dockerfile)');
    const env: Record<string, string> = {};
    for (const [k, val] of Object.entries((p.env ?? {}) as Record<string, unknown>)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw invalid(`autoscale policy: provider.env has a bad variable name "${k.slice(0, 40)}"`);
      env[k] = String(val);
    }
    const listen = text(p.listen, 'listen', /^[^\s:]+:\d{1,5}$/) ?? '0.0.0.0:8080';
    const binds = strings(p.binds, 'binds');
    for (const b of binds) if (!/^\/[^:]*:\/[^:]*(:(ro|rw))?$/.test(b)) throw invalid(`autoscale policy: provider.binds entry "${b.slice(0, 80)}" must be /host/path:/container/path[:ro]`);
    const etcd = strings(p.etcd, 'etcd');
    return {
      kind: 'docker', image, engine: text(p.engine, 'engine'), network: text(p.network, 'network') ?? 'bridge', listen,
      ...(etcd.length ? { etcd } : {}), args: strings(p.args, 'args'), env, binds,
    };
  }
  const deployment = text(p.deployment, 'deployment', DNS_NAME);
  if (!deployment) throw invalid('autoscale policy: provider.deployment is missing (the worker Deployment to scale)');
  const apiServer = text(p.apiServer, 'apiServer', /^https?:\/\/[^\s/]+\/?$/);
  return {
    kind: 'kubernetes', deployment, namespace: text(p.namespace, 'namespace', DNS_NAME), ...(apiServer ? { apiServer: apiServer.replace(/\/$/, '') } : {}),
    tokenFile: text(p.tokenFile, 'tokenFile') ?? `${SERVICE_ACCOUNT}/token`, caFile: text(p.caFile, 'caFile') ?? `${SERVICE_ACCOUNT}/ca.crt`,
  };
}
