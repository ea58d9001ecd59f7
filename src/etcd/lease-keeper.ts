/**
 * LeaseKeeper: renews one node incarnation's lease and decides when the node
 * must fence itself (the fencing rules are in membership.ts).
 *
 * Keepalive rounds. Every keepaliveEveryMs one round sends a keepalive on two
 * streams to two different members (on one when only one is known). A stream
 * that still has an unanswered keepalive of an earlier round is not used for
 * the new round: the round opens a new stream, and the old one is closed once
 * its oldest keepalive has waited staleAfterMs (an answer it gives before
 * that still counts). An acknowledgement on any stream proves the lease was
 * renewed after that keepalive was sent.
 *
 * Why. etcd answers a stream's keepalives in order, and a member that is not
 * the leader forwards each one to the leader it knows, waiting for it. When
 * the leader's member is cut off (packets lost), the others first forward to
 * it until their election timeout, then have no leader until they elect one
 * (2.4 s in one chaos run), and while a follower waits for a leader it looks
 * again only once per election timeout. A keepalive sent behind a stuck one
 * waits as long, so one stream, given up a second after it stuck and
 * reopened on a random member (maybe the cut-off one), left the node ~1.3 s of
 * its 3.75 s fence budget after the election: the chaos harness saw nodes of
 * the majority fence themselves. With a fresh stream per round on two
 * members, the first round after the election reaches a member of the
 * majority, which answers at once.
 *
 * Members are tried in this order: those the endpoint probes find answering,
 * then the ones that acknowledged a keepalive most recently. Heartbeats go
 * to the member that acknowledged the last keepalive: it is known to reach the
 * leader now. When the heartbeat lags a round behind, the first acknowledgement
 * after the gap sends one at once rather than at the next round.
 */
import { monitorEventLoopDelay } from 'perf_hooks';
import { LoomError } from '../core/errors';

export interface KeepAliveStream {
  write(req: { ID: string }): boolean;
  on(event: 'data', fn: (res: { ID: string; TTL: string }) => void): unknown;
  on(event: 'error' | 'end', fn: (err?: Error) => void): unknown;
  end(): void;
}

/** Where keepalive streams and heartbeats can go. */
export interface KeepaliveLinks {
  /** The etcd members (client URLs) now; empty: whatever member openStream(undefined) picks. */
  members(): string[];
  /** Whether requests skip this member now (its probe does not answer). */
  skipped(member: string): boolean;
  /** A new keepalive stream to `member` (undefined: any member). */
  openStream(member: string | undefined): Promise<KeepAliveStream>;
}

/**
 * Writes the heartbeat (through `member` when given): resolves true once it
 * committed, false if the node key is no longer under this lease (a survivor
 * declared the node dead).
 */
export type Heartbeat = (member: string | undefined) => Promise<boolean>;

export interface LeaseKeeperOptions {
  ttlSeconds: number;
  /** Called after each acknowledged keepalive or committed heartbeat with the new fence time. */
  onAck?: (fenceAtMs: number) => void;
}

export function fenceMarginMs(ttlMs: number): number {
  return Math.max(1000, ttlMs * 0.25);
}

/** How long a keepalive may wait for its acknowledgement before its stream is closed. */
export function staleAfterMs(ttlMs: number): number {
  return Math.max(500, ttlMs / 5);
}

/** Keepalives (and heartbeats) are sent this often. */
export function keepaliveEveryMs(ttlMs: number): number {
  return Math.max(200, Math.floor(ttlMs / 6));
}

/**
 * Why the node fences, in words: `loopHeldMs` is the longest this process's
 * event loop was held since the last proof. Held longer than a keepalive may
 * wait for its answer, the node itself was too busy to send or hear one;
 * otherwise etcd did not answer in time. Pure; exported for tests.
 */
export function fenceReason(what: string, silentMs: number, loopHeldMs: number, ttlMs: number): string {
  const held = Math.round(loopHeldMs);
  return loopHeldMs >= staleAfterMs(ttlMs)
    ? `no ${what} for ${silentMs} ms, and this node's event loop was held up to ${held} ms meanwhile (too busy to hear etcd); fenced`
    : `no ${what} for ${silentMs} ms while this node's event loop answered within ${held} ms (etcd did not answer in time); fenced`;
}

/** Heartbeats in flight at once (a slow member must not stop the next one). */
const MAX_BEATS_IN_FLIGHT = 3;
/** Members each keepalive round goes to. */
const MEMBERS_PER_ROUND = 2;
/** Streams open at once, at most (stuck ones are closed after staleAfterMs anyway). */
const MAX_STREAMS = 8;

