/**
 * etcd's space, as each node sees it: every member's backend size (Status)
 * and the NOSPACE alarm, read every few seconds; the submit gate reads the
 * last answer without a round trip. The node chosen to maintain (see
 * node/storage-keeper.ts) compacts, defragments members one at a time and
 * disarms the alarm (core/storage.ts says when).
 */
import { AlarmAction, AlarmType, type Etcd3 } from 'etcd3';
import { maintenancePlan, MemberSpace, storageFull, storageRefusal, StorageState } from '../core/storage';

export interface StorageWatchOptions {
  /** The member URLs now (endpoint-sync keeps the list current). */
  endpoints: () => string[];
  /** A client that talks to this member only (status, defragment). */
  connect: (endpoint: string) => Etcd3;
  /** etcd's --quota-backend-bytes. */
  quotaBytes: number;
  log: (msg: string) => void;
  /** Deadline of a Status or alarm call. */
  timeoutMs?: number;
}

/** A submit committed this long before a Status was asked shows in its size (etcd's backend commits every 100 ms). */
const PENDING_SEEN_MS = 1000;

/** A defragmentation rewrites the whole file and blocks its member meanwhile: it gets longer. */
const DEFRAG_TIMEOUT_MS = 60_000;

export class StorageWatch {
  private readonly clients = new Map<string, Etcd3>();
  private state: StorageState;
  /** Revision of the previous look: compactions go up to it, so watchers that kept up lose nothing. */
  private previousRevision: string | undefined;
  private lastRevision: string | undefined;
  private closed = false;
  /**
   * This node's recent submits (time, bytes): counted on top of the last
   * look until a look started a while after them (PENDING_SEEN_MS), since
   * etcd's Status reflects a write only once its backend committed it.
   */
  private pending: { atMs: number; bytes: number }[] = [];
  compactions = 0;
  defrags = 0;
  disarms = 0;

  constructor(private readonly opts: StorageWatchOptions) {
    this.state = { quotaBytes: opts.quotaBytes, members: [], nospace: false };
  }

  /** What the last look found. */
  get last(): StorageState {
    return this.state;
  }

  /**
   * Throws the stable "cluster storage full" error (RESOURCE_EXHAUSTED) when
   * submits must wait; otherwise counts `bytes` (what the submit will write)
   * as used until the next look, so a burst of submits between two looks
   * cannot run through the reserve unseen.
   */
  checkSubmit(bytes: number): void {
    // This submit counts too: one large enough to cross the limit is refused whole.
    const why = storageRefusal(this.withPending(bytes));
    if (why) throw storageFull(why);
    this.pending.push({ atMs: Date.now(), bytes });
  }

  /** The last look, with `bytes` and this node's submits it may not show added to every member. */
  private withPending(bytes: number): StorageState {
    const extra = this.pending.reduce((n, p) => n + p.bytes, bytes);
    if (extra === 0) return this.state;
    return { ...this.state, members: this.state.members.map((m) => ({ ...m, dbSize: m.dbSize + extra })) };
  }

  private client(endpoint: string): Etcd3 {
    let c = this.clients.get(endpoint);
    if (!c) {
      c = this.opts.connect(endpoint);
      this.clients.set(endpoint, c);
    }
    return c;
  }

  private deadline(ms = this.opts.timeoutMs ?? 2000) {
    return { deadline: Date.now() + ms };
  }

