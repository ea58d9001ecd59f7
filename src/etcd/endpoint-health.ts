/**
 * Which etcd members this process should send requests to right now.
 *
 * The etcd3 client picks a member at random for each request. When a member
 * stops answering without closing its connections (lost packets: a network
 * partition, a hung machine), every request that lands there waits for its
 * whole deadline, and the client's circuit breaker tries it again with a real
 * request a second after each failure. Measured with the chaos harness's
 * partition-member (one of three members cut off, packets dropped, 30 s): the
 * rest of the cluster completed 6 tasks/s instead of the 34/s it does when
 * that member's connections are refused.
 *
 * So each member is probed on a connection of its own (etcd's Status call,
 * every second, 2 s deadline), and a member that does not answer, or answers
 * that it has no leader (a minority member), is skipped by every request
 * until a probe succeeds again. Nothing is skipped when every member looks
 * down (an outage, or a one-member cluster restarting): requests then go out
 * as before and fail or succeed on their own.
 */
import type { IDefaultPolicyContext, IPolicy } from 'cockatiel';
import type { Etcd3 } from 'etcd3';
import { probeProblem } from '../core/connect-reason';

export interface EndpointHealthOptions {
  /** One client per endpoint, used only for the probes (a connection of its own). */
  connect: (endpoint: string) => Etcd3;
  everyMs?: number;
  timeoutMs?: number;
  log?: (msg: string) => void;
}

interface EndpointState {
  client: Etcd3 | undefined;
  down: string | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Its probe loop runs (it ends when the endpoint is dropped or probing stops). */
  looping: boolean;
}

/** What a member added while running is marked until its first probe. */
const NOT_PROBED = 'not probed yet';
/** What the probe of a member that calls itself a learner finds. */
const LEARNER = 'it is a learner';

const newState = (down?: string): EndpointState => ({ client: undefined, down, timer: undefined, looping: false });

/** Stops an endpoint's next probe and closes its probe connection (a probe in flight then fails). */
function quiet(s: EndpointState): void {
  if (s.timer) clearTimeout(s.timer);
  s.timer = undefined;
  s.client?.close();
  s.client = undefined;
}

/** Thrown instead of sending a request to a member that is skipped: it never left this process. */
export class MemberSkippedError extends Error {
  constructor(endpoint: string, why: string) {
    super(`etcd member ${endpoint} skipped: ${why}`);
  }
}

export class EndpointHealth {
  private readonly state = new Map<string, EndpointState>();
  private started = false;
  private stopped = false;
  private readonly everyMs: number;
  private readonly timeoutMs: number;

  constructor(
    endpoints: string[],
    private readonly opts: EndpointHealthOptions,
  ) {
    this.everyMs = opts.everyMs ?? 1000;
    this.timeoutMs = opts.timeoutMs ?? 2000;
    for (const e of endpoints) this.state.set(e, newState());
  }

  get endpoints(): string[] {
    return [...this.state.keys()];
  }

  /** Starts probing every endpoint (a one-endpoint list needs no probe: there is nowhere else to go). */
  start(): void {
    this.started = true;
    this.probeAll();
  }

  /** Starts the probe loop of every endpoint that has none, once there are two or more. */
  private probeAll(): void {
    if (this.state.size < 2) return;
    for (const [e, s] of this.state) {
      if (s.looping) continue;
      s.looping = true;
      void this.probe(e, s);
    }
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.state.values()) quiet(s);
  }

  /**
   * The members changed (endpoint-sync.ts): dropped endpoints are forgotten,
   * new ones are probed from now on and get requests once a probe of their
   * own answered (the member list may show a member promoted before it
   * knows itself). With one endpoint left nothing is skipped (see skipReason).
   */
  setEndpoints(endpoints: string[]): void {
    if (this.stopped) return;
    for (const [e, s] of this.state) {
      if (endpoints.includes(e)) continue;
      quiet(s);
      this.state.delete(e);
    }
    for (const e of endpoints) if (!this.state.has(e)) this.state.set(e, newState(this.started ? NOT_PROBED : undefined));
    if (this.started) this.probeAll();
  }

  /** What the last probe of each endpoint found: undefined = answers, else why not. Empty when nothing is probed (one endpoint). */
  status(): Record<string, string | undefined> {
    if (this.state.size < 2) return {};
    return Object.fromEntries([...this.state].map(([e, s]) => [e, s.down]));
  }

  /** Why `endpoint` is skipped now, or undefined when requests may go there. */
  skipReason(endpoint: string): string | undefined {
    const why = this.state.get(endpoint)?.down;
    if (why === undefined) return undefined;
    // Everyone down: skip no one.
    for (const s of this.state.values()) if (s.down === undefined) return why;
    return undefined;
  }

  /** The etcd3 per-host fault policy: refuses (before sending) requests to a skipped member. */
  policy(endpoint: string): IPolicy<IDefaultPolicyContext> {
    const never = new AbortController().signal;
    const policy = {
      execute: <T>(fn: (ctx: IDefaultPolicyContext) => PromiseLike<T> | T, signal: AbortSignal = never): Promise<T> => {
        const why = this.skipReason(endpoint);
        if (why !== undefined) return Promise.reject(new MemberSkippedError(endpoint, why));
        return Promise.resolve().then(() => fn({ signal }));
      },
    };
    return policy as unknown as IPolicy<IDefaultPolicyContext>;
  }

  /** Records what a probe found; logs the changes. */
  private mark(endpoint: string, down: string | undefined): void {
    const s = this.state.get(endpoint);
    if (!s || this.stopped) return;
    const was = s.down;
    s.down = down;
    if (was === undefined && down !== undefined) {
      this.opts.log?.(`etcd member ${endpoint} does not answer (${down}): requests go to the other members until it does`);
    } else if ((was === NOT_PROBED || was === LEARNER) && down === undefined) {
      this.opts.log?.(`etcd member ${endpoint} answers as a voter: requests go to it too`);
    } else if (was !== undefined && down === undefined) {
      this.opts.log?.(`etcd member ${endpoint} answers again`);
    }
  }

  private async probe(endpoint: string, s: EndpointState): Promise<void> {
    s.timer = undefined;
    if (this.stopped || this.state.get(endpoint) !== s) return;
    const started = Date.now();
    let down: string | undefined;
    try {
      s.client ??= this.opts.connect(endpoint);
      const status = await s.client.maintenance.status({ deadline: Date.now() + this.timeoutMs });
      if (status.leader === '0' || status.leader === '') down = 'it has no leader';
      // Its own view: a member just promoted serves nothing until it has applied the promotion.
      else if (status.isLearner === true) down = LEARNER;
    } catch (err) {
      down = probeProblem(err, this.timeoutMs);
      // A fresh connection next time: the old one may be the stuck part.
      s.client?.close();
      s.client = undefined;
    }
    if (this.stopped || this.state.get(endpoint) !== s) return; // dropped meanwhile
    this.mark(endpoint, down);
    const wait = Math.max(0, this.everyMs - (Date.now() - started));
    s.timer = setTimeout(() => void this.probe(endpoint, s), wait);
    s.timer.unref();
  }
}
