/**
 * `loom node --join`: make this node's embedded etcd member part of the
 * running cluster its --peer members form, by etcd's runtime reconfiguration.
 * Two cases, told apart by the cluster's member list (join-plan.ts):
 *
 *  - a member the cluster knows by this node's name and peer URL lost its
 *    data dir (a replaced disk or machine): etcd refuses to start it as it
 *    was ("member ... has already been bootstrapped"), since the others
 *    remember a raft state its empty data dir no longer has. It is removed
 *    and added again, only when nothing answers at its peer URL (the old
 *    member is really gone, not running under another process or machine);
 *  - a new member (the cluster grows): added, up to 7 voting members.
 *
 * Either way the member is added as a raft learner: it receives the data
 * without counting towards the quorum, and is promoted to a voting member
 * once it has caught up with the leader (promoteLearner, called when the
 * member is healthy). A member added but never started (a join that stopped
 * half way) is started rather than added again.
 *
 * Removing a member needs a quorum of the cluster as it is, so the others
 * must be up: with one of three members gone, two answer.
 */
import { noop } from 'cockatiel';
import { Etcd3 } from 'etcd3';
import { LoomError } from '../core/errors';
import { httpRequest } from './http';
import { initialClusterAfterJoin, ListedMember, memberIdHex, planJoin } from './join-plan';
import { sleep } from '../core/sleep';

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
/** A peer that takes longer to list the members is taken for one not up yet. */
const BOOTSTRAP_CHECK_MS = 1500;
/** How long a membership change is retried while etcd defers or drops it. */
const MEMBERSHIP_CHANGE_WAIT_MS = 30_000;
/** Between promotion attempts while the learner catches up. */
const PROMOTE_RETRY_MS = 500;
/**
 * Deadline of one membership change request. A change raft dropped (another
 * was pending) never answers, and changeMembership looks it up and sends it
 * again once this passes; one that did land answers within a raft round.
 */
const CHANGE_ANSWER_MS = 2000;

/**
 * Adds this node's member to the running cluster (again, when it lost its
 * data). Returns the cluster to put in --initial-cluster (this member
 * included) for a start with --initial-cluster-state existing.
 */
export async function joinCluster(o: JoinOptions): Promise<JoinedMember[]> {
  const client = await clientOfPeers(o);
  try {
    const deadline = () => ({ deadline: Date.now() + REQUEST_MS * 2 });
    const changeDeadline = () => ({ deadline: Date.now() + CHANGE_ANSWER_MS });
    const list = async () => (await client.etcd.cluster.memberList({}, deadline())).members as ListedMember[];
    // A learner added by another join starts (and is promoted) within seconds;
    // one that never starts blocks every join (one learner at a time) and is
    // refused by planJoin, named, after this wait.
    const plan = planJoin(await othersStarted(o, list), { name: o.name, peerUrl: o.peerUrl, clientUrls: client.urls });
    if (plan.kind === 'replace') {
      const urls = [['--peer-listen', o.peerListen], ...(o.peerUrl !== o.peerListen ? [['--peer-advertise', o.peerUrl]] : [])];
      for (const [flag, url] of urls) {
        if (await answers(url, o.tls)) {
          throw new LoomError(
            'INVALID_STATE',
            `cannot join: something answers at ${flag} ${url}: is member "${o.name}" still running (another process or machine)?`,
          );
        }
      }
      o.log(`etcd member "${o.name}" (id ${memberIdHex(plan.member.ID)}) lost its data: removing it from the cluster and adding it again`);
      const gone = plan.member.ID;
      await changeMembership(
        o,
        'remove',
        async () => void (await client.etcd.cluster.memberRemove({ ID: gone }, changeDeadline())),
        async () => !(await list()).some((m) => m.ID === gone),
      );
    }
    if (plan.kind === 'resume') {
      o.log(`etcd member at ${o.peerUrl} was added but never started (an earlier --join): starting it`);
    } else {
      let addedId = '';
      await changeMembership(
        o,
        'add',
        async () => void (addedId = (await client.etcd.cluster.memberAdd({ peerURLs: [o.peerUrl], isLearner: true }, changeDeadline())).member.ID),
        async () => {
          const found = (await list()).find((m) => m.peerURLs.includes(o.peerUrl));
          addedId = found?.ID ?? '';
          return found !== undefined;
        },
      );
      o.log(
        `etcd member "${o.name}" added ${plan.kind === 'replace' ? 'again' : 'to the cluster'} as a learner (id ${memberIdHex(addedId)}): ` +
          `it gets the data from the other members and becomes a voting member once it has caught up`,
      );
    }
    // As the cluster is now: another node may have joined meanwhile, and etcd
    // checks --initial-cluster against every member's peer URL.
    const now = await othersStarted(o, list);
    const pending = addedByOthers(now, o.peerUrl);
    if (pending.length) {
      throw new LoomError('UNAVAILABLE', `cannot join: member(s) at ${pending.map((m) => m.peerURLs.join(',')).join('; ')} were added by another join but did not start; start this node again`);
    }
    return initialClusterAfterJoin(now, { name: o.name, peerUrl: o.peerUrl });
  } catch (err) {
    if (err instanceof LoomError) throw err;
    throw new LoomError('UNAVAILABLE', `cannot join: ${(err as Error).message}`);
  } finally {
    client.etcd.close();
  }
}

