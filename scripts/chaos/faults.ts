/**
 * Faults: a seeded schedule and the code that injects each fault.
 *
 * Faults run one at a time: wait the planned gap, inject, hold, lift, and
 * wait until the cluster has recovered (node up again, paused node rejoined
 * under a new lease, member healthy) before the next one. So etcd keeps its
 * quorum (at most one member down) and every fault hits a healthy cluster.
 *
 *   kill-node   SIGKILL a node's own process; after `holdMs` restart it with
 *               the same arguments and data dir. A short hold restarts it
 *               before its lease expires (the restart revokes the old lease),
 *               a long one after.
 *   pause-node  SIGSTOP only the node's own process (its reaper, its etcd
 *               member and its tasks keep running) for 2x the lease TTL, then
 *               SIGCONT. Its lease expires meanwhile; its reaper must kill its
 *               tasks at the fence deadline, before the lease can expire.
 *   partition-node
 *               cut a worker-only node off from etcd for 2x the lease TTL
 *               while it keeps running: its etcd connections go through the
 *               harness's proxies, which either pass nothing ('drop': open
 *               connections, lost packets) or close them and refuse new ones
 *               ('reset'). Its lease expires for the rest of the cluster,
 *               which requeues its tasks; the node must fence itself (kill
 *               its tasks) before the lease can expire, and rejoin under a
 *               new lease once healed. Only workers (partition-member cuts
 *               a member node).
 *   partition-member
 *               cut a node that embeds an etcd member off from the rest of
 *               the cluster, node and member together, for 2x the lease TTL:
 *               the members advertise the harness's LinkProxies, which know
 *               which process each connection comes from and cut every link
 *               across the partition (peer traffic and client traffic, both
 *               ways; 'drop' or 'reset' as above). The member is then a
 *               minority of one: it cannot commit, and a leader steps down.
 *               Its node must fence itself like a partitioned worker; the
 *               majority elects a leader if needed, lets the lease expire and
 *               requeues; the other nodes must carry on without its member.
 *   kill-etcd   SIGKILL one embedded etcd member (pid from the node's log);
 *               after `holdMs` the harness restarts it with the command line,
 *               environment and cwd read from /proc before the kill (the node
 *               does not restart its member itself).
 *   wipe-member SIGKILL a node that embeds an etcd member, delete its etcd
 *               data dir (a lost disk), and after `holdMs` start it again with
 *               `--join`: the node must bring its member back (removed,
 *               added again as a learner, data from the others, promoted)
 *               and take work. Not in the
 *               default kinds (`--kinds wipe-member`).
 *   replace-member SIGKILL a member node for good, `loom members remove` its
 *               member through a survivor once its lease is gone, and start
 *               a new machine in its place (empty etcd dir, same name and
 *               URLs) with `--join`: added as a new learner, promoted, takes
 *               work. Not in the default kinds.
 *   etcd-outage SIGKILL every etcd member at once (no quorum, no etcd at
 *               all) for `holdMs` (10 s), then restart them all. Meanwhile
 *               the harness runs `loom list` and `loom run true` against a
 *               node and records what a user sees. Nodes stop claiming, fence
 *               themselves once their lease could have expired (killing their
 *               tasks), and rejoin when etcd is back. Not in the default
 *               kinds (`--kinds etcd-outage`): it breaks the one-member-down
 *               rule above on purpose.
 *   drain-node  `loom node drain NAME --deadline D`, then after `holdMs`
 *               `loom node resume NAME` (through another node's API). Only if
 *               enabled and the CLI has `node drain`.
 *
 * Every fault is recorded with its kind, target, start (injected), end
 * (lifted) and recovery times.
 */
import * as fs from 'fs';
import * as path from 'path';
import { ChaosCluster, ChaosNode, loomCli, sleep } from './cluster';
import { Rng } from './rng';

export type FaultKind =
  | 'kill-node' | 'pause-node' | 'partition-node' | 'partition-member' | 'kill-etcd' | 'drain-node' | 'etcd-outage' | 'wipe-member'
  | 'replace-member';
