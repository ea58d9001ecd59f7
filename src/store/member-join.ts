/**
 * `loom node --join`: bring back an embedded etcd member whose data dir was
 * lost (a replaced disk or machine) while the rest of its cluster runs on.
 *
 * etcd refuses to start such a member as it was ("member ... has already
 * been bootstrapped"): the others remember it, with a raft state its empty
 * data dir no longer has. The way back is etcd's runtime reconfiguration:
 * remove the old member, add a new one at the same peer URL, and start it
 * with --initial-cluster-state existing; it then receives the data from the
 * others. This does exactly that, and nothing else:
 *
 *  - only for a member the cluster knows by this node's name and peer URL
 *    (adding members to a running cluster is not done here: nodes that join
 *    later run worker-only, with --etcd);
 *  - only when nothing answers at this node's own peer URL (the old member
 *    is really gone, not running under another process or machine);
 *  - a member already added at this peer URL but never started (a join that
 *    stopped half way) is reused rather than added again.
 *
 * Removing the old member needs a quorum of the cluster as it is, so the
 * others must be up: with one of three members gone, two answer.
 */
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { LoomError, invalid } from '../core/errors';
import { httpRequest } from './etcd-http';

export interface JoinOptions {
  name: string;
  /** This member's peer URL, as the cluster knows it (--peer-advertise, default --peer-listen). */
  peerUrl: string;
  /** Where this member listens for peers (--peer-listen). */
  peerListen: string;
  /** Peer URLs of the other members (--peer). */
  peerUrls: string[];
  tls?: { ca: Buffer; cert: Buffer; key: Buffer };
  log: (msg: string) => void;
  /** Hostname etcd's certificates are checked against (TLS). */
  tlsHostname: string;
}

export interface JoinedMember {
  name: string;
  url: string;
}

/** A member as etcd's peer API (GET <peer URL>/members) lists it. */
interface PeerApiMember {
  id: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
}

const REQUEST_MS = 3000;
/** How long a membership change is retried while etcd calls the cluster unhealthy. */
const UNHEALTHY_WAIT_MS = 20_000;

/**
 * Replaces this node's lost member. Returns the cluster to put in
 * --initial-cluster (this member included) for a start with
 * --initial-cluster-state existing.
 */