export interface PromoteOptions extends JoinOptions {
  /** Gives up (UNAVAILABLE) at this time (ms since the epoch). */
  deadline: number;
  signal?: AbortSignal;
}

/**
 * Makes this node's member, a raft learner, a voting member. etcd promotes a
 * learner only once its log is close to the leader's, so this asks again
 * every 500 ms until it is, or until the deadline. Asked through the other
 * members: a learner serves no membership requests.
 */
export async function promoteLearner(o: PromoteOptions): Promise<void> {
  const client = await clientOfPeers(o);
  let last = '';
  let said = false;
  try {
    for (;;) {
      if (o.signal?.aborted) throw new LoomError('CANCELLED', 'promoting the etcd learner: aborted');
      try {
        const { members } = await client.etcd.cluster.memberList({}, { deadline: Date.now() + REQUEST_MS });
        const mine = members.find((m) => m.peerURLs.includes(o.peerUrl));
        if (!mine) throw new LoomError('UNAVAILABLE', `etcd member "${o.name}" at ${o.peerUrl} is no longer in the cluster (removed?)`);
        if (!mine.isLearner) return;
        await client.etcd.cluster.memberPromote({ ID: mine.ID }, { deadline: Date.now() + REQUEST_MS });
        o.log(`etcd member "${o.name}" (id ${memberIdHex(mine.ID)}) promoted: it is a voting member now`);
        return;
      } catch (err) {
        if (err instanceof LoomError) throw err;
        last = (err as Error).message;
        if (!said && /in sync with leader/i.test(last)) {
          o.log(`etcd member "${o.name}" is a learner catching up with the leader; it is promoted once it has`);
          said = true;
        }
      }
      if (Date.now() + PROMOTE_RETRY_MS > o.deadline) {
        throw new LoomError('UNAVAILABLE', `etcd member "${o.name}" is still a learner: promoting it failed (last: ${last})`);
      }
      await sleep(PROMOTE_RETRY_MS, o.signal);
    }
  } finally {
    client.etcd.close();
  }
}

/** A client of the other members, at the client URLs the first --peer that answers lists. */
async function clientOfPeers(o: JoinOptions): Promise<{ etcd: Etcd3; urls: string[] }> {
  const { members: listed, via } = await listFromPeers(o);
  // Asked through the member that just answered: others may be down (ours is).
  const urls = listed.find((m) => m.peerURLs.includes(via))?.clientURLs ?? [];
  if (urls.length === 0) throw new LoomError('UNAVAILABLE', `cannot join: the member at ${via} lists no client URL`);
  const etcd = new Etcd3({
    hosts: urls,
    credentials: o.tls ? { rootCertificate: o.tls.ca, certChain: o.tls.cert, privateKey: o.tls.key } : undefined,
    grpcOptions: o.tls ? { 'grpc.ssl_target_name_override': o.tlsHostname } : undefined,
    // No circuit breaker: callers retry what etcd defers.
    faultHandling: { host: () => noop, global: noop },
  });
  return { etcd, urls };
}

/** Members another join added that have not started yet (no name): not this node's own. */
function addedByOthers(members: ListedMember[], peerUrl: string): ListedMember[] {
  return members.filter((m) => m.name === '' && !m.peerURLs.includes(peerUrl));
}

/**
 * The member list once no other member is added-but-unstarted: another node
 * joining at the same time starts its member within seconds, and until then
 * no --initial-cluster can name it. Gives up waiting after 30 s (the caller
 * then refuses, naming it).
 */
async function othersStarted(o: JoinOptions, list: () => Promise<ListedMember[]>): Promise<ListedMember[]> {
  const deadline = Date.now() + MEMBERSHIP_CHANGE_WAIT_MS;
  for (let said = false; ; said = true) {
    const members = await list();
    const pending = addedByOthers(members, o.peerUrl);
    if (pending.length === 0 || Date.now() > deadline) return members;
    if (!said) o.log(`waiting for the member(s) at ${pending.map((m) => m.peerURLs.join(',')).join('; ')} (added by another join) to start`);
    await sleep(500);
  }
}