  /** Reads every member's size and the alarms. A member that does not answer is left out (the others hold the same data). */
  async refresh(): Promise<StorageState> {
    const startedMs = Date.now();
    const endpoints = this.opts.endpoints();
    for (const [e, c] of this.clients) {
      if (endpoints.includes(e)) continue;
      c.close();
      this.clients.delete(e);
    }
    const members: MemberSpace[] = [];
    let revision: string | undefined;
    await Promise.all(
      endpoints.map(async (endpoint) => {
        try {
          const s = await this.client(endpoint).maintenance.status(this.deadline());
          members.push({ endpoint, dbSize: Number(s.dbSize), dbSizeInUse: Number(s.dbSizeInUse || s.dbSize) });
          if (revision === undefined || BigInt(s.header.revision) > BigInt(revision)) revision = s.header.revision;
        } catch {
          // Not answering: the probes and the requests' own errors deal with that.
        }
      }),
    );
    let nospace = this.state.nospace;
    for (const e of endpoints) {
      try {
        const a = await this.client(e).maintenance.alarm({ action: AlarmAction.Get, alarm: AlarmType.None, memberID: 0 }, this.deadline());
        // Enums arrive as their proto names (the client loads them as strings).
        nospace = a.alarms.some((x) => String(x.alarm).toUpperCase() === 'NOSPACE' || Number(x.alarm) === AlarmType.Nospace);
        break;
      } catch {
        // Ask the next member.
      }
    }
    if (members.length > 0) {
      this.pending = this.pending.filter((p) => p.atMs > startedMs - PENDING_SEEN_MS);
      const was = this.state.nospace;
      this.state = { quotaBytes: this.opts.quotaBytes, members, nospace };
      if (nospace && !was) this.opts.log(`etcd raised its NOSPACE alarm: submits are refused until space is freed`);
    }
    this.previousRevision = this.lastRevision;
    this.lastRevision = revision;
    return this.state;
  }

  /**
   * One maintenance round (the chosen node only): compact up to the previous
   * look's revision, defragment the members with much free space one at a
   * time, disarm the alarm once every member is under the submit limit.
   */
  async maintain(): Promise<void> {
    let plan = maintenancePlan(this.state);
    if (plan.compact && this.previousRevision !== undefined && this.previousRevision !== '0') {
      try {
        await this.client(this.opts.endpoints()[0]).kv.compact({ revision: this.previousRevision, physical: true }, this.deadline(DEFRAG_TIMEOUT_MS));
        this.compactions++;
      } catch (err) {
        // Already compacted past it (auto-compaction, another node): nothing to do.
        if (!/compacted/i.test((err as Error).message)) this.opts.log(`storage: compaction failed: ${(err as Error).message}`);
      }
      plan = maintenancePlan(await this.refresh());
    }
    for (const endpoint of plan.defrag) {
      if (this.closed) return;
      const before = this.state.members.find((m) => m.endpoint === endpoint);
      try {
        await this.client(endpoint).maintenance.defragment(this.deadline(DEFRAG_TIMEOUT_MS));
        this.defrags++;
        const after = (await this.refresh()).members.find((m) => m.endpoint === endpoint);
        this.opts.log(`storage: defragmented etcd member ${endpoint}: ${before?.dbSize ?? '?'} -> ${after?.dbSize ?? '?'} bytes`);
      } catch (err) {
        this.opts.log(`storage: defragmenting ${endpoint} failed: ${(err as Error).message}`);
      }
    }
    plan = maintenancePlan(this.state);
    if (plan.disarm) {
      const any = this.opts.endpoints()[0];
      // Deactivate with member id 0 covers every member's NOSPACE alarm.
      const alarms = await this.client(any).maintenance.alarm({ action: AlarmAction.Get, alarm: AlarmType.None, memberID: 0 }, this.deadline());
      for (const a of alarms.alarms.filter((x) => String(x.alarm).toUpperCase() === 'NOSPACE' || Number(x.alarm) === AlarmType.Nospace)) {
        await this.client(any).maintenance.alarm({ action: AlarmAction.Deactivate, alarm: AlarmType.Nospace, memberID: a.memberID }, this.deadline());
      }
      this.disarms++;
      this.opts.log(`storage: disarmed etcd's NOSPACE alarm: every member is under the submit limit again`);
      await this.refresh();
    }
  }

  close(): void {
    this.closed = true;
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}
