/**
 * The etcd cluster's members as an operator sees them (`loom members`), and
 * the removal of a member whose node is gone for good (`loom members remove`).
 *
 * Removal is etcd's runtime reconfiguration (MemberRemove), guarded so that
 * it cannot take a working member out from under its node: the member must
 * not answer on any of its client URLs, and no live loom node may have its
 * name. etcd itself refuses a removal that would leave too few started
 * members for a quorum.
 */
import { Etcd3 } from 'etcd3';
import { probeProblem } from '../core/connect-reason';
import { LoomError } from '../core/errors';
import type { EtcdMember } from '../gen/loom';
import { etcdError } from './client';
import { memberIdHex } from './join-plan';

/** How long one member's Status may take before it counts as not answering. */
export const MEMBER_PROBE_MS = 2000;

/** Asks the member at one client URL for its status. */
export type MemberProbe = (clientUrl: string) => Promise<{ leader: string }>;

export class EtcdMembers {
  constructor(
    private readonly client: Etcd3,
    private readonly probe: MemberProbe,
  ) {}

  /** Every member, with whether it answers and which one leads, sorted by name. */
  async list(): Promise<EtcdMember[]> {
    return (await this.listWithIds()).map((e) => e.member);
  }

  /** list(), each member with etcd's own (decimal) id, which MemberRemove takes. */
  private async listWithIds(): Promise<{ member: EtcdMember; rawId: string }[]> {
    let listed;
    try {
      listed = (await this.client.cluster.memberList({}, { deadline: Date.now() + 5000 })).members;
    } catch (err) {
      throw etcdError(err, 'list etcd members');
    }
    const probed = await Promise.all(listed.map((m) => this.ask(m.clientURLs ?? [])));
    const leader = probed.find((p) => p.leader !== undefined)?.leader;
    return listed
      .map((m, i) => ({
        rawId: m.ID,
        member: {
          id: memberIdHex(m.ID),
          name: m.name,
          peerUrls: m.peerURLs ?? [],
          clientUrls: m.clientURLs ?? [],
          learner: m.isLearner === true,
          leader: leader !== undefined && leader === m.ID,
          answers: probed[i].problem === '',
          problem: probed[i].problem,
          nodeUp: false, // the store knows etcd's members, not loom's nodes: the API fills it in
        } satisfies EtcdMember,
      }))
      .sort(({ member: a }, { member: b }) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : 1));
  }

  /**
   * Removes the member named (or with the hex id) `which`. `liveNodes`: the
   * names of the nodes whose lease is alive.
   */
  async remove(which: string, liveNodes: string[]): Promise<{ removed: EtcdMember; members: EtcdMember[] }> {
    const listed = await this.listWithIds();
    const members = listed.map((e) => e.member);
    const wanted = which.toLowerCase();
    const target = members.find((m) => m.name === which) ?? members.find((m) => m.id === wanted);
    if (!target) {
      const names = members.map((m) => m.name || `(unstarted ${m.id})`).join(', ');
      throw new LoomError('NOT_FOUND', `no etcd member named "${which}" or with that id (members: ${names})`, which);
    }
    const label = target.name ? `etcd member "${target.name}"` : `etcd member ${target.id}`;
    if (target.name && liveNodes.includes(target.name)) {
      throw new LoomError(
        'INVALID_STATE',
        `node "${target.name}" is alive: stop it first (only the member of a node that is gone for good is removed)`,
      );
    }
    if (target.answers) {
      throw new LoomError(
        'INVALID_STATE',
        `${label} still answers at ${target.clientUrls.join(',')}: stop its node first (only the member of a node that is gone for good is removed)`,
      );
    }
    const voters = members.filter((m) => !m.learner);
    if (!target.learner && voters.length === 1) {
      throw new LoomError('INVALID_STATE', `${label} is the only voting member: removing it would end the cluster`);
    }
    const up = voters.filter((m) => m.answers).length;
    if (up <= voters.length / 2) {
      throw new LoomError(
        'UNAVAILABLE',
        `cannot remove ${label}: only ${up} of the ${voters.length} voting members answer, and a membership change needs a majority of all ${voters.length} (the one removed counts until it is gone); bring members back first`,
      );
    }
    try {
      const rawId = listed.find((e) => e.member === target)!.rawId;
      await this.client.cluster.memberRemove({ ID: rawId }, { deadline: Date.now() + 10_000 });
    } catch (err) {
      const msg = (err as Error).message ?? String(err);
      if (/not enough started members|unhealthy cluster/i.test(msg)) {
        throw new LoomError('UNAVAILABLE', `etcd refuses to remove ${label} now: ${msg} (the members that stay need a quorum of started, connected members; try again)`);
      }
      if (/DEADLINE_EXCEEDED/i.test(msg)) {
        throw new LoomError('UNAVAILABLE', `etcd did not commit the removal of ${label} within 10 s: a majority of the voting members must be up and connected (see \`loom members\`); it may still happen`);
      }
      throw etcdError(err, `remove ${label}`);
    }
    return { removed: target, members: members.filter((m) => m !== target) };
  }

  private async ask(urls: string[]): Promise<{ leader?: string; problem: string }> {
    if (urls.length === 0) return { problem: 'no client URL (never started)' };
    const problems: string[] = [];
    for (const url of urls) {
      try {
        const { leader } = await this.probe(url);
        return { leader, problem: '' };
      } catch (err) {
        problems.push(`${url}: ${probeProblem(err, MEMBER_PROBE_MS)}`);
      }
    }
    return { problem: problems.join('; ') };
  }
}

/** A MemberProbe over a connection of its own per call (closed after it), with a 2 s deadline. */
export function probeWith(connect: (clientUrl: string) => Etcd3): MemberProbe {
  return async (url) => {
    const client = connect(url);
    try {
      const status = await client.maintenance.status({ deadline: Date.now() + MEMBER_PROBE_MS });
      return { leader: status.leader };
    } finally {
      client.close();
    }
  };
}
