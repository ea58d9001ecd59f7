/**
 * Membership: one lease per node incarnation, /node/<name> under it, kept
 * alive by our own keepalive loop.
 *
 * Fencing. etcd expires a lease TTL seconds after the last keepalive it
 * received; that is never earlier than (send time of the last acknowledged
 * keepalive) + TTL. We fence ourselves at that bound minus a margin, using
 * only our own clock, so a node that cannot reach etcd stops acting *before*
 * survivors can requeue its work. The etcd3 client's own `lost` event comes
 * later than that, so we do not rely on it.
 *
 * Heartbeats. An etcd leader that takes over restarts every lease at its full
 * TTL plus an election timeout, so lease expiry alone can leave a dead node's
 * work stranded for TTL + 2 s or more. A node therefore also rewrites
 * /node/<name> (a guarded put: a heartbeat) on each keepalive tick unless a
 * load update was written since the last one, and the node fences
 * itself at min(last acknowledged keepalive, last committed heartbeat) sent
 * + TTL − margin. A survivor that has seen no new revision of /node/<name>
 * for a full TTL on its own clock knows the node has fenced, and deletes the
 * key (declareDead) guarded by the revision it saw: the dead node's work is
 * requeued TTL after its last heartbeat, whatever etcd's leader did.
 *
 * How keepalives and heartbeats reach etcd (two members per round, streams
 * no stuck keepalive blocks) is etcd/lease-keeper.ts.
 *
 * An Incarnation exposes an AbortSignal: it fires on fence, on lease loss
 * reported by etcd, or on leave(). Everything the node does under that
 * lease obeys it.
 */
import { promises as fs } from 'fs';
import { NodeInfo } from '../gen/loom';
import { LoomError } from '../core/errors';
import { encodeNode } from './codec';
import { del, IKeyValue, ifLease, ifModRevision, Kv, put, rangeOp } from '../etcd/client';
import { Keys } from './keys';
import { KeepAliveStream, KeepaliveLinks, LeaseKeeper } from '../etcd/lease-keeper';
import { sleep } from '../core/sleep';

export { staleAfterMs } from '../etcd/lease-keeper';

/** Per-member clients for keepalive streams and heartbeats (member-clients.ts). */
export interface MemberLinks extends KeepaliveLinks {
  kv(member: string): Kv;
  close(): void;
}

/** A lease keepalive stream on whatever member `kv`'s client picks (etcd3's stream type, narrowed to what the keeper uses). */
export async function openKeepAlive(kv: Kv): Promise<KeepAliveStream> {
  return (await kv.client.leaseClient.leaseKeepAlive()) as unknown as KeepAliveStream;
}

/** Links for a Membership given no per-member clients: every stream on whatever member `kv`'s client picks. */
function anyMember(kv: Kv): KeepaliveLinks {
  return { members: () => [], skipped: () => false, openStream: () => openKeepAlive(kv) };
}

export interface Incarnation {
  readonly lease: string;
  readonly signal: AbortSignal;
  /** Local time (ms, Date.now clock) at which this node fences itself. */
  fenceAtMs(): number;
}

export interface MembershipOptions {
  name: string;
  ttlSeconds: number;
  /** Where the current lease id is remembered, so a restart can revoke it. */
  leaseFile?: string;
  /** Called after each acknowledged keepalive with the new fence time. */
  onAck?: (fenceAtMs: number) => void;
  log?: (msg: string) => void;
}

export class Membership {
  private current: LeaseKeeper | undefined;

  /**
   * @param beatKv where heartbeats go (default: kv). Nodes give them a client
   *   of their own with a short deadline: a heartbeat stuck on a member that
   *   just died times out in time for the next one to try another member, and
   *   its failure cannot reset the connection the keepalive stream uses.
   * @param links per-member clients: keepalive rounds go to two members at
   *   once and heartbeats to the member that answered last (etcd/lease-keeper.ts).
   *   Without it, streams and heartbeats go to whatever member kv/beatKv pick.
   */
  constructor(
    private readonly kv: Kv,
    private readonly keys: Keys,
    private readonly opts: MembershipOptions,
    private readonly beatKv: Kv = kv,
    private readonly links?: MemberLinks,
  ) {}

  get incarnation(): Incarnation | undefined {
    return this.current && !this.current.signal.aborted ? this.current : undefined;
  }