interface Lane {
  member: string | undefined;
  stream: KeepAliveStream | undefined;
  /** Send times of the keepalives written (or waiting for the stream to open), oldest first. */
  pending: number[];
  closed: boolean;
}

/**
 * The members a round goes to: up to `count` distinct ones, those not skipped
 * first (all when every one is skipped), then by latest acknowledgement.
 * Pure; exported for tests.
 */
export function roundMembers(members: string[], skipped: (m: string) => boolean, lastAckMs: (m: string) => number, count = MEMBERS_PER_ROUND): string[] {
  const unique = [...new Set(members)];
  const answering = unique.filter((m) => !skipped(m));
  const pool = answering.length > 0 ? answering : unique;
  // Members that never answered keep a random order, so rounds do not all start on the first listed.
  const shuffled = pool.map((m) => ({ m, tie: Math.random() }));
  shuffled.sort((a, b) => lastAckMs(b.m) - lastAckMs(a.m) || a.tie - b.tie);
  return shuffled.slice(0, count).map((x) => x.m);
}

/** Exported for tests of the fence timing; nodes get it through Membership.join. */
export class LeaseKeeper {
  private readonly controller = new AbortController();
  private lanes: Lane[] = [];
  private readonly lastAckFrom = new Map<string | undefined, number>();
  private lastAckSentMs: number;
  private lastBeatSentMs: number;
  private beatsInFlight = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly ttlMs: number;
  /** Event-loop delay since the last proof (reset when the proof advances). */
  private readonly loop = monitorEventLoopDelay({ resolution: 20 });