export async function rejoinCluster(o: JoinOptions): Promise<JoinedMember[]> {
  const { members: listed, via } = await listFromPeers(o);
  // Asked through the member that just answered: others may be down (ours is).
  const clientUrls = listed.find((m) => m.peerURLs.includes(via))?.clientURLs ?? [];
  if (clientUrls.length === 0) throw new LoomError('UNAVAILABLE', `cannot join: the member at ${via} lists no client URL`);
  const client = new Etcd3({
    hosts: clientUrls,
    credentials: o.tls ? { rootCertificate: o.tls.ca, certChain: o.tls.cert, privateKey: o.tls.key } : undefined,
    grpcOptions: o.tls ? { 'grpc.ssl_target_name_override': o.tlsHostname } : undefined,
    // No circuit breaker: whenHealthy retries what etcd defers.
    faultHandling: { host: () => noop, global: noop },
  });
  try {
    const deadline = () => ({ deadline: Date.now() + REQUEST_MS * 2 });
    const { members } = await client.cluster.memberList({}, deadline());
    const mine = members.find((m) => m.peerURLs.includes(o.peerUrl));
    const byName = members.find((m) => m.name === o.name);
    if (byName && !byName.peerURLs.includes(o.peerUrl)) {
      throw invalid(
        `cannot join: the cluster's member "${o.name}" has peer URL ${byName.peerURLs.join(',')}, not ${o.peerUrl}; ` +
          `start with the peer URL it had (--peer-listen, or --peer-advertise)`,
      );
    }
    if (!mine) {
      throw invalid(
        `cannot join: the cluster has no member "${o.name}" at ${o.peerUrl} (members: ${members.map((m) => m.name || '(unstarted)').join(', ')}); ` +
          `--join brings back a member whose data dir was lost; a new node can join as a worker with --etcd ${clientUrls.join(',')}`,
      );
    }
    if (mine.name !== '' && mine.name !== o.name) {
      throw invalid(`cannot join: peer URL ${o.peerUrl} belongs to member "${mine.name}", not "${o.name}"`);
    }
    const strangers = members.filter((m) => m !== mine && m.name === '');
    if (strangers.length) {
      throw new LoomError(
        'INVALID_STATE',
        `cannot join: member(s) at ${strangers.map((m) => m.peerURLs.join(',')).join('; ')} were added but never started; start or remove them first`,
      );
    }
    if (mine.name === o.name) {
      // A started member with our name and URL: ours, unless it still runs.
      const urls = [['--peer-listen', o.peerListen], ...(o.peerUrl !== o.peerListen ? [['--peer-advertise', o.peerUrl]] : [])];
      for (const [flag, url] of urls) {
        if (await answers(url, o.tls)) {
          throw new LoomError(
            'INVALID_STATE',
            `cannot join: something answers at ${flag} ${url}: is member "${o.name}" still running (another process or machine)?`,
          );
        }
      }
      o.log(`etcd member "${o.name}" (id ${mine.ID}) lost its data: removing it from the cluster and adding it again`);
      await whenHealthy(o, 'remove', () => client.cluster.memberRemove({ ID: mine.ID }, deadline()));
      const added = await whenHealthy(o, 'add', () => client.cluster.memberAdd({ peerURLs: [o.peerUrl] }, deadline()));
      o.log(`etcd member "${o.name}" added again (id ${added.member.ID}); it gets its data from the other members`);
    } else {
      o.log(`etcd member at ${o.peerUrl} was added but never started (an earlier --join): starting it`);
    }
    const others = members.filter((m) => m !== mine && m.name !== '');
    return [
      ...others.map((m) => ({ name: m.name, url: m.peerURLs[0] })),
      { name: o.name, url: o.peerUrl },
    ].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } catch (err) {
    if (err instanceof LoomError) throw err;
    throw new LoomError('UNAVAILABLE', `cannot join: ${(err as Error).message}`);
  } finally {
    client.close();
  }
}

/**
 * Runs a membership change, again while etcd answers "unhealthy cluster":
 * it changes membership only once the members that stay have been connected
 * to each other for a few seconds (5 s in etcd 3.4), e.g. just after one of
 * them restarted.
 */
async function whenHealthy<T>(o: JoinOptions, what: string, change: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + UNHEALTHY_WAIT_MS;
  for (let said = false; ; ) {
    try {
      return await change();
    } catch (err) {
      if (!/unhealthy cluster/i.test((err as Error).message) || Date.now() > deadline) throw err;
      if (!said) o.log(`etcd defers the member ${what} until its members have been connected for a while; retrying`);
      said = true;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/** The member list from the first peer that answers on its peer URL. */
async function listFromPeers(o: JoinOptions): Promise<{ members: PeerApiMember[]; via: string }> {
  const tried: string[] = [];
  for (const url of o.peerUrls.filter((u) => u !== o.peerUrl)) {
    try {
      const res = await get(`${url}/members`, o.tls);
      if (res.status === 200) return { members: JSON.parse(res.body) as PeerApiMember[], via: url };
      tried.push(`${url}: HTTP ${res.status}`);
    } catch (err) {
      tried.push(`${url}: ${(err as Error).message}`);
    }
  }
  throw new LoomError('UNAVAILABLE', `cannot join: no --peer member answers (${tried.join('; ') || 'no --peer given'})`);
}

async function answers(peerUrl: string, tls: JoinOptions['tls']): Promise<boolean> {
  try {
    await get(`${peerUrl}/members`, tls);
    return true;
  } catch {
    return false;
  }
}

function get(url: string, tls: JoinOptions['tls']): Promise<{ status: number; body: string }> {
  return httpRequest('GET', url, undefined, REQUEST_MS, undefined, tls);
}
