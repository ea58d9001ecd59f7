/** Node configuration: the shape, the defaults, and their validation. */
import { isIP } from 'net';
import type { AutoscalePolicy } from './autoscale';
import { invalid } from './errors';
import { checkMaxLoad, StealPolicy, DEFAULT_STEAL_POLICY } from './steal-policy';
import { parsePlacement, Placement } from './placement';
import { DEFAULT_CONTAINER_PIDS, parseAllowMount } from './container-policy';
import { DEFAULT_DOCKER_SOCKET, type DockerEngine } from './docker-engine';
import { DEFAULT_MIN_FREE_DISK, MinFreeDisk } from './disk-space';

export interface PeerSpec {
  name: string;
  url: string;
}

/** PEM files of a mutual-TLS identity: the cluster CA, this party's certificate and key. */
export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** Limits on `--label k=v` (node labels), documented in the README. */
export const LABEL_LIMITS = {
  count: 64,
  keyChars: 63,
  valueChars: 256,
} as const;

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
  /**
   * URLs the embedded member gives its peers and clients ('' = the listen
   * URL): for a member that listens on 0.0.0.0, behind NAT, or behind a proxy.
   */
  peerAdvertise: string;
  clientAdvertise: string;
  /** When set, join this etcd cluster instead of embedding a member. */
  etcdEndpoints: string[];
  etcdBin: string;
  /**
   * With no etcd data dir yet: join the running cluster of the --peer
   * members instead of bootstrapping one (`--join`): as a new member, or in
   * place of this node's member whose data was lost.
   */
  joinEtcd: boolean;
  /** host:port of the Prometheus metrics endpoint ('' = off). */
  metricsListen: string;
  /** host:port of the HTTP/JSON API, over the node's TLS when it has --tls-* ('' = off). */
  httpListen: string;
  autoscale?: AutoscalePolicy; // --autoscale FILE: the policy it evaluates while it leads the group
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
  /**
   * Slots beyond `slots` that only tasks of priority >= urgentPriority may
   * take, so an urgent task starts at once on a busy node instead of waiting
   * for a slot to free. Normal work never uses them.
   */
  urgentSlots: number;
  urgentPriority: number;
  /** Waiting this long, a task that fits a node's capacity makes that node stop taking smaller work until it fits. */
  starveAfterMs: number;
  /** Docker engine for container tasks (src/bin resolves it: --docker-socket, LOOM_DOCKER_SOCK, DOCKER_HOST, default). */
  docker: DockerEngine;
  /** Start plain process tasks through loom-spawner (posix_spawn) when it is built; false: Node's spawn. */
  spawner: boolean;
  /**
   * Niceness (0-19) of process tasks, so the node and its etcd member keep
   * the CPU they need when tasks use all of it. 0: tasks compete as equals.
   */
  taskNice: number;
  /** Finished tasks and jobs are deleted this long after they end. */
  retentionMs: number;
  /**
   * Who process tasks run as (see runner/confine.ts): 'auto' = 'pool' when
   * the node is root, else 'node' (it cannot switch users).
   */
  runAs: RunAsChoice;
  /** --task-uids: the pool of uids for --run-as pool. */
  taskUids: { first: number; last: number };
  /** Default process limit of each process task (--pids). */
  taskPids: number;
  /** Cap of each attempt's log file on disk (--max-log-bytes); 0 = none. */
  maxLogBytes: number;
  /**
   * Mutual TLS (--tls-ca/--tls-cert/--tls-key): the API, node-to-node calls
   * and etcd (embedded member, or https:// --etcd endpoints). Unset: plaintext,
   * allowed on loopback addresses only unless `insecure`.
   */
  tls?: TlsFiles;
  /** --insecure: plaintext on non-loopback addresses, explicitly accepted. */
  insecure?: boolean;
  /** --admin: identities (certificate CNs) that may cancel any task, read any task's logs, drain nodes. */
  admins?: string[];
  /** --urgent-submitter: identities besides the admins that may submit priorities >= urgentPriority. */
  urgentSubmitters?: string[];
  /** --allow-mount PATH[:ro]: host paths container tasks may bind-mount (and what is below them). */
  allowMounts: { path: string; readOnly: boolean }[];
  /** --allow-host-network: any submitter's container may use network host / container:* here. */
  allowHostNetwork: boolean;
  /** --allow-container-root: containers may run as uid 0 (otherwise an image's root becomes 65534). */
  allowContainerRoot: boolean;
  /** --container-pids: the pids limit of every container. */
  containerPids: number;
  /**
   * --max-node-losses: a task whose node died or fenced itself while running
   * it this many times ends FAILED instead of being requeued once more.
   */
  maxNodeLosses: number;
  /**
   * --max-queued-per-owner: a submit that would take one owner past this many
   * queued tasks is refused (RESOURCE_EXHAUSTED); 0: no limit.
   */
  maxQueuedPerOwner: number;
  /** --min-free-disk: below this free space in the data dir's filesystem, no new tasks (running ones go on). */
  minFreeDisk: MinFreeDisk;
  /** --max-load: CPU busy share at which the node takes no new tasks (steal-policy.ts parseMaxLoad); 0 = off. */
  maxLoad: number;
  /** --placement: how a task's preferred node is chosen (core/placement.ts). */ placement: Placement;
  /**
   * --etcd-quota: etcd's --quota-backend-bytes, which loom cannot ask etcd
   * for; submits stop at half of it (core/storage.ts). 0: the embedded
   * members' (4 GiB), or etcd's default (2 GiB) with --etcd.
   */
  etcdQuotaBytes: number;
}

