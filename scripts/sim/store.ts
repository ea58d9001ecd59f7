/**
 * The simulated keyspace: what loom keeps in etcd for a task, reduced to
 * what claiming needs (state, round, holder lease, attempt), with etcd's
 * guarantees: each transaction commits at one instant, in order, all or
 * nothing per item; watchers see every commit, each after its own delay.
 * The compares are loom's (store/transitions.ts): a claim needs the task
 * queued in the round the claimer saw and a live lease; a result needs the
 * task running under the finisher's lease and attempt. `plant` removes one
 * compare on purpose, so the checker can be shown to catch what follows.
 */
import { Clock } from './clock';

export type Plant = 'none' | 'claim-without-compare' | 'requeue-live-lease';

export interface TaskRow {
  id: string;
  priority: number;
  state: 'queued' | 'running' | 'done';
  round: number;
  attempt: number;
  lease?: string;
}

export interface QueueEvent {
  type: 'queued' | 'unqueued';
  id: string;
  priority: number;
  round: number;
}

export class SimStore {
  readonly tasks = new Map<string, TaskRow>();
  private readonly leases = new Set<string>();
  private readonly watchers: ((events: QueueEvent[], seq: number) => void)[] = [];
  /** The events of the commit in progress: a watcher gets them together, as etcd sends one watch response per revision. */
  private pending: QueueEvent[] = [];
  commits = 0;
  private batches = 0;

  constructor(
    private readonly clock: Clock,
    private readonly plant: Plant,
  ) {}

  /** `seq` numbers the batches in commit order (what a watcher must see them in). */
  watch(deliver: (events: QueueEvent[], seq: number) => void): void {
    this.watchers.push(deliver);
  }

  grant(lease: string): void {
    this.leases.add(lease);
  }

  /** A lease that lapsed: its tasks go back to the queue (what a surviving node's requeue does). */
  expire(lease: string): void {
    this.leases.delete(lease);
    this.requeueHeldBy(lease);
  }

  /** The planted fault: a lease wrongly taken for dead while its node still runs. */
  wronglyExpire(lease: string): void {
    if (this.plant === 'requeue-live-lease') this.requeueHeldBy(lease);
  }

  queued(): TaskRow[] {
    return [...this.tasks.values()].filter((t) => t.state === 'queued');
  }

  submit(rows: { id: string; priority: number }[]): void {
    this.commits++;
    for (const r of rows) {
      const row: TaskRow = { ...r, state: 'queued', round: 0, attempt: 0 };
      this.tasks.set(r.id, row);
      this.emit({ type: 'queued', id: r.id, priority: r.priority, round: 0 });
    }
    this.flush();
  }

  /** One claim transaction: which items it won (attempt numbers), in order. */
  claim(items: { id: string; round: number }[], lease: string): (number | undefined)[] {
    this.commits++;
    const won = items.map(({ id, round }) => {
      const t = this.tasks.get(id)!;
      const ok = this.plant === 'claim-without-compare' ? t.state !== 'done' : t.state === 'queued' && t.round === round && this.leases.has(lease);
      if (!ok) return undefined;
      const wasQueued = t.state === 'queued';
      t.state = 'running';
      t.lease = lease;
      t.attempt++;
      if (wasQueued) this.emit({ type: 'unqueued', id, priority: t.priority, round: t.round });
      return t.attempt;
    });
    this.flush();
    return won;
  }

  /** One result: recorded only for the holder's lease and attempt. */
  finish(id: string, lease: string, attempt: number): boolean {
    this.commits++;
    const t = this.tasks.get(id)!;
    if (t.state !== 'running' || t.lease !== lease || t.attempt !== attempt) return false;
    t.state = 'done';
    t.lease = undefined;
    return true;
  }

  /** A node hands back a task it claimed but will not run (its claim's reply was lost). */
  handBack(id: string, lease: string, attempt: number): boolean {
    this.commits++;
    const t = this.tasks.get(id)!;
    if (t.state !== 'running' || t.lease !== lease || t.attempt !== attempt) return false;
    this.toQueue(t);
    this.flush();
    return true;
  }

  private requeueHeldBy(lease: string): void {
    this.commits++;
    for (const t of this.tasks.values()) if (t.state === 'running' && t.lease === lease) this.toQueue(t);
    this.flush();
  }

  private toQueue(t: TaskRow): void {
    t.state = 'queued';
    t.lease = undefined;
    t.round++;
    this.emit({ type: 'queued', id: t.id, priority: t.priority, round: t.round });
  }

  private emit(e: QueueEvent): void {
    this.pending.push(e);
  }

  private flush(): void {
    if (this.pending.length === 0) return;
    const events = this.pending;
    this.pending = [];
    this.batches++;
    for (const w of this.watchers) w(events, this.batches);
  }
}