/**
 * Runs a membership change until it has happened, retrying what etcd defers
 * or drops:
 *  - "unhealthy cluster": etcd changes membership only once the members that
 *    stay have been connected to each other for a few seconds (5 s in etcd
 *    3.4), e.g. just after one of them restarted;
 *  - "too many learner members": etcd 3.4 takes one learner at a time, so a
 *    node joining while another one's learner catches up waits for its
 *    promotion;
 *  - a deadline: raft drops a change proposed while another one is pending
 *    (two nodes joining at once; measured here: the second add timed out), so
 *    the request never answers. `landed` tells whether it happened after all
 *    (the answer was lost) or must be sent again.
 */
export async function changeMembership(o: JoinOptions, what: string, change: () => Promise<void>, landed: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + MEMBERSHIP_CHANGE_WAIT_MS;
  const said = new Set<string>();
  const once = (key: string, msg: string) => {
    if (!said.has(key)) o.log(msg);
    said.add(key);
  };
  for (;;) {
    try {
      return await change();
    } catch (err) {
      const msg = (err as Error).message;
      if (Date.now() > deadline) throw err;
      if (/unhealthy cluster/i.test(msg)) {
        once('unhealthy', `etcd defers the member ${what} until its members have been connected for a while; retrying`);
        await sleep(500);
      } else if (/too many learner members/i.test(msg)) {
        once('learner', `another member is joining (etcd takes one learner at a time): the member ${what} waits for its promotion`);
        await sleep(500);
      } else if (/deadline exceeded/i.test(msg)) {
        if (await landed().catch(() => false)) return;
        once('dropped', `etcd did not answer the member ${what} (another membership change was pending: another node joining?); retrying`);
        await sleep(200 + Math.random() * 800);
      } else {
        // An earlier attempt that timed out may have landed since ("Peer
        // URLs already exists", "member not found"): then it is done.
        if (said.has('dropped') && (await landed().catch(() => false))) return;
        throw err;
      }
    }
  }
}

/**
 * Before a member bootstraps a new cluster (no data dir, no --join): when a
 * --peer member already runs a cluster, bootstrapping would not join it. etcd
 * then either refuses (the same member set: "already bootstrapped") or, with
 * another member set, waits forever on "cluster ID mismatch" with a data dir
 * that --join would no longer replace. Both are told here, before etcd
 * creates anything, with what to do. Peers that do not answer (the usual
 * first start, members coming up together) are no reason to stop.
 */
export async function checkBootstrap(o: JoinOptions & { etcdDir: string }): Promise<void> {
  for (const url of o.peerUrls.filter((u) => u !== o.peerUrl)) {
    let members: PeerApiMember[];
    try {
      const res = await httpRequest('GET', `${url}/members`, undefined, BOOTSTRAP_CHECK_MS, undefined, o.tls);
      if (res.status !== 200) continue;
      members = parsePeerMembers(res.body);
    } catch {
      continue;
    }
    const mine = members.find((m) => (m.peerURLs ?? []).includes(o.peerUrl));
    if (!mine) {
      throw new LoomError(
        'INVALID_STATE',
        `the --peer members already run a cluster without this node's member (members: ${members.map((m) => m.name || '(unstarted)').sort().join(', ')}, asked at ${url}); ` +
          `start this node with --join to add its member to that cluster`,
      );
    }
    if ((mine.clientURLs ?? []).length > 0) {
      throw new LoomError(
        'INVALID_STATE',
        `etcd member "${mine.name}" (id ${memberIdHex(mine.id)}) has already been bootstrapped: the other members know it, ` +
          `but its data dir ${o.etcdDir} is new (was it deleted, or is --data-dir wrong?); ` +
          `restore its data dir, or start this node again with --join to replace the member (its data comes back from the others)`,
      );
    }
    return; // a cluster being bootstrapped with this member in it: go on
  }
}

/** The member list from the first peer that answers on its peer URL. */
async function listFromPeers(o: JoinOptions): Promise<{ members: PeerApiMember[]; via: string }> {
  const tried: string[] = [];
  for (const url of o.peerUrls.filter((u) => u !== o.peerUrl)) {
    try {
      const res = await get(`${url}/members`, o.tls);
      if (res.status === 200) return { members: parsePeerMembers(res.body), via: url };
      tried.push(`${url}: HTTP ${res.status}`);
    } catch (err) {
      tried.push(`${url}: ${(err as Error).message}`);
    }
  }
  throw new LoomError('UNAVAILABLE', `cannot join: no --peer member answers (${tried.join('; ') || 'no --peer given'})`);
}

/** GET <peer URL>/members: its ids are 64-bit numbers, kept exact as strings. */
function parsePeerMembers(body: string): PeerApiMember[] {
  const members = JSON.parse(body.replace(/"id":\s*(\d+)/g, '"id":"$1"')) as PeerApiMember[];
  if (!Array.isArray(members)) throw new Error('not a member list');
  return members;
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