  constructor(
    private readonly links: KeepaliveLinks,
    readonly lease: string,
    grantedSentMs: number,
    private readonly opts: LeaseKeeperOptions,
    private readonly beat?: Heartbeat,
  ) {
    this.ttlMs = opts.ttlSeconds * 1000;
    this.lastAckSentMs = grantedSentMs;
    // The node key was written after the grant was sent: the grant's send
    // time is a safe first bound for the heartbeat too.
    this.lastBeatSentMs = grantedSentMs;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Send time of the older of the last acknowledged keepalive and the last committed heartbeat. */
  private lastProofMs(): number {
    return this.beat ? Math.min(this.lastAckSentMs, this.lastBeatSentMs) : this.lastAckSentMs;
  }

  fenceAtMs(): number {
    return this.lastProofMs() + this.ttlMs - fenceMarginMs(this.ttlMs);
  }

  start(): void {
    const interval = keepaliveEveryMs(this.ttlMs);
    let nextSendMs = 0;
    const tick = () => {
      if (this.signal.aborted) return;
      if (this.fenceIfDue()) return;
      if (Date.now() >= nextSendMs) {
        nextSendMs = Date.now() + interval;
        this.round();
        // As often as keepalives (a heartbeat must prove liveness as recently
        // as a keepalive does), unless a load update was written since the last tick.
        if (Date.now() - this.lastBeatSentMs >= interval / 2) void this.sendBeat();
      }
      // Wake for the next keepalive or exactly at the fence deadline,
      // whichever comes first: the node fences on time, not a tick late.
      const wait = Math.min(nextSendMs, this.fenceAtMs()) - Date.now();
      this.timer = setTimeout(tick, Math.max(1, wait));
    };
    this.opts.onAck?.(this.fenceAtMs());
    this.loop.enable();
    tick();
  }

  /**
   * Fences once the deadline has passed. Called before any extension too: an
   * acknowledgement that arrives after the deadline must not revive the
   * incarnation, because the reaper has killed its tasks by then.
   */
  private fenceIfDue(): boolean {
    if (Date.now() < this.fenceAtMs()) return false;
    const what = this.beat && this.lastBeatSentMs < this.lastAckSentMs ? 'heartbeat committed' : 'keepalive acknowledged';
    const heldMs = this.loop.count > 0 ? this.loop.max / 1e6 : 0;
    this.stop(new LoomError('FENCED', fenceReason(what, Date.now() - this.lastProofMs(), heldMs, this.ttlMs)));
    return true;
  }

  /** One keepalive round: stuck streams closed, the keepalive sent on an idle or new stream per member. */
  private round(): void {
    const sentMs = Date.now();
    for (const lane of this.lanes) {
      if (lane.pending.length > 0 && sentMs - lane.pending[0] >= staleAfterMs(this.ttlMs)) this.close(lane);
    }
    let members: (string | undefined)[];
    try {
      members = roundMembers(this.links.members(), (m) => this.links.skipped(m), (m) => this.lastAckFrom.get(m) ?? 0);
    } catch {
      members = [];
    }
    if (members.length === 0) members = [undefined];
    for (const member of members) {
      const idle = this.lanes.find((l) => l.member === member && l.pending.length === 0 && l.stream);
      const lane = idle ?? this.open(member);
      lane.pending.push(sentMs);
      lane.stream?.write({ ID: this.lease });
    }
    while (this.lanes.length > MAX_STREAMS) this.close(this.lanes[0]);
  }

  /** A lane whose stream opens in the background; keepalives pushed meanwhile are written once it is open. */
  private open(member: string | undefined): Lane {
    const lane: Lane = { member, stream: undefined, pending: [], closed: false };
    this.lanes.push(lane);
    this.links.openStream(member).then(
      (s) => {
        if (lane.closed || this.signal.aborted) return s.end();
        lane.stream = s;
        s.on('data', (res) => this.onData(lane, res));
        s.on('error', () => this.close(lane));
        s.on('end', () => this.close(lane));
        for (let i = 0; i < lane.pending.length; i++) s.write({ ID: this.lease });
      },
      () => this.close(lane),
    );
    return lane;
  }

  private close(lane: Lane): void {
    if (lane.closed) return;
    lane.closed = true;
    this.lanes = this.lanes.filter((l) => l !== lane);
    lane.stream?.end();
  }

  private onData(lane: Lane, res: { ID: string; TTL: string }): void {
    // Acks are matched to send times per stream: one from a closed stream is ignored.
    if (lane.closed) return;
    const sentMs = lane.pending.shift();
    if (this.signal.aborted) return;
    if (Number(res.TTL) <= 0) {
      this.stop(new LoomError('FENCED', `lease ${this.lease} expired in etcd; fenced`));
      return;
    }
    if (this.fenceIfDue()) return;
    this.lastAckFrom.set(lane.member, Date.now());
    if (sentMs !== undefined && sentMs > this.lastAckSentMs) {
      this.proved(() => (this.lastAckSentMs = sentMs));
      // The first answer after a gap (say a new etcd leader): the heartbeat, if it lags a
      // round behind, goes now to the member that answered instead of at the next tick.
      if (this.beat && this.lastBeatSentMs < sentMs - keepaliveEveryMs(this.ttlMs)) void this.sendBeat();
    }
  }

  /** The member that acknowledged a keepalive last, if one did within staleAfterMs. */
  private answeringMember(): string | undefined {
    let best: string | undefined;
    let at = Date.now() - staleAfterMs(this.ttlMs);
    for (const [m, ms] of this.lastAckFrom) {
      if (m !== undefined && ms > at) [best, at] = [m, ms];
    }
    return best;
  }

  private async sendBeat(): Promise<void> {
    if (!this.beat || this.beatsInFlight >= MAX_BEATS_IN_FLIGHT) return;
    const sentMs = Date.now();
    this.beatsInFlight++;
    let ok: boolean;
    try {
      ok = await this.beat(this.answeringMember());
    } catch {
      return; // transient (timeout, member down): the next tick sends another
    } finally {
      this.beatsInFlight--;
    }
    if (this.signal.aborted) return;
    if (!ok) {
      this.stop(new LoomError('FENCED', `node key no longer under lease ${this.lease} (declared dead by a survivor); fenced`));
      return;
    }
    this.beatCommitted(sentMs);
  }

  /** A write of the node key under this lease, sent at `sentMs`, committed: it counts as a heartbeat. */
  beatCommitted(sentMs: number): void {
    if (!this.beat || this.signal.aborted || this.fenceIfDue()) return;
    if (sentMs > this.lastBeatSentMs) this.proved(() => (this.lastBeatSentMs = sentMs));
  }

  /** Records a newer proof (`update`), tells onAck, and starts the loop-delay window again if the proof advanced. */
  private proved(update: () => void): void {
    const before = this.lastProofMs();
    update();
    if (this.lastProofMs() > before) this.loop.reset();
    this.opts.onAck?.(this.fenceAtMs());
  }

  stop(reason: LoomError): void {
    if (this.signal.aborted) return;
    if (this.timer) clearTimeout(this.timer);
    this.loop.disable();
    for (const lane of [...this.lanes]) this.close(lane);
    this.controller.abort(reason);
  }
}