/** Kinds run by default; etcd-outage, wipe-member and replace-member only on request. */
export const FAULT_KINDS: FaultKind[] = ['kill-node', 'pause-node', 'partition-node', 'partition-member', 'kill-etcd', 'drain-node'];
export const ALL_FAULT_KINDS: FaultKind[] = [...FAULT_KINDS, 'etcd-outage', 'wipe-member', 'replace-member'];

export interface PlannedFault {
  seq: number;
  kind: FaultKind;
  target: string;
  /** Wait before injecting. */
  gapMs: number;
  /** How long the fault lasts (down time, pause, drained time). */
  holdMs: number;
  /** drain-node: --deadline. */
  deadlineMs?: number;
  /** partition-node: lose every packet ('drop') or refuse connections ('reset'). */
  mode?: 'drop' | 'reset';
  /**
   * kill-node / pause-node / partition-node: 'timer' strikes at a random moment; 'claim'
   * strikes the instant the harness sees (by an etcd watch) a new running key
   * of that node, i.e. while the node is processing the claim's response and
   * spawning the task: the moment a claim can come back to a node that is
   * already past its fence deadline, or a task can be spawned but not yet
   * registered with the reaper.
   */
  trigger?: 'timer' | 'claim';
}

export interface FaultRecord extends PlannedFault {
  status: 'done' | 'skipped' | 'error';
  startMs: number;
  endMs: number;
  recoveredMs: number;
  note: string;
  /** The target's lease (/node/<name>) before the fault and after recovery. */
  leaseBefore?: string;
  leaseAfter?: string;
  /** The target logged FENCED during the fault or its recovery. */
  fenced?: boolean;
  /** drain-node: when `loom node drain` returned (the drain was acknowledged). */
  ackMs?: number;
  /** Recovery failed: the node/member did not come back (a violation). */
  recoveryError?: string;
}

export interface SchedulePlanOptions {
  kinds: FaultKind[];
  nodes: string[];
  members: string[];
  /** Worker-only nodes (partition-node targets). */
  workers: string[];
  leaseTtlMs: number;
  intervalMs: number;
  /** Run each enabled kind once (in seeded order) before random picks. */
  coverFirst: boolean;
}

/** The seq-th fault of the schedule; a pure function of the rng stream. */
export class FaultSchedule {
  private cover: FaultKind[];
  private seq = 0;

  constructor(
    private readonly rng: Rng,
    private readonly o: SchedulePlanOptions,
  ) {
    this.cover = o.coverFirst ? rng.shuffle(o.kinds) : [];
  }

  next(): PlannedFault {
    const { rng, o } = this;
    const seq = ++this.seq;
    const kind = this.cover.shift() ?? rng.pick(o.kinds);
    const onMembers = ['kill-etcd', 'etcd-outage', 'wipe-member', 'replace-member', 'partition-member'].includes(kind);
    const target = rng.pick(onMembers ? o.members : kind === 'partition-node' ? o.workers : o.nodes);
    const gapMs = rng.int(Math.round(o.intervalMs * 0.5), Math.round(o.intervalMs * 1.5));
    const ttl = o.leaseTtlMs;
    switch (kind) {
      case 'kill-node':
        // Half restart at once (old lease revoked on rejoin), half after it expired.
        return {
          seq, kind, target, gapMs,
          holdMs: rng.chance(0.5) ? rng.int(0, 500) : rng.int(ttl + 500, ttl + 2000),
          trigger: rng.chance(0.5) ? 'claim' : 'timer',
        };
      case 'pause-node':
        return { seq, kind, target, gapMs, holdMs: 2 * ttl, trigger: rng.chance(0.5) ? 'claim' : 'timer' };
      case 'partition-node':
      case 'partition-member':
        return {
          seq, kind, target, gapMs, holdMs: 2 * ttl,
          trigger: rng.chance(0.5) ? 'claim' : 'timer',
          mode: rng.chance(0.5) ? 'drop' : 'reset',
        };
      case 'kill-etcd':
        return { seq, kind, target, gapMs, holdMs: rng.int(1000, 5000) };
      case 'drain-node':
        return { seq, kind, target, gapMs, holdMs: rng.int(2000, 6000), deadlineMs: rng.int(300, 2500) };
      case 'etcd-outage':
        return { seq, kind, target, gapMs, holdMs: 10_000 };
      case 'wipe-member':
      case 'replace-member':
        return { seq, kind, target, gapMs, holdMs: rng.int(0, 1000) };
    }
  }
}

