/**
 * Changing the etcd members a running etcd3 client sends requests to.
 *
 * etcd3 (1.1) takes its hosts once, when the client is built: its
 * ConnectionPool keeps one `Host` per member in an array, and every request
 * (unary, watch or lease stream) picks from a copy of that array made when the
 * request starts. There is no public way to change it, so a node would keep
 * the members it listed at its start: a member added later never got a
 * request, and a removed one stayed in the rotation (skipped, but probed and
 * reported down) until the node restarted.
 *
 * This module is the only code that reaches into the pool. It checks the
 * shape it relies on and fails with INTERNAL, naming the library, if an etcd3
 * upgrade changed it (test/integration/etcd-hosts.test.ts pins it against the
 * installed version). A removed Host is closed: the requests and streams on it
 * fail as "client closed", which the client's retry policy counts as never
 * sent (etcd.ts) and the watch and keepalive code re-open on another member.
 */
import type { Etcd3 } from 'etcd3';
import { Host } from 'etcd3/lib/connection-pool';
import { LoomError } from '../core/errors';

interface PoolInternals {
  hosts: Host[];
  options: { hosts?: string | string[]; grpcOptions?: object; faultHandling?: { host?: (endpoint: string) => unknown } };
}

interface HostInternals {
  host: string;
  channelCredentials: unknown;
}

const stripScheme = (url: string): string => url.replace(/^https?:\/\//, '');

function poolOf(client: Etcd3): PoolInternals {
  const pool = (client as unknown as { pool?: Partial<PoolInternals> }).pool;
  const hosts = pool?.hosts;
  const ok = Array.isArray(hosts) && hosts.length > 0 && hosts.every((h) => h instanceof Host && typeof (h as unknown as HostInternals).host === 'string') && !!pool?.options;
  if (!ok) {
    throw new LoomError('INTERNAL', 'etcd3 client internals changed (ConnectionPool.hosts): the etcd member list cannot be followed with this etcd3 version');
  }
  return pool as PoolInternals;
}

function isSecure(pool: PoolInternals): boolean {
  const given = pool.options.hosts;
  return (Array.isArray(given) ? given : [given ?? '']).some((h) => h.startsWith('https://'));
}

/** The member URLs the client sends requests to. */
export function clientEndpoints(client: Etcd3): string[] {
  const pool = poolOf(client);
  const scheme = isSecure(pool) ? 'https' : 'http';
  return pool.hosts.map((h) => `${scheme}://${(h as unknown as HostInternals).host}`);
}

/**
 * Makes `endpoints` (URLs with the client's scheme) the client's members:
 * Hosts for new ones are built like the client's own (same credentials, gRPC
 * options and per-member fault policy), Hosts of members no longer listed
 * are dropped and closed, the others are kept with their connections.
 */
export function setClientHosts(client: Etcd3, endpoints: string[]): { added: string[]; removed: string[] } {
  if (endpoints.length === 0) throw new LoomError('INVALID_ARGUMENT', 'an etcd client needs at least one endpoint');
  const pool = poolOf(client);
  const secure = isSecure(pool);
  const wrongScheme = endpoints.find((e) => e.startsWith('https://') !== secure);
  if (wrongScheme) {
    throw new LoomError('INVALID_ARGUMENT', `etcd endpoint ${wrongScheme} does not use the client's scheme (${secure ? 'https' : 'http'})`);
  }
  const wanted = new Set(endpoints.map(stripScheme));
  const current = new Map(pool.hosts.map((h) => [(h as unknown as HostInternals).host, h]));
  const credentials = (pool.hosts[0] as unknown as HostInternals).channelCredentials;
  const added: string[] = [];
  const removed: string[] = [];
  const next: Host[] = [];
  for (const e of endpoints) {
    const bare = stripScheme(e);
    if (next.some((h) => (h as unknown as HostInternals).host === bare)) continue;
    let host = current.get(bare);
    if (!host) {
      const policy = pool.options.faultHandling?.host?.(e);
      host = new Host(e, credentials as ConstructorParameters<typeof Host>[1], pool.options.grpcOptions, policy as ConstructorParameters<typeof Host>[3]);
      added.push(e);
    }
    next.push(host);
  }
  for (const [bare, host] of current) {
    if (wanted.has(bare)) continue;
    removed.push(`${secure ? 'https' : 'http'}://${bare}`);
    host.close();
  }
  pool.hosts.splice(0, pool.hosts.length, ...next);
  pool.options.hosts = [...endpoints];
  return { added, removed };
}
