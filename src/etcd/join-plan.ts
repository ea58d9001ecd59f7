/**
 * What `loom node --join` does with the member list a running cluster gave,
 * and whether a member list fits the --peer flags a node was started with.
 * Pure: member-join.ts and embedded.ts do the talking to etcd.
 */
import { LoomError, invalid } from '../core/errors';

/** etcd's advice: more voting members only slow every write down. */
export const MAX_VOTING_MEMBERS = 7;

/** A member as etcd's MemberList gives it (name '' until it first starts). */
export interface ListedMember {
  ID: string;
  name: string;
  peerURLs: string[];
  clientURLs: string[];
  isLearner?: boolean;
}

/** A member id as etcdctl prints it and takes it (hex); etcd's gRPC gives decimal. */
export function memberIdHex(id: string): string {
  try {
    return BigInt(id).toString(16);
  } catch {
    return id;
  }
}

export type JoinPlan =
  /** A started member has our name and URL, and nothing answers there: its data is lost. Remove it, add it again. */
  | { kind: 'replace'; member: ListedMember }
  /** Added at our URL but never started (an earlier --join stopped half way): start it. */
  | { kind: 'resume'; member: ListedMember }
  /** The cluster has no such member: add one (as a learner). */
  | { kind: 'add' };

export interface JoinWho {
  name: string;
  /** Our peer URL as the cluster knows it (--peer-advertise, default --peer-listen). */
  peerUrl: string;
  /** Client URLs a worker could use instead, for the message past the voting limit. */
  clientUrls: string[];
}

/**
 * Decides a join from the cluster's member list, or throws what stands in
 * the way (a name or URL taken by another member, another join half done,
 * the voting limit).
 */
export function planJoin(members: ListedMember[], who: JoinWho): JoinPlan {
  const mine = members.find((m) => m.peerURLs.includes(who.peerUrl));
  const byName = members.find((m) => m.name === who.name);
  if (byName && !byName.peerURLs.includes(who.peerUrl)) {
    throw invalid(
      `cannot join: the cluster's member "${who.name}" has peer URL ${byName.peerURLs.join(',')}, not ${who.peerUrl}; ` +
        `start with the peer URL it had (--peer-listen, or --peer-advertise), or remove that member first (etcdctl member remove ${memberIdHex(byName.ID)})`,
    );
  }
  if (mine && mine.name !== '' && mine.name !== who.name) {
    throw invalid(`cannot join: peer URL ${who.peerUrl} belongs to member "${mine.name}", not "${who.name}"`);
  }
  const strangers = members.filter((m) => m !== mine && m.name === '');
  if (strangers.length) {
    throw new LoomError(
      'INVALID_STATE',
      `cannot join: member(s) at ${strangers.map((m) => m.peerURLs.join(',')).join('; ')} were added but never started; ` +
        `start them, or remove them (loom members remove ID: ${strangers.map((m) => memberIdHex(m.ID)).join(', ')})`,
    );
  }
  if (mine) return mine.name === who.name ? { kind: 'replace', member: mine } : { kind: 'resume', member: mine };
  const voting = members.filter((m) => !m.isLearner).length;
  if (voting >= MAX_VOTING_MEMBERS) {
    throw invalid(
      `cannot join: the cluster already has ${voting} voting etcd members (${MAX_VOTING_MEMBERS} is the most etcd advises); ` +
        `start this node as a worker with --etcd ${who.clientUrls.join(',')}`,
    );
  }
  return { kind: 'add' };
}

/** Members that started, with our own entry, for --initial-cluster of a member joining. */
export function initialClusterAfterJoin(
  members: ListedMember[],
  who: { name: string; peerUrl: string },
): { name: string; url: string }[] {
  const others = members.filter((m) => m.name !== '' && m.name !== who.name && !m.peerURLs.includes(who.peerUrl));
  return [...others.map((m) => ({ name: m.name, url: m.peerURLs[0] })), { name: who.name, url: who.peerUrl }].sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  );
}

/**
 * Whether a data dir's cluster (its member list, or the marker loom wrote)
 * is the one the --peer flags describe, allowing for members added or
 * removed since (etcd keeps its own membership and ignores the flags once it
 * has a data dir). Entries are "name=url". It is another cluster when this
 * member is not in it under its name and URL, or when the flags name other
 * members and the data dir's cluster has none of them.
 */
export function sameCluster(self: string, configured: string[], actual: string[]): boolean {
  if (!actual.includes(self)) return false;
  const others = configured.filter((m) => m !== self);
  return others.length === 0 || others.some((m) => actual.includes(m));
}
