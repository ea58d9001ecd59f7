/**
 * What a submit's specs must pass before anything is written: validation,
 * the urgency policy, the container policy of the live nodes, and etcd's
 * space. Submits of several tasks are checked one at a time, each from a
 * loop turn of its own: a request may carry 16 MiB of specs, and a dozen of
 * them checked back to back in one turn would hold the event loop for
 * seconds, long enough for the node to miss its lease's keepalives and fence
 * itself.
 */
import { NodeInfo, TaskSpec } from '../gen/loom';
import { LoomError } from '../core/errors';
import { priorityOf, validateBatch } from '../core/spec';
import { submitRefusal } from '../core/container-policy';
import { UrgencyPolicy, urgentRefusal } from '../core/urgency';
import { KeyedQueue } from '../core/keyed-queue';
import { nextTurn } from '../core/sleep';
import type { Identity } from './tls';

export interface SubmitCheckDeps {
  urgency?: UrgencyPolicy;
  /** The live nodes as this node's watch sees them; else `readNodes`. */
  nodes?: () => NodeInfo[];
  readNodes: () => Promise<NodeInfo[]>;
  storage?: { checkSubmit(bytes: number): void };
}

export class SubmitChecks {
  private readonly queue = new KeyedQueue();

  constructor(private readonly deps: SubmitCheckDeps) {}

  /**
   * The validated specs of a task submit, or the first refusal. A one-task
   * submit (at most one spec's limits, ~300 KiB) is checked at once: the
   * common `loom run` pays no queue and no turn.
   */
  specs(tasks: TaskSpec[], identity: Identity, admin: boolean): Promise<TaskSpec[]> {
    if (tasks.length <= 1) return this.check(tasks, identity, admin);
    return this.queue.run('submit', async () => {
      await nextTurn();
      return this.check(tasks, identity, admin);
    });
  }

  private async check(tasks: TaskSpec[], identity: Identity, admin: boolean): Promise<TaskSpec[]> {
    const specs = validateBatch(tasks);
    await this.policy(specs, identity, admin);
    // Each task is stored twice while queued (its record, and the queued key carrying it).
    this.deps.storage?.checkSubmit(specs.reduce((n, s) => n + 2 * TaskSpec.encode(s).finish().length, 0));
    return specs;
  }

  /** The urgency and container policies, for a submit's or a job's specs. */
  async policy(specs: TaskSpec[], identity: Identity, admin: boolean): Promise<void> {
    this.checkUrgency(specs, identity, admin);
    await this.checkContainerPolicy(specs, identity, admin);
  }

  /** PERMISSION_DENIED when `identity` may not submit a spec's urgent priority (see core/urgency.ts). */
  private checkUrgency(specs: TaskSpec[], identity: Identity, admin: boolean): void {
    const policy = this.deps.urgency;
    if (!policy) return;
    const err = urgentRefusal(specs.map(priorityOf), { name: identity.name, admin }, policy);
    if (err) throw err;
  }

  /**
   * Refuses at submit what no live node's container policy allows (the
   * nodes re-check when claiming and when starting: they may differ, and
   * change). Only specs with mounts, a host network or user 0 look.
   */
  private async checkContainerPolicy(specs: TaskSpec[], identity: Identity, admin: boolean): Promise<void> {
    let nodes: NodeInfo[] | undefined;
    for (let i = 0; i < specs.length; i++) {
      const c = specs[i].container;
      if (!c || (c.mounts.length === 0 && !c.network && !c.user)) continue;
      nodes ??= this.deps.nodes ? this.deps.nodes() : await this.deps.readNodes();
      const err = submitRefusal(c, nodes, admin, identity.name);
      if (err) throw specs.length > 1 ? new LoomError(err.code, `task ${i}: ${err.message}`) : err;
    }
  }
}
