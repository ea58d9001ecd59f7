/**
 * One etcd client per member, for the lease keeper: its keepalive rounds go
 * to two chosen members at once and its heartbeats to the member that
 * answered last (etcd/lease-keeper.ts), which a client that picks a member at
 * random for each request cannot do.
 *
 * The member list is EndpointHealth's (etcd/endpoint-sync.ts keeps it current), so
 * these clients follow the membership like the node's others; a client of a
 * member that left is closed the next time the list is read. Each has a
 * connection of its own and the heartbeat's short deadline.
 */
import type { Etcd3 } from 'etcd3';
import { EndpointHealth } from '../etcd/endpoint-health';
import { Kv } from '../etcd/client';
import { KeepAliveStream } from '../etcd/lease-keeper';
import { MemberLinks, openKeepAlive } from './membership';

export interface MemberClientsOptions {
  health: EndpointHealth;
  /** A client that sends to this member only. */
  connect: (member: string) => Etcd3;
  /** Deadline of a heartbeat through one member. */
  callTimeoutMs: number;
  /** Where a stream goes when no member is named (never, while the list is not empty). */
  fallback: Kv;
}

export class MemberClients implements MemberLinks {
  private readonly kvs = new Map<string, Kv>();
  private closed = false;

  constructor(private readonly opts: MemberClientsOptions) {}

  members(): string[] {
    const now = this.opts.health.endpoints;
    for (const [member, kv] of this.kvs) {
      if (now.includes(member)) continue;
      kv.close();
      this.kvs.delete(member);
    }
    return now;
  }

  skipped(member: string): boolean {
    return this.opts.health.skipReason(member) !== undefined;
  }

  async openStream(member: string | undefined): Promise<KeepAliveStream> {
    // async: a client that cannot be built rejects (the keeper closes that stream) instead of throwing into its round.
    return openKeepAlive(member === undefined ? this.opts.fallback : this.kv(member));
  }

  kv(member: string): Kv {
    let kv = this.kvs.get(member);
    if (!kv) {
      kv = new Kv(this.opts.connect(member), this.opts.callTimeoutMs);
      if (this.closed) kv.close();
      else this.kvs.set(member, kv);
    }
    return kv;
  }

  close(): void {
    this.closed = true;
    for (const kv of this.kvs.values()) kv.close();
    this.kvs.clear();
  }
}
