/** Node configuration: the shape, the defaults, and their validation. */
import { invalid } from './errors';
import { StealPolicy, DEFAULT_STEAL_POLICY } from './steal-policy';

export interface PeerSpec {
  name: string;
  url: string;
}

export interface NodeConfig {
  name: string;
  /** gRPC API listen address host:port. */
  listen: string;
  /** Address other nodes and clients use to reach this node's API. */
  advertise: string;
  dataDir: string;
  /** Embedded etcd: initial cluster members other than (or including) this one. */
  peers: PeerSpec[];
  peerListen: string;
  clientListen: string;
  /** When set, join this etcd cluster instead of embedding a member. */
  etcdEndpoints: string[];
  etcdBin: string;
  slots: number;
  leaseTtlSeconds: number;
  labels: Record<string, string>;
  /** How long running tasks may finish on SIGTERM before being requeued. */
  shutdownGraceMs: number;
  /** SIGTERM -> SIGKILL wait when a task is stopped. */
  killGraceMs: number;
  steal: StealPolicy;
  /** Capacity overrides (--cpu, --memory, --disk); 0 = detect. */
  capacity: { cpu: number; memoryBytes: number; diskBytes: number };
  /** Waiting this long, a task that fits a node's capacity makes that node stop taking smaller work until it fits. */
  starveAfterMs: number;
}

export function defaultNodeConfig(cpuCount: number): NodeConfig {
  return {
    name: 'node1',
    listen: '127.0.0.1:8080',
    advertise: '',
    dataDir: './data',
    peers: [],
    peerListen: 'http://127.0.0.1:2380',
    clientListen: 'http://127.0.0.1:2379',
    etcdEndpoints: [],
    etcdBin: 'etcd',
    slots: Math.max(1, cpuCount),
    leaseTtlSeconds: 5,
    labels: {},
    shutdownGraceMs: 10_000,
    killGraceMs: 3_000,
    steal: DEFAULT_STEAL_POLICY,
    capacity: { cpu: 0, memoryBytes: 0, diskBytes: 0 },
    starveAfterMs: 30_000,
  };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function validateNodeName(name: string): string {
  if (!NAME.test(name)) {
    throw invalid(
      `invalid node name "${name}": 1-63 characters of letters, digits, "_", "." or "-"`,
    );
  }
  return name;
}

/** Parses "NAME=URL" (the prototype's -N form for peers). */
export function parsePeer(text: string): PeerSpec {
  const at = text.indexOf('=');
  if (at <= 0) throw invalid(`invalid --peer "${text}": expected NAME=URL`);
  const name = validateNodeName(text.slice(0, at));
  const url = text.slice(at + 1);
  if (!/^https?:\/\/[^/\s]+$/.test(url)) {
    throw invalid(`invalid --peer "${text}": URL must look like http://127.0.0.2:2380`);
  }
  return { name, url };
}

/** Parses "k=v" labels. */
export function parseLabel(text: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw invalid(`invalid label "${text}": expected KEY=VALUE`);
  const key = text.slice(0, at);
  if (!/^[A-Za-z0-9_.\/-]{1,63}$/.test(key)) throw invalid(`invalid label key "${key}"`);
  return [key, text.slice(at + 1)];
}

export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:\s]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw invalid(`invalid ${what} "${text}": expected host:port`);
  return { host: m[1], port };
}

export function validateNodeConfig(c: NodeConfig): NodeConfig {
  validateNodeName(c.name);
  parseHostPort(c.listen, '--listen');
  if (c.advertise) parseHostPort(c.advertise, '--advertise');
  if (!Number.isInteger(c.slots) || c.slots < 1 || c.slots > 4096) {
    throw invalid(`--slots must be an integer from 1 to 4096 (got ${c.slots})`);
  }
  if (!Number.isFinite(c.leaseTtlSeconds) || c.leaseTtlSeconds < 2 || c.leaseTtlSeconds > 300) {
    throw invalid(`--lease-ttl must be from 2 to 300 seconds (got ${c.leaseTtlSeconds})`);
  }
  for (const url of c.etcdEndpoints) {
    if (!/^https?:\/\/[^/\s]+$/.test(url)) throw invalid(`invalid --etcd endpoint "${url}"`);
  }
  return c;
}
