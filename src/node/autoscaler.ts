/**
 * `loom node --autoscale FILE`: the group's policy (core/autoscale.ts),
 * evaluated every intervalMs by exactly one node, the one holding the group's
 * leader key (store/autoscale-state.ts); any node given the same policy may
 * take over within a lease TTL when it dies.
 *
 * Each evaluation, by the leader: count the queue, look at the live nodes,
 * decide the group's size, record it (fenced on the lead), then act. Growing:
 * nodes being removed are resumed first, then the provider is asked for the
 * size. Shrinking never kills work: the chosen nodes (fewest running) are
 * drained with the policy's deadline, and only once they run nothing does the
 * provider get them as LOOM_AUTOSCALE_REMOVE (again at each evaluation until
 * they are gone: stopping must be idempotent). A provider call that fails is
 * made again at the next evaluation (`applied` lags `target`).
 */
import type { NodeInfo } from '../gen/loom';
import { AutoscalePolicy, decideScale } from '../core/autoscale';
import { Kv } from '../etcd/client';
import { Keys } from '../store/keys';
import { readScaleState, ScaleState, takeScaleLead, writeScaleState } from '../store/autoscale-state';
import { setNodeControl } from '../store/node-control';
import { countQueued } from '../store/status-feed';
import { DockerEngine, parseDockerAddress, resolveDockerEngine } from '../core/docker-engine';
import type { ScaleProvider } from '../core/scale-provider-spec';
import { dockerProvider } from '../runner/docker-scale';
import { kubernetesProvider } from './kube-scale';
import { execProvider } from './scale-provider';

export interface AutoscalerDeps {
  policy: AutoscalePolicy;
  provider: ScaleProvider;
  kv: Kv;
  keys: Keys;
  node: string;
  /** This node's live lease (undefined while it has none: then it does not lead). */
  lease: () => string | undefined;
  nodes: () => NodeInfo[];
  countQueued: () => Promise<number>;
  setDrain: (node: string, drain: boolean, deadlineMs: number) => Promise<void>;
  etcdEndpoints: () => string[];
  log: (m: string) => void;
}

/** What the API shows: the stored state, and whether this node leads. */
export interface AutoscaleStatus {
  group: string;
  leading: boolean;
  min: number;
  max: number;
  state?: ScaleState;
}

