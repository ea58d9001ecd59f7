/**
 * Gives new tasks their owners' turns (rounds, core/turns.ts) before they
 * are queued. Per (priority, owner) it reads the owner's last turn
 * (/turn/<ppp>/<owner>) and the round at the band's head (from the node's
 * queue window when the band is in it: etcd 3.4 answers a range by walking
 * all its keys, limit or not, so that read grows with the band), looks up whether
 * that last task is still queued only when it matters, and takes the rounds
 * in one guarded transaction:
 *
 *   reserve: compare: each /turn/<ppp>/<owner> still at the revision read
 *            then:    put /turn/<ppp>/<owner> = "<last round taken> <its task id>"
 *
 * The guard makes two submits of one owner through different nodes take
 * different rounds (the loser reads again), so submitting in parallel
 * gains an owner no extra turns. Only the owner's own submits race on its
 * key; claims never touch it, so the steal loop pays nothing for turns.
 * A reservation whose tasks then fail to be written only skips rounds.
 */
import { Task } from '../gen/loom';
import { LoomError } from '../core/errors';
import { firstRound, formatTurn, lastTurnMatters, parseTurn, ROUND_MAX } from '../core/turns';
import { b, IRequestOp, Kv, ifModRevision, put } from '../etcd/client';
import { Keys } from './keys';
import { KeyedQueue, retryPause } from '../core/keyed-queue';
import { priorityOf } from '../core/spec';

/** (priority, owner) pairs per transaction: 2 reads each, 1 compare and 1 put: within etcd's 128 ops. */
const GROUPS_PER_TXN = 60;
/** Reads and reservations in a row that lost to the same owner's other submits. */
const RESERVE_TRIES = 20;

interface Group {
  priority: number;
  owner: string;
  key: string;
  tasks: Task[];
}

export class TurnBook {
  /** Assigns of the same owners in this process, one at a time (see assign). */
  private readonly inProcess = new KeyedQueue();

  constructor(
    private readonly kv: Kv,
    private readonly keys: Keys,
    /** The band's head round when known locally (QueueWindow.headRound). */
    private readonly headHint: (priority: number) => number | undefined = () => undefined,
  ) {}

  /**
   * Sets queueRound on each record (in order within its owner and priority)
   * and reserves those rounds. Assigns of the same owners in this process
   * wait for each other (a job's chunks are materialized in parallel):
   * racing on the guard would only cost retries.
   */
  async assign(records: Task[], signal?: AbortSignal): Promise<void> {
    if (records.length === 0) return;
    const owners = [...new Set(records.map((t) => t.owner))].sort().join('\n');
    return this.inProcess.run(owners, () => this.assignNow(records, signal));
  }

  private async assignNow(records: Task[], signal?: AbortSignal): Promise<void> {
    const groups = new Map<string, Group>();
    for (const t of records) {
      const priority = priorityOf(t.spec);
      const key = this.keys.turn(priority, t.owner);
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { priority, owner: t.owner, key, tasks: [] }));
      g.tasks.push(t);
    }
    const all = [...groups.values()];
    for (let i = 0; i < all.length; i += GROUPS_PER_TXN) await this.reserve(all.slice(i, i + GROUPS_PER_TXN), signal);
  }

  private async reserve(groups: Group[], signal?: AbortSignal): Promise<void> {
    for (let attempt = 0; attempt < RESERVE_TRIES; attempt++) {
      const seen = await this.read(groups, signal);
      const compare = groups.map((g, i) => ifModRevision(g.key, seen[i].revision));
      const success: IRequestOp[] = groups.map((g, i) => {
        const first = seen[i].first;
        g.tasks.forEach((t, k) => (t.queueRound = Math.min(ROUND_MAX, first + k)));
        const last = g.tasks[g.tasks.length - 1];
        return put(g.key, formatTurn(last.queueRound, last.id));
      });
      const res = await this.kv.txn({ compare, success }, 'reserve turns', signal);
      if (res.succeeded) return;
      await retryPause(attempt + 1);
    }
    throw new LoomError('CONFLICT', `other submits of the same owner kept taking its turns (${RESERVE_TRIES} tries); try again`);
  }

  /** Per group: the turn key's revision ('0': none) and the first round its tasks get. */
  private async read(groups: Group[], signal?: AbortSignal): Promise<{ revision: string; first: number }[]> {
    const ops: IRequestOp[] = [];
    const heads = groups.map((g) => this.headHint(g.priority));
    const at: number[] = [];
    groups.forEach((g, i) => {
      at.push(ops.length);
      ops.push({ request_range: { key: b(g.key) } });
      if (heads[i] !== undefined) return;
      const [start, end] = this.keys.bandRounds(g.priority);
      ops.push({ request_range: { key: b(start), range_end: b(end), limit: 1, keys_only: true } });
    });
    const res = await this.kv.txn({ compare: [], success: ops }, 'read turns', signal);
    const found = groups.map((g, i) => {
      const kv = res.responses[at[i]]?.response_range?.kvs[0];
      const headKv = heads[i] === undefined ? res.responses[at[i] + 1]?.response_range?.kvs[0] : undefined;
      const head = heads[i] ?? (headKv ? this.keys.parseQueued(headKv.key.toString())?.round ?? 0 : 0);
      const last = kv ? parseTurn(kv.value.toString()) : undefined;
      return { g, revision: kv ? kv.mod_revision : '0', head, last };
    });
    // Whether the owner's last task still waits matters only when it would place it after the head.
    const check = found.filter((f) => f.last && lastTurnMatters(f.head, f.last.round));
    const queued = new Set<string>();
    if (check.length > 0) {
      const keyOf = (f: (typeof found)[number]) => this.keys.queued(f.g.priority, f.last!.taskId, f.last!.round);
      const res2 = await this.kv.txn(
        { compare: [], success: check.map((f) => ({ request_range: { key: b(keyOf(f)), count_only: true } })) },
        'read turns',
        signal,
      );
      check.forEach((f, i) => {
        if (Number(res2.responses[i]?.response_range?.count ?? 0) > 0) queued.add(keyOf(f));
      });
    }
    return found.map((f) => ({
      revision: f.revision,
      first: firstRound(f.head, f.last && { round: f.last.round, queued: queued.has(this.keys.queued(f.g.priority, f.last.taskId, f.last.round)) }),
    }));
  }
}
