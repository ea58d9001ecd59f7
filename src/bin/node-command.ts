/**
 * `loom node`: parses flags (and LOOM_* env) into a NodeConfig, runs the
 * node, and turns signals into a graceful stop (a second signal forces).
 */
import * as os from 'os';
import yargs from 'yargs';
import {
  defaultNodeConfig, NodeConfig, parseHostPort, parseLabel, parseAllowMountFlag, parsePeer, parseUidRange, plaintextExposure, TlsFiles, validateNodeConfig,
} from '../core/config';
import { LoomError, toLoomError } from '../core/errors';
import { parseDurationMs } from '../core/duration';
import { resolveDockerEngine } from '../core/docker-engine';
import { parseBytes } from '../core/fit';
import { formatMinFreeDisk, parseMinFreeDisk } from '../core/disk-space';
import { parseMaxLoad } from '../core/steal-policy';
import { parsePlacement } from '../core/placement';
import { LoomNode } from '../node/node';
import { readAutoscalePolicy } from './autoscale-file';
import { numberFlag, strictFlags } from './flags';
import { closeInheritedDescriptors } from './inherited-fds';

function list(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

function bytesFlag(text: string, flag: string): number {
  const n = parseBytes(text);
  if (n === undefined) throw new LoomError('INVALID_ARGUMENT', `invalid ${flag} "${text}" (examples: 512M, 8G)`);
  return n;
}

/** --tls-ca/--tls-cert/--tls-key: all three or none. */
function tlsFlags(caFile: string | undefined, certFile: string | undefined, keyFile: string | undefined): TlsFiles | undefined {
  if (!caFile && !certFile && !keyFile) return undefined;
  const missing = [['--tls-ca', caFile], ['--tls-cert', certFile], ['--tls-key', keyFile]].filter(([, v]) => !v).map(([k]) => k);
  if (missing.length > 0) {
    throw new LoomError('INVALID_ARGUMENT', `${missing.join(' and ')} missing: mutual TLS needs --tls-ca, --tls-cert and --tls-key together`);
  }
  return { caFile: caFile!, certFile: certFile!, keyFile: keyFile! };
}

export function parseNodeArgs(argv: string[], env: NodeJS.ProcessEnv): NodeConfig {
  const d = defaultNodeConfig(os.availableParallelism?.() ?? os.cpus().length);
  const args = strictFlags(yargs(argv))
    .scriptName('loom node')
    .usage('$0 [options]\n\nRun a loom node. With no flags: a one-member cluster in ./data, API on 127.0.0.1:8080.')
    .option('name', { type: 'string', default: d.name, describe: 'node name (unique in the cluster; also its etcd member name)' })
    .option('listen', { type: 'string', default: d.listen, describe: 'gRPC API address host:port' })
    .option('advertise', { type: 'string', describe: 'API address other nodes and clients use (default: --listen)' })
    .option('data-dir', { type: 'string', default: d.dataDir, describe: 'logs, lease file and the embedded etcd member' })
    .option('peer', { type: 'string', array: true, describe: 'NAME=URL of another embedded etcd member (repeatable)' })
    .option('peer-listen', { type: 'string', describe: 'embedded etcd peer URL (default http://<listen host>:2380)' })
    .option('client-listen', { type: 'string', describe: 'embedded etcd client URL (default http://<listen host>:2379)' })
    .option('peer-advertise', { type: 'string', describe: 'peer URL the other members dial (default --peer-listen; needed when that listens on 0.0.0.0)' })
    .option('client-advertise', { type: 'string', describe: 'client URL nodes dial (default --client-listen; needed when that listens on 0.0.0.0)' })
    .option('etcd', { type: 'string', describe: 'URL,... of an existing etcd cluster to join instead of embedding a member' })
    .option('join', { type: 'boolean', default: false, describe: 'join the running cluster of the --peer members instead of bootstrapping one: as a new etcd member (up to 7 voting members), or in place of this node\'s member whose data dir was lost; added as a learner, it gets the data from the others and becomes a voter once caught up (ignored once the data dir exists)' })
    .option('etcd-bin', { type: 'string', default: env.LOOM_ETCD_BIN ?? d.etcdBin, describe: 'etcd binary (or LOOM_ETCD_BIN)' })
    .option('slots', { requiresArg: true, default: d.slots, describe: 'tasks run at once (default: CPU count)' })
    .option('urgent-slots', { requiresArg: true, default: d.urgentSlots, describe: 'slots beyond --slots that only urgent tasks (priority >= --urgent-priority) may take' })
    .option('urgent-priority', { requiresArg: true, default: d.urgentPriority, describe: 'lowest priority that may take an urgent slot' })
    .option('lease-ttl', { requiresArg: true, default: d.leaseTtlSeconds, describe: 'membership lease TTL in seconds' })
    .option('label', { type: 'string', array: true, describe: 'k=v label (repeatable; arch, os, hostname and node are automatic)' })
    .option('cpu', { requiresArg: true, describe: 'CPU cores offered to tasks (default: detected, cgroup limits included)' })
    .option('memory', { type: 'string', describe: 'memory offered to tasks, e.g. 8G (default: detected)' })
    .option('disk', { type: 'string', describe: 'disk offered to tasks, e.g. 100G (default: free space of --data-dir)' })
    .option('docker-socket', { type: 'string', describe: 'Docker engine for --image tasks: a socket path, unix:///path or tcp://host:port (default: LOOM_DOCKER_SOCK, else DOCKER_HOST with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH, else /var/run/docker.sock)' })
    .option('allow-mount', { type: 'string', array: true, describe: 'host path container tasks may bind-mount, with what is below it; PATH:ro for read-only mounts only (repeatable; "/", the Docker socket and --data-dir are always refused)' })
    .option('allow-host-network', { type: 'boolean', default: false, describe: 'let any submitter\'s container use --network host or container:NAME here (otherwise admins only)' })
    .option('allow-container-root', { type: 'boolean', default: false, describe: 'let containers run as uid 0 (otherwise an image whose user is root or a name runs as 65534:65534, and --user 0 is refused)' })
    .option('container-pids', { requiresArg: true, default: d.containerPids, describe: 'pids limit of each container' })
    .option('max-node-losses', { requiresArg: true, default: d.maxNodeLosses, describe: 'a task whose node died or fenced while running it this many times ends FAILED instead of being requeued' })
    .option('max-queued-per-owner', { requiresArg: true, default: d.maxQueuedPerOwner, describe: 'refuse a submit that would take one owner past this many queued tasks (0: no limit)' })
    .option('spawner', { type: 'boolean', default: true, describe: 'start tasks with the loom-spawner helper (posix_spawn; much cheaper than fork on VMs); --no-spawner: Node\'s spawn' })
    .option('task-nice', { requiresArg: true, default: d.taskNice, describe: 'niceness 0-19 of process tasks (also their autogroup\'s, where the kernel has one), so the node keeps its CPU when tasks use all of it' })
    .option('run-as', { type: 'string', default: d.runAs, describe: 'who process tasks run as: pool (a uid of its own per running task, from --task-uids), owner (the local account named like the task\'s owner), node (this node\'s own user: tasks can read its data and signal it); auto = pool as root, else node' })
    .option('task-uids', { type: 'string', default: `${d.taskUids.first}-${d.taskUids.last}`, describe: 'FIRST-LAST: uids (gid = uid) reserved for tasks under --run-as pool; no account may use them' })
    .option('pids', { requiresArg: true, default: d.taskPids, describe: 'processes and threads each process task may have at once (cgroup pids.max; RLIMIT_NPROC too under its own uid)' })
    .option('max-log-bytes', { type: 'string', default: '256M', describe: 'cap of one attempt\'s log file on disk: the head up to it, then a note of what was cut and the last 64K of each stream (0 = no cap)' })
    .option('min-free-disk', { type: 'string', default: formatMinFreeDisk(d.minFreeDisk), describe: 'take no new tasks while the data dir\'s filesystem has less free space than this: a size, a percentage of the filesystem (5%), or both (the smaller of the two); 0 = no floor. Running tasks go on; new ones are taken again once it has a tenth more than this' })
    .option('max-load', { type: 'string', default: '0', describe: 'take no new tasks while the machine\'s CPUs are this busy (from /proc/stat, work outside loom included): 90% or 0.9; below it, steals wait longer the busier they are. Taken again a tenth below it; 0 = off' })
    .option('placement', { type: 'string', default: 'spread', describe: 'which node a queued task prefers (give every node the same): spread (a share by slots), random (nodes alike), pack (the busiest with a free slot: idle nodes stay idle), least-loaded (by free slots, idle CPU and memory as measured)' })
    .option('etcd-quota', { type: 'string', describe: 'etcd\'s --quota-backend-bytes with --etcd (default 2G, etcd\'s own; embedded members: 4G): submits stop at half of it' })
    .option('metrics-listen', { type: 'string', describe: 'host:port for GET /metrics (Prometheus text format: counts and gauges, no task data; plaintext)' })
    .option('autoscale', { type: 'string', describe: 'FILE: a policy (YAML or JSON) scaling a group of worker nodes on the queue; one node with it evaluates it at a time (README "Autoscaling")' })
    .option('http-listen', { type: 'string', describe: 'host:port for the HTTP/JSON API (/api/v1/..., the same calls and permissions as the gRPC API; mutual TLS with --tls-*, else loopback only unless --insecure)' })
    .option('retention', { type: 'string', default: '24h', describe: 'delete finished tasks and jobs (and their logs) this long after they end' })
    .option('starve-after', { type: 'string', default: '30s', describe: 'a waiting task that fits this node this long makes it stop taking smaller work until it fits' })
    .option('shutdown-grace', { type: 'string', default: '10s', describe: 'on SIGTERM, how long running tasks may finish before being requeued' })
    .option('kill-grace', { type: 'string', default: '3s', describe: 'SIGTERM -> SIGKILL wait when a task is stopped' })
    .option('tls-ca', { type: 'string', describe: 'cluster CA certificate (PEM): mutual TLS for the API, node-to-node calls and etcd' })
    .option('tls-cert', { type: 'string', describe: "this node's certificate (PEM; `loom certs issue node NAME`)" })
    .option('tls-key', { type: 'string', describe: "this node's private key (PEM)" })
    .option('insecure', { type: 'boolean', default: false, describe: 'allow plaintext on non-loopback addresses (anyone who can reach the node can run commands)' })
    .option('admin', { type: 'string', array: true, describe: 'identity (certificate CN) that may cancel any task, read any log, drain nodes and remove etcd members (repeatable, or comma-separated)' })
    .option('urgent-submitter', { type: 'string', array: true, describe: 'identity besides the admins that may submit urgent priorities (>= --urgent-priority) (repeatable, or comma-separated)' })
    .parseSync();
  const listen = args.listen;
  const { host } = parseHostPort(listen, '--listen');
  const urlHost = host === '0.0.0.0' ? '127.0.0.1' : host;
  const tls = tlsFlags(args['tls-ca'], args['tls-cert'], args['tls-key']);
  const scheme = tls ? 'https' : 'http';
  const config: NodeConfig = {
    ...d,
    name: args.name,
    listen,
    advertise: args.advertise ?? '',
    dataDir: args['data-dir'],
    peers: list(args.peer).map(parsePeer),
    peerListen: args['peer-listen'] ?? `${scheme}://${urlHost}:2380`,
    clientListen: args['client-listen'] ?? `${scheme}://${urlHost}:2379`,
    peerAdvertise: args['peer-advertise'] ?? '',
    clientAdvertise: args['client-advertise'] ?? '',
    etcdEndpoints: args.etcd ? args.etcd.split(',').map((s) => s.trim()).filter(Boolean) : [],
    etcdBin: args['etcd-bin'],
    joinEtcd: args.join,
    metricsListen: args['metrics-listen'] ?? '',
    httpListen: args['http-listen'] ?? '',
    autoscale: args.autoscale ? readAutoscalePolicy(args.autoscale, env) : undefined,
    slots: numberFlag(args.slots, '--slots'),
    urgentSlots: numberFlag(args['urgent-slots'], '--urgent-slots'),
    urgentPriority: numberFlag(args['urgent-priority'], '--urgent-priority'),
    leaseTtlSeconds: numberFlag(args['lease-ttl'], '--lease-ttl'),
    labels: Object.fromEntries(list(args.label).map(parseLabel)),
    shutdownGraceMs: parseDurationMs(args['shutdown-grace']),
    killGraceMs: parseDurationMs(args['kill-grace']),
    capacity: {
      cpu: args.cpu === undefined ? 0 : numberFlag(args.cpu, '--cpu'),
      memoryBytes: args.memory ? bytesFlag(args.memory, '--memory') : 0,
      diskBytes: args.disk ? bytesFlag(args.disk, '--disk') : 0,
    },
    starveAfterMs: parseDurationMs(args['starve-after']),
    docker: resolveDockerEngine(args['docker-socket'], env),
    spawner: args.spawner,
    taskNice: numberFlag(args['task-nice'], '--task-nice'),
    retentionMs: parseDurationMs(args.retention),
    runAs: args['run-as'] as NodeConfig['runAs'],
    taskUids: parseUidRange(args['task-uids']),
    taskPids: numberFlag(args.pids, '--pids'),
    maxLogBytes: args['max-log-bytes'] === '0' ? 0 : bytesFlag(args['max-log-bytes'], '--max-log-bytes'),
    tls,
    insecure: args.insecure,
    admins: list(args.admin).flatMap((a) => a.split(',')).map((a) => a.trim()).filter(Boolean),
    urgentSubmitters: list(args['urgent-submitter']).flatMap((a) => a.split(',')).map((a) => a.trim()).filter(Boolean),
    allowMounts: list(args['allow-mount']).map(parseAllowMountFlag),
    allowHostNetwork: args['allow-host-network'],
    allowContainerRoot: args['allow-container-root'],
    containerPids: numberFlag(args['container-pids'], '--container-pids'),
    maxNodeLosses: numberFlag(args['max-node-losses'], '--max-node-losses'),
    maxQueuedPerOwner: numberFlag(args['max-queued-per-owner'], '--max-queued-per-owner'),
    minFreeDisk: parseMinFreeDisk(args['min-free-disk']),
    maxLoad: parseMaxLoad(args['max-load']),
    placement: parsePlacement(args.placement),
    etcdQuotaBytes: args['etcd-quota'] ? bytesFlag(args['etcd-quota'], '--etcd-quota') : 0,
  };
  if (!Number.isFinite(config.capacity.cpu) || config.capacity.cpu < 0) throw new LoomError('INVALID_ARGUMENT', '--cpu must be a positive number of cores');
  return validateNodeConfig(config);
}

export async function main(argv: string[]): Promise<number> {
  let config: NodeConfig;
  try {
    config = parseNodeArgs(argv, process.env);
  } catch (err) {
    const e = toLoomError(err);
    process.stderr.write(`loom node: ${e.message}\n`);
    return e.exitCode;
  }
  const log = (msg: string) => process.stderr.write(`${new Date().toISOString()} ${config.name} ${msg}\n`);
  // Belt and braces for what the node's code does not create with a mode of
  // its own: nothing of the node's is for its tasks (loom-confine gives tasks 022).
  process.umask(0o077);
  process.on('unhandledRejection', (err) => log(`unhandled rejection (kept running): ${(err as Error)?.stack ?? err}`));
  const inherited = closeInheritedDescriptors();
  if (inherited.length > 0) {
    log(`closed descriptor(s) ${inherited.join(', ')} inherited without close-on-exec from what started the node (tasks would have inherited them)`);
  }
  const exposed = plaintextExposure(config);
  if (exposed.length > 0) {
    let user = `uid ${process.getuid?.() ?? '?'}`;
    try {
      user = os.userInfo().username;
    } catch {
      // no passwd entry: keep the uid
    }
    log(`WARNING: --insecure: ${exposed.join(', ')} without TLS; anyone who can reach it can run commands as ${user} and read or change all cluster state`);
  }
  let node: LoomNode;
  try {
    node = await LoomNode.start(config, { log });
  } catch (err) {
    const e = toLoomError(err);
    log(`cannot start: ${e.message}`);
    return e.exitCode;
  }
  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log(`${sig} again: forcing exit (the reaper kills running tasks)`);
        process.exit(1);
      }
      log(`${sig}: stopping (send again to force)`);
      node.stop({ graceMs: config.shutdownGraceMs }).then(
        () => {
          resolve(0);
          // Anything left (a stuck socket) must not keep a stopped node alive.
          setTimeout(() => process.exit(0), 2000).unref();
        },
        (err) => {
          log(`stop failed: ${(err as Error).message}`);
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