export class Autoscaler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly stop$ = new AbortController();
  private leading = false;
  private last: ScaleState | undefined;
  private lastReason = '';

  constructor(private readonly d: AutoscalerDeps) {}

  start(): this {
    this.timer = setInterval(() => void this.tick(), this.d.policy.intervalMs);
    this.timer.unref();
    void this.tick();
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.stop$.abort();
    await this.running?.catch(() => undefined);
  }

  status(): AutoscaleStatus {
    const p = this.d.policy;
    return { group: p.group, leading: this.leading, min: p.min, max: p.max, ...(this.last ? { state: this.last } : {}) };
  }

  /** One evaluation (never two at once). */
  tick(): Promise<void> {
    if (this.running || this.stop$.signal.aborted) return this.running ?? Promise.resolve();
    this.running = this.evaluate()
      .catch((err) => this.d.log(`autoscale ${this.d.policy.group}: ${(err as Error).message}`))
      .finally(() => { this.running = undefined; });
    return this.running;
  }

  private inGroup(n: NodeInfo): boolean {
    return n.labels?.autoscale === this.d.policy.group;
  }

  private async evaluate(): Promise<void> {
    const { policy: p, kv, keys, node } = this.d;
    const lease = this.d.lease();
    const leads = lease !== undefined && await takeScaleLead(kv, keys, p.group, node, lease);
    if (leads !== this.leading) this.d.log(`autoscale ${p.group}: ${leads ? 'this node evaluates the policy now' : 'another node evaluates the policy'}`);
    this.leading = leads;
    const stored = await readScaleState(kv, keys, p.group);
    if (!leads) {
      this.last = stored;
      return;
    }
    const now = Date.now();
    const nodes = this.d.nodes();
    const group = nodes.filter((n) => this.inGroup(n));
    const others = nodes.filter((n) => !this.inGroup(n) && !n.draining);
    const view = {
      queued: await this.d.countQueued(),
      running: nodes.reduce((a, n) => a + n.running, 0),
      otherSlots: others.reduce((a, n) => a + n.slots, 0),
    };
    const memory = stored ?? { target: group.length, lastUpMs: 0, lastDownMs: 0, wanted: [] };
    const decision = decideScale(p, view, memory, now);
    // What changes among the group's nodes: decided here, recorded, then done.
    let removing = stored?.removing ?? [];
    const target = decision.target;
    const resume = target > memory.target ? removing : [];
    removing = removing.filter((name) => !resume.includes(name));
    const staying = group.filter((n) => !removing.includes(n.name));
    // Fewest running first: the cheapest to wait for.
    const drain = [...staying].sort((a, b) => a.running - b.running || a.startedAtMs - b.startedAtMs).slice(0, Math.max(0, staying.length - target)).map((n) => n.name);
    const live = new Map(group.map((n) => [n.name, n]));
    // Removed nodes that are gone: their drain marks go too (a node of that name started later takes work).
    const gone = removing.filter((name) => !live.has(name));
    removing = [...removing.filter((name) => live.has(name)), ...drain];
    const toStop = removing.filter((name) => !drain.includes(name) && live.get(name)!.running === 0);
    const state: ScaleState = {
      ...decision.memory, target, leader: node, observed: group.map((n) => n.name).sort(), removing, reason: decision.reason, atMs: now,
      applied: stored?.applied,
    };
    if (decision.reason !== this.lastReason && !decision.reason.startsWith('steady')) this.d.log(`autoscale ${p.group}: ${decision.reason}`);
    this.lastReason = decision.reason;
    if (!(await writeScaleState(kv, keys, p.group, node, lease, state))) return this.lostLead();
    this.last = state;
    for (const name of [...resume, ...gone]) await this.d.setDrain(name, false, 0);
    for (const name of drain) await this.d.setDrain(name, true, now + p.drainDeadlineMs);
    if (resume.length) this.d.log(`autoscale ${p.group}: resumed ${resume.join(', ')} (growing again: the nodes on their way out are the cheapest to get back)`);
    if (drain.length) this.d.log(`autoscale ${p.group}: draining ${drain.join(', ')} to remove them`);
    if (state.applied === target && toStop.length === 0) return;
    try {
      await this.d.provider({ group: p.group, count: target, remove: toStop, labels: p.labels, etcdEndpoints: this.d.etcdEndpoints() }, this.stop$.signal);
    } catch (err) {
      this.d.log(`autoscale ${p.group}: ${(err as Error).message} (asked again in ${Math.round(p.intervalMs / 1000)} s)`);
      return;
    }
    if (toStop.length) this.d.log(`autoscale ${p.group}: provider stopping ${toStop.join(', ')} (size ${target})`);
    else this.d.log(`autoscale ${p.group}: provider asked for ${target} node(s)`);
    const done: ScaleState = { ...state, applied: target };
    if (!(await writeScaleState(kv, keys, p.group, node, lease, done))) return this.lostLead();
    this.last = done;
  }

  private lostLead(): void {
    this.leading = false;
    this.d.log(`autoscale ${this.d.policy.group}: lost the lead before acting; another node evaluates the policy`);
  }
}

/** The provider a policy names; docker's engine is the node's own (--docker-socket) unless the policy gives one. */
function providerFor(p: AutoscalePolicy, nodeEngine: DockerEngine | undefined, log: (m: string) => void): ScaleProvider {
  const spec = p.provider;
  if (spec.kind === 'exec') return execProvider(spec.command, spec.env);
  if (spec.kind === 'kubernetes') return kubernetesProvider(spec, log);
  return dockerProvider(spec, spec.engine ? parseDockerAddress(spec.engine, 'provider.engine', {}) : nodeEngine ?? resolveDockerEngine(undefined, {}), p.slotsPerNode, log);
}

/** A node's autoscaler for its policy: the provider it names, the queue counted and drains set through etcd. */
export function autoscalerFor(policy: AutoscalePolicy, d: Omit<AutoscalerDeps, 'policy' | 'provider' | 'countQueued' | 'setDrain'> & { dockerEngine?: DockerEngine }): Autoscaler {
  return new Autoscaler({
    ...d, policy, provider: providerFor(policy, d.dockerEngine, d.log),
    countQueued: () => countQueued(d.kv, d.keys),
    setDrain: (name, drain, deadlineMs) => setNodeControl(d.kv, d.keys, name, { drain, deadlineMs }),
  });
}