export interface InjectorDeps {
  cluster: ChaosCluster;
  /** Lease of /node/<name> now, or undefined if the key is absent. */
  nodeLease: (name: string) => Promise<string | undefined>;
  /** Calls onPut at each new running key of the node; resolves to a cancel. */
  watchClaims: (node: string, onPut: () => void) => Promise<() => Promise<void>>;
  /** Called right after a paused node is resumed (the sampler watches closely). */
  afterResume?: (node: string) => void;
  drainAvailable: boolean;
  leaseTtlMs: number;
  log: (msg: string) => void;
}

export class FaultInjector {
  constructor(private readonly d: InjectorDeps) {}

  async inject(f: PlannedFault): Promise<FaultRecord> {
    const rec: FaultRecord = { ...f, status: 'done', startMs: Date.now(), endMs: 0, recoveredMs: 0, note: '' };
    const n = this.d.cluster.node(f.target);
    try {
      switch (f.kind) {
        case 'kill-node':
          await this.killNode(n, rec);
          break;
        case 'pause-node':
          await this.pauseNode(n, rec);
          break;
        case 'partition-node':
        case 'partition-member':
          await this.partitionNode(n, rec);
          break;
        case 'kill-etcd':
          await this.killEtcd(n, rec);
          break;
        case 'drain-node':
          await this.drainNode(n, rec);
          break;
        case 'etcd-outage':
          await this.etcdOutage(n, rec);
          break;
        case 'wipe-member':
          await this.wipeMember(n, rec);
          break;
        case 'replace-member':
          await this.replaceMember(n, rec);
          break;
      }
    } catch (err) {
      rec.status = 'error';
      rec.recoveryError = (err as Error).message;
      rec.note = rec.note || (err as Error).message.split('\n')[0];
    }
    if (!rec.endMs) rec.endMs = Date.now();
    if (!rec.recoveredMs) rec.recoveredMs = Date.now();
    return rec;
  }

  private lease(name: string): Promise<string | undefined> {
    return this.d.nodeLease(name).catch(() => undefined);
  }

  /** Did the node log FENCED since `offsetText` length of its output? */
  private fencedSince(n: ChaosNode, before: number): boolean {
    return /FENCED/.test(n.output().slice(before));
  }

