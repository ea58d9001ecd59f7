/**
 * Keeps a node's etcd clients pointed at the cluster's current members.
 *
 * A node lists the members when it starts. Without this, a member added later
 * (`--join`) never received a request from the nodes already running, and a
 * member removed with `loom members remove` stayed in their rotation and in
 * `/metrics` as down until each node restarted. Every few seconds the member
 * list is read (etcd answers it from the member's own state: cheap) and, when
 * the voting members changed, every client and the health probes follow
 * (hosts.ts). etcd's own Go client does the same with AutoSyncInterval.
 *
 * Learners are left out: etcd refuses them every request loom sends. A member
 * added but not started yet has no client URL and is left out until it has
 * one. An empty list is never applied.
 *
 * Nodes given `--etcd` follow the members only when those URLs are the
 * members' own advertised client URLs; URLs of a proxy, a load balancer or a
 * DNS name the members do not advertise are kept as given (said once in the
 * log), since the member URLs may not even be reachable from there.
 */
import type { Etcd3 } from 'etcd3';
import { EndpointHealth } from './endpoint-health';
import { clientEndpoints, setClientHosts } from './hosts';

/** What the sync needs of one member from etcd's member list. */
export interface ListedMember {
  ID: string;
  name: string;
  clientURLs: string[];
  isLearner?: boolean;
}

/**
 * The client URLs requests should go to: every voting member's advertised
 * client URLs, the local member (`local.id`) replaced by the URL this node
 * reaches it at, which comes first.
 */
export function memberEndpoints(members: ListedMember[], local?: { id: string; url: string }): string[] {
  const urls: string[] = [];
  const add = (u: string) => {
    if (!urls.includes(u)) urls.push(u);
  };
  if (local && members.some((m) => m.ID === local.id && !m.isLearner)) add(local.url);
  for (const m of members) {
    if (m.isLearner || (local && m.ID === local.id)) continue;
    for (const u of m.clientURLs ?? []) add(u);
  }
  return urls;
}

/** True when every one of `given` is some member's advertised client URL (so the list may follow the members). */
export function givenAreMemberUrls(given: string[], members: ListedMember[]): boolean {
  const advertised = new Set(members.flatMap((m) => (m.clientURLs ?? []).map(normalizeUrl)));
  return given.length > 0 && given.every((u) => advertised.has(normalizeUrl(u)));
}

const normalizeUrl = (u: string): string => u.replace(/\/+$/, '');

export interface EndpointSyncOptions {
  /** The clients that follow the members; the first one also reads the member list. */
  clients: Etcd3[];
  health?: EndpointHealth;
  /** The embedded member: its id and the URL this node reaches it at. */
  local?: { id: string; url: string };
  /** The `--etcd` URLs a node without a member was given (they are checked before any change). */
  given?: string[];
  everyMs?: number;
  log: (msg: string) => void;
}

export const ENDPOINT_SYNC_MS = 5000;

export class EndpointSync {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** undefined until the first list; false when `--etcd` URLs are kept as given. */
  private follow: boolean | undefined;
  /** Member lists read. */
  lists = 0;

  constructor(private readonly opts: EndpointSyncOptions) {
    this.follow = opts.given ? undefined : true;
  }

  start(): void {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  /** The URLs the clients send requests to now. */
  endpoints(): string[] {
    return clientEndpoints(this.opts.clients[0]);
  }

  /** One round: reads the member list and applies a change. Exposed for tests; errors leave the list as it is. */
  async syncOnce(): Promise<void> {
    const [reader] = this.opts.clients;
    let members: ListedMember[];
    try {
      members = (await reader.cluster.memberList({}, { deadline: Date.now() + 3000 })).members;
    } catch {
      return; // etcd unavailable: the next round asks again; requests report the outage themselves.
    }
    if (this.stopped) return;
    this.lists++;
    if (this.follow === undefined) {
      this.follow = givenAreMemberUrls(this.opts.given ?? [], members);
      if (!this.follow) {
        this.opts.log(`etcd endpoints stay as given by --etcd (${(this.opts.given ?? []).join(',')}): they are not the members' advertised client URLs, so members added or removed later are not followed`);
      }
    }
    if (!this.follow) return;
    const next = memberEndpoints(members, this.opts.local);
    if (next.length === 0) return;
    const now = this.endpoints();
    if (next.length === now.length && next.every((u) => now.includes(normalizeUrl(u)))) return;
    let added: string[] = [];
    let removed: string[] = [];
    try {
      for (const c of this.opts.clients) ({ added, removed } = setClientHosts(c, next));
    } catch (err) {
      // An etcd3 upgrade that changed its internals (or a member of another scheme): keep what works.
      this.follow = false;
      this.opts.log(`cannot follow the etcd members (${(err as Error).message}); requests keep going to ${now.join(',')}`);
      return;
    }
    this.opts.health?.setEndpoints(next);
    const parts = [added.length ? `added ${added.join(',')}` : '', removed.length ? `removed ${removed.join(',')}` : ''].filter(Boolean);
    this.opts.log(`etcd members changed: ${parts.join('; ')}; requests now go to ${next.join(',')}`);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      void this.syncOnce().finally(() => this.schedule());
    }, this.opts.everyMs ?? ENDPOINT_SYNC_MS);
    this.timer.unref();
  }
}