export const RUN_AS = ['auto', 'pool', 'owner', 'node'] as const;
export type RunAsChoice = (typeof RUN_AS)[number];

/** "60000-60999" -> { first, last } (checked by validateNodeConfig). */
export function parseUidRange(text: string): { first: number; last: number } {
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(text);
  if (!m) throw invalid(`--task-uids must be FIRST-LAST, e.g. 60000-60999 (got "${text}")`);
  return { first: Number(m[1]), last: Number(m[2]) };
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
    peerAdvertise: '',
    clientAdvertise: '',
    etcdEndpoints: [],
    etcdBin: 'etcd',
    joinEtcd: false,
    metricsListen: '',
    httpListen: '',
    slots: Math.max(1, cpuCount),
    urgentSlots: 1,
    urgentPriority: 900,
    leaseTtlSeconds: 5,
    labels: {},
    shutdownGraceMs: 10_000,
    killGraceMs: 3_000,
    steal: DEFAULT_STEAL_POLICY,
    capacity: { cpu: 0, memoryBytes: 0, diskBytes: 0 },
    starveAfterMs: 30_000,
    docker: { kind: 'unix', socketPath: DEFAULT_DOCKER_SOCKET, source: 'default' },
    spawner: true,
    taskNice: 0,
    retentionMs: 24 * 3_600_000,
    runAs: 'auto',
    taskUids: { first: 60000, last: 60999 },
    taskPids: 4096,
    maxLogBytes: 256 * 1024 * 1024,
    insecure: false,
    admins: [],
    allowMounts: [],
    allowHostNetwork: false,
    allowContainerRoot: false,
    containerPids: DEFAULT_CONTAINER_PIDS,
    maxNodeLosses: 3,
    maxQueuedPerOwner: 0,
    minFreeDisk: DEFAULT_MIN_FREE_DISK,
    maxLoad: 0,
    placement: 'spread',
    etcdQuotaBytes: 0,
  };
}

/** Parses the node's `--allow-mount PATH[:ro]` (throws INVALID_ARGUMENT). */
export function parseAllowMountFlag(text: string): { path: string; readOnly: boolean } {
  const parsed = parseAllowMount(text);
  if (typeof parsed === 'string') throw invalid(parsed);
  return parsed;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export function validateNodeName(name: string): string {
  if (!NAME.test(name)) throw invalid(`invalid node name "${name}": 1-63 characters of letters, digits, "_", "." or "-"`);
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

/** Parses "k=v" labels (LABEL_LIMITS). */
export function parseLabel(text: string): [string, string] {
  const at = text.indexOf('=');
  if (at <= 0) throw invalid(`invalid label "${text.slice(0, 80)}": expected KEY=VALUE`);
  const key = text.slice(0, at);
  if (!/^[A-Za-z0-9_./-]{1,63}$/.test(key)) {
    throw invalid(`invalid label key "${key.slice(0, 80)}": 1-${LABEL_LIMITS.keyChars} characters of letters, digits, "_", ".", "/" or "-"`);
  }
  const value = text.slice(at + 1);
  if (value.length > LABEL_LIMITS.valueChars) {
    throw invalid(`label ${key} value is ${value.length} characters > limit ${LABEL_LIMITS.valueChars}`);
  }
  if (/[\u0000-\u001f\u007f]/.test(value)) throw invalid(`label ${key} value contains a control character`);
  return [key, value];
}

/** Certificate identities (client and node names): what --admin and `loom certs issue` accept. */
const IDENTITY = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

export function validateIdentityName(name: string, what = 'identity'): string {
  if (!IDENTITY.test(name)) {
    throw invalid(`invalid ${what} "${name.slice(0, 80)}": 1-64 characters of letters, digits, "_", ".", "@" or "-"`);
  }
  return name;
}

/** Is host (as in host:port or a URL, brackets allowed) a loopback address? */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return false;
}

/** 0.0.0.0 or [::]: listen on every address; nothing can dial it elsewhere. */
function isUnspecifiedHost(host: string): boolean {
  return host === '0.0.0.0' || /^\[[0:]+\]$/.test(host);
}

function urlHost(url: string): string {
  const m = /^[a-z]+:\/\/(\[[^\]]*\]|[^:/]*)/i.exec(url);
  return m ? m[1] : url;
}