  /**
   * Grants a lease and publishes /node/<name> under it. If the key is held by
   * the lease this node remembered from a previous run (it crashed), that
   * lease is revoked first so survivors requeue its tasks at once. If another
   * live node holds the name, waits for it to go, then fails.
   */
  async join(info: () => NodeInfo, signal?: AbortSignal): Promise<Incarnation> {
    await this.revokeRemembered();
    const ttl = this.opts.ttlSeconds;
    const sentMs = Date.now();
    let lease: string;
    try {
      const res = await this.kv.client.leaseClient.leaseGrant({ TTL: ttl }, { deadline: Date.now() + 5000 });
      lease = String(res.ID);
    } catch (err) {
      throw new LoomError('UNAVAILABLE', `cannot grant a lease: ${(err as Error).message}`);
    }
    const nodeKey = this.keys.node(this.opts.name);
    const links = this.links;
    const keeper = new LeaseKeeper(links ?? anyMember(this.kv), lease, sentMs, this.opts, (member) =>
      this.putUnder(lease, info(), member !== undefined && links ? links.kv(member) : this.beatKv),
    );
    const deadline = Date.now() + (ttl + 2) * 1000;
    for (;;) {
      const res = await this.kv.txn(
        {
          compare: [{ key: Buffer.from(nodeKey), target: 'Version', result: 'Equal', version: 0 }],
          success: [put(nodeKey, encodeNode({ ...info(), lease }), lease)],
          failure: [{ request_range: { key: Buffer.from(nodeKey) } }],
        },
        'join',
        signal,
      );
      if (res.succeeded) break;
      const holder = res.responses[0]?.response_range?.kvs[0];
      if (Date.now() > deadline) {
        await this.revoke(lease);
        throw new LoomError('INVALID_STATE', `another live node is named "${this.opts.name}" (lease ${holder?.lease}); pick another --name`);
      }
      this.opts.log?.(`node name "${this.opts.name}" is still held by lease ${holder?.lease}; waiting for it to expire`);
      await sleep(500, signal);
    }
    if (this.opts.leaseFile) await fs.writeFile(this.opts.leaseFile, lease, { mode: 0o600 }).catch(() => undefined);
    this.current = keeper;
    keeper.start();
    return keeper;
  }

  /** Rewrites /node/<name> (load, draining) if we still hold it. */
  async publish(info: NodeInfo, signal?: AbortSignal): Promise<boolean> {
    const inc = this.incarnation;
    if (!inc) return false;
    return this.putUnder(inc.lease, info, this.kv, signal);
  }

  /**
   * publish / heartbeat: rewrite this node's key.
   *   compare: /node/<name> under `lease` (a survivor may have deleted it)
   *   then:    put /node/<name> = info, under `lease`
   */
  private async putUnder(lease: string, info: NodeInfo, kv = this.kv, signal?: AbortSignal): Promise<boolean> {
    const nodeKey = this.keys.node(this.opts.name);
    const sentMs = Date.now();
    const res = await kv.txn(
      { compare: [ifLease(nodeKey, lease)], success: [put(nodeKey, encodeNode({ ...info, lease }), lease)] },
      'publish node',
      signal,
    );
    if (res.succeeded && this.current?.lease === lease) this.current.beatCommitted(sentMs);
    return res.succeeded;
  }

  /**
   * declareDead: remove the key of a node that has not rewritten it for a
   * full TTL of the caller's clock (so it has fenced itself: see above).
   *   compare: /node/<name> still at the revision seen, under the lease seen
   *   then:    delete /node/<name> (survivors requeue its tasks)
   *   else:    read /node/<name>, so the caller restarts its clock from it
   */
  async declareDead(name: string, lease: string, modRevision: string): Promise<{ dead: boolean; current?: IKeyValue }> {
    const nodeKey = this.keys.node(name);
    const res = await this.kv.txn(
      { compare: [ifModRevision(nodeKey, modRevision), ifLease(nodeKey, lease)], success: [del(nodeKey)], failure: [rangeOp(nodeKey)] },
      'declare node dead',
    );
    return res.succeeded ? { dead: true } : { dead: false, current: res.responses[0]?.response_range?.kvs[0] };
  }

  /**
   * Stops renewing and revokes the lease (others see the node gone at once
   * instead of after the TTL), then closes the heartbeat client. The revoke
   * is a courtesy: if etcd does not answer within timeoutMs (say every member
   * is stopping at once, no quorum), the lease expires by itself.
   */
  async leave(reason = 'leaving', timeoutMs = 3000): Promise<void> {
    const keeper = this.current;
    if (keeper) {
      keeper.stop(new LoomError('CANCELLED', reason));
      await this.revoke(keeper.lease, timeoutMs);
      if (this.opts.leaseFile) await fs.rm(this.opts.leaseFile, { force: true }).catch(() => undefined);
    }
    if (this.beatKv !== this.kv) this.beatKv.close();
    this.links?.close();
  }

  /** Fences the current incarnation now (e.g. lease found gone by a txn). */
  fence(reason: string): void {
    this.current?.stop(new LoomError('FENCED', reason));
  }

  private async revoke(lease: string, timeoutMs = 3000): Promise<void> {
    try {
      await this.kv.client.leaseClient.leaseRevoke({ ID: lease }, { deadline: Date.now() + timeoutMs });
    } catch {
      // expired already, or etcd unreachable: it will expire on its own
    }
  }

  private async revokeRemembered(): Promise<void> {
    if (!this.opts.leaseFile) return;
    const old = (await fs.readFile(this.opts.leaseFile, 'utf8').catch(() => '')).trim();
    if (!/^\d+$/.test(old)) return;
    const kv = await this.kv.get(this.keys.node(this.opts.name), 'join');
    if (kv && String(kv.lease) === old) {
      this.opts.log?.(`revoking lease ${old} of this node's previous run`);
      await this.revoke(old);
    }
  }
}