  /**
   * Runs `hit` (SIGSTOP/SIGKILL the node, or cut it off) now, or, with the 'claim' trigger,
   * from inside the etcd watch callback that sees the node's next claim
   * (at most 5 s later). Sets rec.startMs; returns how it was timed.
   */
  private async strike(n: ChaosNode, rec: FaultRecord, hit: () => void): Promise<string> {
    let done = false;
    const now = () => {
      if (done) return;
      done = true;
      hit();
      rec.startMs = Date.now();
    };
    if (rec.trigger !== 'claim') {
      now();
      return 'at a random moment';
    }
    let cancel: (() => Promise<void>) | undefined;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 5000);
      this.d
        .watchClaims(n.name, () => {
          now();
          clearTimeout(timer);
          resolve();
        })
        .then((c) => (cancel = c), () => resolve());
    });
    const how = done ? 'right as it claimed a task' : 'after 5 s without seeing a claim';
    now();
    await cancel?.().catch(() => undefined);
    return how;
  }

  private async killNode(n: ChaosNode, rec: FaultRecord): Promise<void> {
    rec.leaseBefore = await this.lease(n.name);
    const how = await this.strike(n, rec, () => n.signal('SIGKILL'));
    await this.d.cluster.killNode(n);
    await sleep(rec.holdMs);
    rec.endMs = Date.now();
    await this.d.cluster.restartNode(n);
    rec.recoveredMs = Date.now();
    rec.leaseAfter = await this.lease(n.name);
    rec.note = `killed ${how}, down ${((rec.endMs - rec.startMs) / 1000).toFixed(1)}s, up again after ${((rec.recoveredMs - rec.endMs) / 1000).toFixed(1)}s`;
  }

  private async wipeMember(n: ChaosNode, rec: FaultRecord): Promise<void> {
    rec.leaseBefore = await this.lease(n.name);
    rec.startMs = Date.now();
    await this.d.cluster.killNode(n);
    await this.d.cluster.waitMemberGone(n);
    fs.rmSync(path.join(n.dataDir, 'etcd'), { recursive: true, force: true });
    const learner = await this.startWithJoin(n, rec, 'again');
    rec.note =
      `killed, etcd data dir deleted, restarted with --join after ${((rec.endMs - rec.startMs) / 1000).toFixed(1)}s; ` +
      `member added again as learner ${learner} and promoted, node up ${((rec.recoveredMs - rec.endMs) / 1000).toFixed(1)}s later`;
  }

  /**
   * After holdMs, starts the node (empty etcd dir) with --join; its member
   * must be added as a learner (`added again`, or `added to the cluster`
   * when new) and promoted. Returns the learner's id.
   */
  private async startWithJoin(n: ChaosNode, rec: FaultRecord, added: 'again' | 'to the cluster'): Promise<string> {
    await sleep(rec.holdMs);
    rec.endMs = Date.now();
    await this.d.cluster.restartNode(n, 120_000, ['--join']);
    rec.recoveredMs = Date.now();
    rec.leaseAfter = await this.lease(n.name);
    const out = n.output();
    const m = new RegExp(`etcd member "\\S+" added ${added} as a learner \\(id ([0-9a-f]+)\\)`).exec(out);
    if (!m) throw new Error(`node ${n.name} came up without logging that its member was added ${added} as a learner`);
    if (!out.includes(`(id ${m[1]}) promoted`)) throw new Error(`node ${n.name} came up without its learner ${m[1]} promoted`);
    return m[1];
  }

  /**
   * A member node's machine is lost for good and replaced: the node is
   * killed, its member removed with `loom members remove` through a survivor
   * (once its lease is gone: a live node's member is refused), and a new
   * machine (empty etcd dir) starts with --join: its member must be added as
   * a new learner and promoted.
   */
  private async replaceMember(n: ChaosNode, rec: FaultRecord): Promise<void> {
    rec.leaseBefore = await this.lease(n.name);
    rec.startMs = Date.now();
    await this.d.cluster.killNode(n);
    await this.d.cluster.waitMemberGone(n);
    const leaseDeadline = Date.now() + this.d.leaseTtlMs + 15_000;
    while ((await this.lease(n.name)) !== undefined) {
      if (Date.now() > leaseDeadline) throw new Error(`node ${n.name}'s lease outlived it`);
      await sleep(200);
    }
    const via = this.d.cluster.members.find((m) => m !== n && m.running && !m.paused);
    if (!via) throw new Error('no running member node to remove the member through');
    const removed = await loomCli(['-N', via.api, 'members', 'remove', n.name], 30_000);
    if (removed.code !== 0) throw new Error(`loom members remove ${n.name} through ${via.name}: exit ${removed.code}: ${removed.out}`);
    const removedAfterS = (Date.now() - rec.startMs) / 1000;
    fs.rmSync(path.join(n.dataDir, 'etcd'), { recursive: true, force: true });
    const learner = await this.startWithJoin(n, rec, 'to the cluster');
    rec.note =
      `killed, member removed through ${via.name} ${removedAfterS.toFixed(1)}s after; ` +
      `new machine joined as learner ${learner} and was promoted, node up ${((rec.recoveredMs - rec.endMs) / 1000).toFixed(1)}s after its start`;
  }

  private async pauseNode(n: ChaosNode, rec: FaultRecord): Promise<void> {
    rec.leaseBefore = await this.lease(n.name);
    const before = n.output().length;
    const how = await this.strike(n, rec, () => n.signal('SIGSTOP'));
    try {
      await sleep(rec.holdMs - (Date.now() - rec.startMs));
    } finally {
      n.signal('SIGCONT');
      rec.endMs = Date.now();
    }
    this.d.afterResume?.(n.name);
    await this.waitNewLease(n, rec, 'SIGCONT');
    rec.fenced = this.fencedSince(n, before);
    rec.note = `paused ${how} for ${((rec.endMs - rec.startMs) / 1000).toFixed(1)}s, rejoined ${((rec.recoveredMs - rec.endMs) / 1000).toFixed(1)}s after SIGCONT${rec.fenced ? ' (logged FENCED)' : ''}`;
  }

  /** partition-node (a worker cut off from etcd) and partition-member (a member node cut off from the rest). */
  private async partitionNode(n: ChaosNode, rec: FaultRecord): Promise<void> {
    const mode = rec.mode ?? 'drop';
    const member = rec.kind === 'partition-member';
    const c = this.d.cluster;
    rec.leaseBefore = await this.lease(n.name);
    const before = n.output().length;
    const how = await this.strike(n, rec, () => (member ? c.isolate(n, mode) : c.partition(n, mode)));
    try {
      await sleep(rec.holdMs - (Date.now() - rec.startMs));
    } finally {
      if (member) c.rejoin();
      else c.heal(n);
      rec.endMs = Date.now();
    }
    this.d.afterResume?.(n.name);
    await this.waitNewLease(n, rec, 'the heal');
    rec.fenced = this.fencedSince(n, before);
    const what = mode === 'drop' ? 'every packet lost' : 'connections refused';
    rec.note =
      `${member ? 'node and etcd member cut off from the rest' : 'cut off from etcd'} (${what}) ${how} for ${((rec.endMs - rec.startMs) / 1000).toFixed(1)}s, ` +
      `rejoined ${((rec.recoveredMs - rec.endMs) / 1000).toFixed(1)}s after the heal${rec.fenced ? ' (logged FENCED)' : ''}`;
  }

  /** Recovered once /node/<name> is back under a lease other than the old one (60 s at most). */
  private async waitNewLease(n: ChaosNode, rec: FaultRecord, after: string): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const lease = await this.lease(n.name);
      if (lease !== undefined && lease !== rec.leaseBefore) {
        rec.leaseAfter = lease;
        break;
      }
      if (Date.now() > deadline) {
        rec.leaseAfter = lease;
        throw new Error(
          `${rec.kind === 'pause-node' ? 'paused' : 'partitioned'} node ${n.name} did not rejoin under a new lease within 60 s of ${after} ` +
            `(lease before ${rec.leaseBefore}, now ${lease ?? 'none'})`,
        );
      }
      await sleep(100);
    }
    rec.recoveredMs = Date.now();
  }

  private async killEtcd(n: ChaosNode, rec: FaultRecord): Promise<void> {
    const before = n.output().length;
    rec.leaseBefore = await this.lease(n.name);
    rec.startMs = Date.now();
    const saved = this.d.cluster.killMember(n);
    await sleep(rec.holdMs);
    rec.endMs = Date.now();
    await this.d.cluster.restartMember(n, saved);
    rec.recoveredMs = Date.now();
    // Give the node a moment to show whether it kept its lease.
    await sleep(500);
    rec.leaseAfter = await this.lease(n.name);
    rec.fenced = this.fencedSince(n, before);
    rec.note =
      `member pid ${saved.pid} down ${((rec.endMs - rec.startMs) / 1000).toFixed(1)}s, restarted by the harness; ` +
      `node ${rec.fenced ? 'was FENCED meanwhile' : 'kept working'}` +
      (rec.leaseAfter !== rec.leaseBefore ? ` (lease ${rec.leaseBefore} -> ${rec.leaseAfter ?? 'none'})` : '');
  }

  private async etcdOutage(via: ChaosNode, rec: FaultRecord): Promise<void> {
    const nodes = this.d.cluster.nodes.filter((x) => x.running);
    const before = new Map(nodes.map((x) => [x.name, x.output().length]));
    const members = nodes.filter((x) => x.role === 'member' && x.memberPid() !== undefined);
    rec.leaseBefore = await this.lease(via.name);
    rec.startMs = Date.now();
    const saved = members.map((m) => ({ m, s: this.d.cluster.killMember(m) }));
    // What a user sees meanwhile (run concurrently with the hold).
    const firstLine = (r: { code: number; out: string }) => `exit ${r.code}: ${JSON.stringify(r.out.split('\n')[0].slice(0, 160))}`;
    const t0 = Date.now();
    const [list, run] = await Promise.all([
      loomCli(['list', '-N', via.api, '--limit', '5']),
      loomCli(['run', '-N', via.api, 'true']),
    ]);
    const seenAfterS = ((Date.now() - t0) / 1000).toFixed(1);
    await sleep(rec.holdMs - (Date.now() - rec.startMs));
    rec.endMs = Date.now();
    await Promise.all(saved.map(({ m, s }) => this.d.cluster.restartMember(m, s)));
    // Recovered once every node is back under a lease.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const leases = await Promise.all(nodes.map((x) => this.lease(x.name)));
      if (leases.every((l) => l !== undefined)) break;
      if (Date.now() > deadline) {
        const missing = nodes.filter((_, i) => leases[i] === undefined).map((x) => x.name);
        throw new Error(`after the etcd outage, node(s) ${missing.join(', ')} did not rejoin within 60 s`);
      }
      await sleep(200);
    }
    rec.recoveredMs = Date.now();
    rec.leaseAfter = await this.lease(via.name);
    const fenced = nodes.filter((x) => /FENCED/.test(x.output().slice(before.get(x.name)!))).map((x) => x.name);
    rec.fenced = fenced.includes(via.name);
    rec.note =
      `all ${members.length} etcd members down ${((rec.endMs - rec.startMs) / 1000).toFixed(1)}s; ` +
      `meanwhile \`loom list\` ${firstLine(list)}, \`loom run true\` ${firstLine(run)} (both answered within ${seenAfterS}s); ` +
      `fenced: ${fenced.length ? fenced.join(',') : 'none'}; every node under a lease again ${((rec.recoveredMs - rec.endMs) / 1000).toFixed(1)}s after the restart`;
  }

  private async drainNode(n: ChaosNode, rec: FaultRecord): Promise<void> {
    if (!this.d.drainAvailable) {
      rec.status = 'skipped';
      rec.note = '`loom node drain` is not available in this build';
      return;
    }
    const via = this.d.cluster.nodes.find((x) => x !== n && x.running && !x.paused) ?? n;
    rec.startMs = Date.now();
    const d = await loomCli(['node', 'drain', n.name, '-N', via.api, '--deadline', `${rec.deadlineMs}ms`]);
    rec.ackMs = Date.now();
    if (d.code !== 0) {
      rec.status = 'error';
      rec.note = `drain failed (exit ${d.code}): ${d.out.split('\n')[0]}`;
      return;
    }
    await sleep(rec.holdMs);
    rec.endMs = Date.now();
    const r = await loomCli(['node', 'resume', n.name, '-N', via.api]);
    rec.recoveredMs = Date.now();
    if (r.code !== 0) {
      rec.status = 'error';
      rec.note = `resume failed (exit ${r.code}): ${r.out.split('\n')[0]}`;
      return;
    }
    rec.note =
      `drained ${((rec.endMs - rec.ackMs) / 1000).toFixed(1)}s (deadline ${rec.deadlineMs} ms) via ${via.name}; ` +
      `the drain command took ${((rec.ackMs - rec.startMs) / 1000).toFixed(1)}s`;
  }
}

/** Is `loom node drain` implemented in this build? */
export async function probeDrain(): Promise<boolean> {
  const r = await loomCli(['node', 'drain', '--help'], 20_000);
  // The daemon's own `loom node --help` has no --deadline; the drain command has.
  return r.code === 0 && /--deadline/.test(r.out);
}