/**
 * What this config serves or talks to in plaintext beyond loopback: the
 * addresses `--insecure` must accept explicitly. Empty when nothing is exposed.
 */
export function plaintextExposure(c: NodeConfig): string[] {
  const out: string[] = [];
  if (!c.tls) {
    if (!isLoopbackHost(parseHostPort(c.listen, '--listen').host)) out.push(`--listen ${c.listen}`);
    if (c.httpListen && !isLoopbackHost(parseHostPort(c.httpListen, '--http-listen').host)) out.push(`--http-listen ${c.httpListen}`);
    if (c.etcdEndpoints.length === 0) {
      if (!isLoopbackHost(urlHost(c.peerListen))) out.push(`--peer-listen ${c.peerListen}`);
      if (!isLoopbackHost(urlHost(c.clientListen))) out.push(`--client-listen ${c.clientListen}`);
    }
  }
  for (const url of c.etcdEndpoints) {
    if (url.startsWith('http://') && !isLoopbackHost(urlHost(url))) out.push(`--etcd ${url}`);
  }
  return out;
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
  if (!Number.isInteger(c.urgentSlots) || c.urgentSlots < 0 || c.urgentSlots > 64) {
    throw invalid(`--urgent-slots must be an integer from 0 to 64 (got ${c.urgentSlots})`);
  }
  if (!Number.isInteger(c.taskNice) || c.taskNice < 0 || c.taskNice > 19) {
    throw invalid(`--task-nice must be an integer from 0 to 19 (got ${c.taskNice})`);
  }
  if (c.metricsListen) parseHostPort(c.metricsListen, '--metrics-listen');
  if (c.httpListen) parseHostPort(c.httpListen, '--http-listen');
  if (!RUN_AS.includes(c.runAs)) throw invalid(`--run-as must be one of ${RUN_AS.join(', ')} (got "${c.runAs}")`);
  const { first, last } = c.taskUids;
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 1 || last < first || last > 0x7ffffffe) {
    throw invalid(`--task-uids must be FIRST-LAST with 0 < FIRST <= LAST (got ${first}-${last})`);
  }
  if (!Number.isInteger(c.maxLogBytes) || (c.maxLogBytes !== 0 && c.maxLogBytes < 4096)) {
    throw invalid(`--max-log-bytes must be 0 (no cap) or at least 4K (got ${c.maxLogBytes})`);
  }
  if (!Number.isInteger(c.etcdQuotaBytes) || (c.etcdQuotaBytes !== 0 && c.etcdQuotaBytes < 8 * 1024 * 1024)) {
    throw invalid(`--etcd-quota must be at least 8M (got ${c.etcdQuotaBytes})`);
  }
  if (!Number.isInteger(c.taskPids) || c.taskPids < 8 || c.taskPids > 4_194_304) {
    throw invalid(`--pids must be an integer from 8 to 4194304 (got ${c.taskPids})`);
  }
  if (c.joinEtcd && c.etcdEndpoints.length > 0) throw invalid('--join adds an embedded etcd member to the cluster; a node with --etcd embeds none');
  if (c.joinEtcd && c.peers.length === 0) throw invalid('--join needs --peer members of the running cluster to join');
  if (!Number.isInteger(c.urgentPriority) || c.urgentPriority < 0 || c.urgentPriority > 999) {
    throw invalid(`--urgent-priority must be an integer from 0 to 999 (got ${c.urgentPriority})`);
  }
  if (!Number.isFinite(c.leaseTtlSeconds) || c.leaseTtlSeconds < 2 || c.leaseTtlSeconds > 300) {
    throw invalid(`--lease-ttl must be from 2 to 300 seconds (got ${c.leaseTtlSeconds})`);
  }
  for (const url of c.etcdEndpoints) {
    if (!/^https?:\/\/[^/\s]+$/.test(url)) throw invalid(`invalid --etcd endpoint "${url}"`);
  }
  const labels = Object.keys(c.labels);
  if (labels.length > LABEL_LIMITS.count) throw invalid(`too many labels: ${labels.length} > limit ${LABEL_LIMITS.count}`);
  for (const admin of c.admins ?? []) validateIdentityName(admin, '--admin identity');
  for (const who of c.urgentSubmitters ?? []) validateIdentityName(who, '--urgent-submitter identity');
  for (const m of c.allowMounts) parseAllowMountFlag(`${m.path}${m.readOnly ? ':ro' : ''}`);
  if (!Number.isInteger(c.containerPids) || c.containerPids < 16 || c.containerPids > 4_194_304) {
    throw invalid(`--container-pids must be an integer from 16 to 4194304 (got ${c.containerPids})`);
  }
  if (!Number.isInteger(c.maxNodeLosses) || c.maxNodeLosses < 1 || c.maxNodeLosses > 100) {
    throw invalid(`--max-node-losses must be an integer from 1 to 100 (got ${c.maxNodeLosses})`);
  }
  if (!Number.isInteger(c.maxQueuedPerOwner) || c.maxQueuedPerOwner < 0 || c.maxQueuedPerOwner > 100_000_000) {
    throw invalid(`--max-queued-per-owner must be an integer from 0 (no limit) to 100000000 (got ${c.maxQueuedPerOwner})`);
  }
  const { bytes, percent } = c.minFreeDisk;
  if (!Number.isFinite(bytes) || bytes < 0 || !Number.isFinite(percent) || percent < 0 || percent >= 100) {
    throw invalid('--min-free-disk must be a size (e.g. 1G), a percentage below 100% (e.g. 5%), both (1G,5%: the smaller), or 0 for none');
  }
  checkMaxLoad(c.maxLoad);
  parsePlacement(c.placement);
  validateTransport(c);
  return c;
}

/** TLS all-or-nothing, URL schemes that match it, and the --insecure rule. */
function validateTransport(c: NodeConfig): void {
  if (c.tls) {
    for (const [flag, file] of [['--tls-ca', c.tls.caFile], ['--tls-cert', c.tls.certFile], ['--tls-key', c.tls.keyFile]]) {
      if (!file) throw invalid(`${flag} is missing: mutual TLS needs --tls-ca, --tls-cert and --tls-key together`);
    }
  }
  const schemes = new Set(c.etcdEndpoints.map((u) => u.slice(0, u.indexOf(':'))));
  if (schemes.size > 1) throw invalid('--etcd endpoints mix http:// and https://; use one scheme');
  if (schemes.has('https') && !c.tls) {
    throw invalid('--etcd https:// endpoints need --tls-ca, --tls-cert and --tls-key (the node connects with its certificate)');
  }
  if (c.etcdEndpoints.length === 0) {
    const scheme = c.tls ? 'https' : 'http';
    const why = c.tls ? 'with --tls-* the embedded etcd member speaks TLS' : 'without --tls-* the embedded etcd member speaks plain http';
    const urls: [string, string][] = [
      ['--peer-listen', c.peerListen], ['--client-listen', c.clientListen],
      ...(c.peerAdvertise ? [['--peer-advertise', c.peerAdvertise] as [string, string]] : []),
      ...(c.clientAdvertise ? [['--client-advertise', c.clientAdvertise] as [string, string]] : []),
      ...c.peers.map((p): [string, string] => [`--peer ${p.name}`, p.url]),
    ];
    for (const [flag, url] of urls) {
      if (!url.startsWith(`${scheme}://`)) throw invalid(`${flag} ${url} must be an ${scheme}:// URL (${why})`);
    }
    // What the member tells others must be an address they can dial.
    for (const [listenFlag, listen, advertise] of [
      ['--peer-listen', c.peerListen, c.peerAdvertise], ['--client-listen', c.clientListen, c.clientAdvertise],
    ] as const) {
      const told = advertise || listen;
      if (isUnspecifiedHost(urlHost(told))) {
        const flag = listenFlag.replace('listen', 'advertise');
        throw invalid(advertise ? `${flag} ${advertise} is not an address others can reach; give this node's own address`
          : `${listenFlag} ${listen} listens on every address: give ${flag} with the URL other nodes reach it at`);
      }
    }
  }
  const exposed = plaintextExposure(c);
  if (exposed.length > 0 && !c.insecure) {
    throw invalid(
      `refusing to use ${exposed.join(', ')} without TLS (not a loopback address): pass --tls-ca, --tls-cert and --tls-key ` +
        '(see `loom certs`), or --insecure to accept that anyone who can reach it can run commands as this node\'s user',
    );
  }
}
