/**
 * Jobs: a named group of tasks from a template, with dependencies, managed
 * with no coordinator. Every step is a guarded transaction any node may
 * perform, and every step is resumable, so a node dying mid-way loses
 * nothing (the sweep finishes what it started):
 *
 *   create      BLOCKED | SUBMITTING (compare: name free, upstream records unchanged)
 *   materialize SUBMITTING -> ACTIVE (tasks written with deterministic ids, then the flip), by
 *               one node at a time: the holder of /jobwriter/<job> (under its lease); every
 *               batch compares the job record's revision and the writer key
 *   cancel      BLOCKED -> KILLED; SUBMITTING: reason "cancelled" (the job record changes, so
 *               the writer re-reads it and writes the rest CANCELLED); ACTIVE: its tasks
 *   finalize    ACTIVE -> COMPLETED | FAILED | KILLED once every task left its mark
 *   promote     BLOCKED -> SUBMITTING when all upstream jobs are done (one winner)
 *
 * A failed batch never leaves a half-submitted job: the job record is written
 * first and is the intent; its tasks are rolled forward by whichever node
 * sweeps it next, never rolled back.
 */
import { v7 as uuidv7 } from 'uuid';
import { Job, JobCounts, JobSpec, JobState, Task, TaskState } from '../gen/loom';
import { LoomError, notFound } from '../core/errors';
import { stateName } from '../core/lifecycle';
import { expandTask } from '../core/job-spec';
import { b, del, ifLease, ifMissing, ifModRevision, Kv, put, prefixEnd } from '../etcd/client';
import { decodeTask } from './codec';
import { isTaskId, jobTaskId, jobTaskIdRange, Keys } from './keys';
import { TaskTransitions } from './transitions';
import { BATCH_CHUNK } from './txn-size';

const FINISHED = new Set([JobState.JOB_COMPLETED, JobState.JOB_FAILED, JobState.KILLED]);
const MATERIALIZE_CHUNK = 1000;
/** Job.reason of a job cancelled while its tasks were being written. */
const CANCELLED_REASON = 'cancelled';

export interface HeldJob {
  job: Job;
  revision: string;
}

function encodeJob(job: Job): Buffer {
  return Buffer.from(Job.encode(job).finish());
}

function decodeJob(value: Uint8Array): Job {
  try {
    return Job.decode(value);
  } catch (e) {
    throw new LoomError('INTERNAL', `corrupt job record: ${(e as Error).message}`);
  }
}

export class JobStore {
  constructor(
    private readonly kv: Kv,
    private readonly keys: Keys,
    private readonly transitions: TaskTransitions,
    private readonly log: (m: string) => void = () => undefined,
    /**
     * This node's lease, undefined while fenced. Given, a node writes a
     * job's tasks only while it holds the job's writer key under that lease,
     * so one node at a time materializes a job (a 100,000-task job would
     * otherwise be written by every node's sweep at once). Unset (tests of
     * the store alone): no writer key.
     */
    private readonly writerLease?: () => string | undefined,
  ) {}

  async get(ref: string): Promise<HeldJob> {
    let id = ref;
    if (!isTaskId(ref)) {
      const byName = await this.kv.get(this.keys.jobName(ref), 'get job');
      if (!byName) throw notFound(`no job named "${ref}"`, ref);
      id = byName.value.toString();
    }
    const kv = await this.kv.get(this.keys.job(id), 'get job');
    if (!kv) throw notFound(`no job ${ref}`, ref);
    return { job: decodeJob(kv.value), revision: kv.mod_revision };
  }

  /** Names that exist, for the submit-time dependency check. */
  async existing(names: string[]): Promise<Map<string, HeldJob>> {
    const out = new Map<string, HeldJob>();
    for (const n of new Set(names)) {
      try {
        out.set(n, await this.get(n));
      } catch (e) {
        if (!(e instanceof LoomError && e.code === 'NOT_FOUND')) throw e;
      }
    }
    return out;
  }

  /** Creates the job record (the commit point) and its dependency edges. */
  async create(spec: JobSpec, nowMs: number): Promise<HeldJob> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const ups = await this.existing([...spec.after, ...spec.afterAny]);
      for (const n of [...spec.after, ...spec.afterAny]) {
        if (!ups.has(n)) throw new LoomError('INVALID_ARGUMENT', `job "${spec.name}" depends on unknown job "${n}"`);
      }
      const job: Job = {
        id: uuidv7(),
        spec,
        state: JobState.BLOCKED,
        submittedAtMs: nowMs,
        finishedAtMs: 0,
        reason: '',
        afterIds: spec.after.map((n) => ups.get(n)!.job.id),
        afterAnyIds: spec.afterAny.map((n) => ups.get(n)!.job.id),
      };
      const verdict = this.readiness(job, [...ups.values()].map((u) => u.job));
      if (verdict.ready) job.state = JobState.SUBMITTING;
      if (verdict.failed) Object.assign(job, { state: JobState.SUBMITTING, reason: verdict.failed });
      const res = await this.kv.txn(
        {
          compare: [ifMissing(this.keys.jobName(spec.name)), ...[...ups.values()].map((u) => ifModRevision(this.keys.job(u.job.id), u.revision))],
          success: [
            put(this.keys.job(job.id), encodeJob(job)),
            put(this.keys.jobName(spec.name), job.id),
            put(this.keys.jobOpen(job.id), ''),
            ...[...job.afterIds, ...job.afterAnyIds].map((u) => put(this.keys.jobWait(u, job.id), '')),
          ],
          failure: [{ request_range: { key: b(this.keys.jobName(spec.name)) } }],
        },
        'create job',
      );
      if (res.succeeded) return { job, revision: res.header.revision };
      if (res.responses[0]?.response_range?.kvs.length) {
        throw new LoomError('INVALID_STATE', `a job named "${spec.name}" already exists`, spec.name);
      }
      // An upstream job changed while we read it: read again.
    }
    throw new LoomError('CONFLICT', `job "${spec.name}": its dependencies kept changing; try again`);
  }

  /** Whether a blocked job may start, or why it must fail. */
  private readiness(job: Job, ups: Job[]): { ready: boolean; failed?: string } {
    const byId = new Map(ups.map((u) => [u.id, u]));
    for (const id of job.afterIds) {
      const u = byId.get(id);
      if (u && (u.state === JobState.JOB_FAILED || u.state === JobState.KILLED)) return { ready: false, failed: `dependency ${u.spec!.name} failed` };
    }
    const ready = job.afterIds.every((id) => byId.get(id)?.state === JobState.JOB_COMPLETED) && job.afterAnyIds.every((id) => FINISHED.has(byId.get(id)?.state ?? JobState.BLOCKED));
    return { ready };
  }

  /**
   * Writes the job's tasks (idempotent), then flips SUBMITTING -> ACTIVE.
   * Returns at once, unchanged, when another node (or another call on this
   * one) holds the job's writer key: that one finishes it.
   */
  async materialize(held: HeldJob, onProgress?: (done: number, total: number) => void): Promise<HeldJob> {
    if (held.job.state !== JobState.SUBMITTING) return held;
    const writer = this.keys.jobWriter(held.job.id);
    let lease: string | undefined;
    if (this.writerLease) {
      lease = this.writerLease();
      if (!lease) return held;
      const took = await this.kv.txn({ compare: [ifMissing(writer)], success: [put(writer, lease, lease)] }, 'take job writer');
      if (!took.succeeded) return held;
    }
    try {
      return await this.writeTasks(held, lease, onProgress);
    } finally {
      // Guarded: only our own key (a fenced node's went with its lease).
      if (lease) await this.kv.txn({ compare: [ifLease(writer, lease)], success: [del(writer)] }, 'release job writer').catch(() => undefined);
    }
  }

  private async writeTasks(held: HeldJob, lease: string | undefined, onProgress?: (done: number, total: number) => void): Promise<HeldJob> {
    const spec = held.job.spec!;
    const now = Date.now();
    for (let i = 0; i < spec.count; ) {
      const { job } = held;
      // A cancel or a failed dependency changes the job record: what is left is written terminal.
      const terminal = job.reason === CANCELLED_REASON ? TaskState.CANCELLED : job.reason ? TaskState.FAILED : undefined;
      const records: Task[] = [];
      for (let index = i; index < Math.min(spec.count, i + MATERIALIZE_CHUNK); index++) {
        const t = this.transitions.newRecord(expandTask(spec, index), spec.owner, now);
        t.id = jobTaskId(job.id, index);
        t.jobId = job.id;
        t.index = index;
        if (terminal !== undefined) Object.assign(t, { state: terminal, finishedAtMs: now, reason: job.reason });
        records.push(t);
      }
      const guard = [ifModRevision(this.keys.job(job.id), held.revision), ...(lease ? [ifLease(this.keys.jobWriter(job.id), lease)] : [])];
      const written = await Promise.all(chunks(records, BATCH_CHUNK).map((c) => this.transitions.materialize(c, guard)));
      if (written.every(Boolean)) {
        i += MATERIALIZE_CHUNK;
        onProgress?.(Math.min(spec.count, i), spec.count);
        continue;
      }
      // The guard failed: the job changed (cancelled) or this node lost the writer key (fenced).
      const fresh = await this.get(job.id);
      if (fresh.job.state !== JobState.SUBMITTING || fresh.revision === held.revision) return fresh;
      held = fresh; // the same chunk again, as the record now says
    }
    const { job } = held;
    const next: Job = { ...job, state: JobState.ACTIVE };
    const res = await this.kv.txn(
      { compare: [ifModRevision(this.keys.job(job.id), held.revision)], success: [put(this.keys.job(job.id), encodeJob(next))] },
      'activate job',
    );
    if (!res.succeeded) return this.get(job.id);
    const active = { job: next, revision: res.header.revision };
    if (job.reason) await this.finalizeIfDone(job.id);
    return active;
  }

  /**
   * Cancels a job that is still having its tasks written (SUBMITTING):
   *   compare: the job record at the revision read
   *   then:    put the job with reason "cancelled"
   * The writer's next batch fails its guard, re-reads, and writes the rest
   * of the tasks CANCELLED; the caller cancels those already queued.
   */
  async cancelSubmitting(held: HeldJob): Promise<HeldJob | undefined> {
    if (held.job.state !== JobState.SUBMITTING) return undefined;
    const next: Job = { ...held.job, reason: CANCELLED_REASON };
    const res = await this.kv.txn(
      { compare: [ifModRevision(this.keys.job(held.job.id), held.revision)], success: [put(this.keys.job(held.job.id), encodeJob(next))] },
      'cancel job',
    );
    return res.succeeded ? { job: next, revision: res.header.revision } : undefined;
  }

  /** Task counts per state, from the job's task records (paged). */
  async counts(job: Job): Promise<JobCounts> {
    const c: JobCounts = { queued: 0, running: 0, completed: 0, failed: 0, cancelled: 0, lost: 0, blocked: 0 };
    if (job.state === JobState.BLOCKED) {
      c.blocked = job.spec!.count;
      return c;
    }
    const [start, end] = jobTaskIdRange(job.id);
    if (job.state === JobState.SUBMITTING) {
      // Mid-submit (a progress bar polls this): a count of the records
      // written so far is enough, and cheap; they are all queued or blocked.
      const res = await this.kv.range({ key: b(this.keys.task(start)), range_end: b(this.keys.task(end)), count_only: true }, 'job counts');
      const written = Math.min(job.spec!.count, Number(res.count));
      return { ...c, queued: written, blocked: job.spec!.count - written };
    }
    for await (const page of this.kv.pages({ key: this.keys.task(start), end: this.keys.task(end), limit: 1000 }, 'job counts')) {
      for (const kv of page) {
        const t = decodeTask(kv.value);
        const k = stateName(t.state) as keyof JobCounts;
        if (k in c) c[k]++;
      }
    }
    const written = c.queued + c.running + c.completed + c.failed + c.cancelled + c.lost;
    c.blocked = Math.max(0, job.spec!.count - written);
    return c;
  }

  /** If every task of an ACTIVE job has ended: record the job's outcome, then wake its dependents. */
  async finalizeIfDone(jobId: string): Promise<void> {
    const held = await this.get(jobId);
    const { job } = held;
    if (job.state !== JobState.ACTIVE) return;
    const prefix = this.keys.jobDoneOf(jobId);
    const count = await this.kv.range({ key: b(prefix), range_end: b(prefixEnd(prefix)), count_only: true }, 'job progress');
    if (Number(count.count) < job.spec!.count) return;
    const marks = await this.kv.range({ key: b(prefix), range_end: b(prefixEnd(prefix)) }, 'job marks');
    const states = new Set(marks.kvs.map((kv) => kv.value.toString()));
    const state = states.has('cancelled') ? JobState.KILLED : states.has('failed') || states.has('lost') ? JobState.JOB_FAILED : JobState.JOB_COMPLETED;
    const next: Job = { ...job, state, finishedAtMs: Date.now(), reason: job.reason || (state === JobState.JOB_FAILED ? 'a task failed' : '') };
    const res = await this.kv.txn(
      {
        compare: [ifModRevision(this.keys.job(jobId), held.revision)],
        success: [put(this.keys.job(jobId), encodeJob(next)), del(this.keys.jobOpen(jobId))],
      },
      'finalize job',
    );
    if (!res.succeeded) return; // another node finalized it (or it changed): it promotes
    this.log(`job ${job.spec!.name} ${JobState[state].toLowerCase().replace('job_', '')}`);
    await this.promoteDependents(jobId);
  }

  /** Re-evaluates every job waiting on `jobId`. */
  async promoteDependents(jobId: string): Promise<void> {
    const prefix = this.keys.jobWaitOf(jobId);
    const res = await this.kv.range({ key: b(prefix), range_end: b(prefixEnd(prefix)), keys_only: true }, 'job dependents');
    for (const kv of res.kvs) {
      const downstream = kv.key.toString().slice(prefix.length);
      await this.reevaluate(downstream).catch((e) => this.log(`job ${downstream}: ${(e as Error).message}`));
    }
  }

  /** BLOCKED -> SUBMITTING (guarded: two nodes racing promote it once), then materialize. */
  async reevaluate(jobId: string): Promise<void> {
    let held = await this.get(jobId);
    if (held.job.state === JobState.BLOCKED) {
      const ups = await Promise.all([...held.job.afterIds, ...held.job.afterAnyIds].map((id) => this.get(id).then((h) => h.job)));
      const verdict = this.readiness(held.job, ups);
      if (!verdict.ready && !verdict.failed) return;
      const next: Job = { ...held.job, state: JobState.SUBMITTING, reason: verdict.failed ?? '' };
      const res = await this.kv.txn(
        { compare: [ifModRevision(this.keys.job(jobId), held.revision)], success: [put(this.keys.job(jobId), encodeJob(next))] },
        'promote job',
      );
      if (!res.succeeded) return;
      this.log(`job ${next.spec!.name} ${verdict.failed ? `fails: ${verdict.failed}` : 'promoted: its dependencies are done'}`);
      held = { job: next, revision: res.header.revision };
    }
    if (held.job.state === JobState.SUBMITTING) held = await this.materialize(held);
    if (held.job.state === JobState.ACTIVE) await this.finalizeIfDone(jobId);
  }

  /** Finishes whatever open jobs need (resume submits, finalize, promote). */
  async sweep(): Promise<void> {
    const prefix = this.keys.jobOpenPrefix;
    const res = await this.kv.range({ key: b(prefix), range_end: b(prefixEnd(prefix)), keys_only: true }, 'open jobs');
    for (const kv of res.kvs) {
      const id = kv.key.toString().slice(prefix.length);
      await this.reevaluate(id).catch((e) => this.log(`job sweep ${id}: ${(e as Error).message}`));
    }
  }

  /** Lists jobs in submit order, paged. */
  async list(pageSize: number, pageToken: string): Promise<{ jobs: Job[]; nextPageToken: string }> {
    const prefix = this.keys.jobPrefix;
    const start = pageToken ? Buffer.from(pageToken, 'base64url').toString() + '\0' : prefix;
    if (!start.startsWith(prefix)) throw new LoomError('INVALID_ARGUMENT', 'invalid page token');
    const res = await this.kv.range({ key: b(start), range_end: b(prefixEnd(prefix)), limit: Math.min(Math.max(pageSize || 100, 1), 1000) }, 'list jobs');
    const last = res.kvs[res.kvs.length - 1];
    return { jobs: res.kvs.map((kv) => decodeJob(kv.value)), nextPageToken: res.more && last ? last.key.toString('base64url') : '' };
  }

  /** Marks a blocked job killed, or returns the ids of an active job's tasks to cancel. */
  async killBlocked(held: HeldJob): Promise<boolean> {
    if (held.job.state !== JobState.BLOCKED) return false;
    const next: Job = { ...held.job, state: JobState.KILLED, finishedAtMs: Date.now(), reason: 'cancelled' };
    const res = await this.kv.txn(
      { compare: [ifModRevision(this.keys.job(held.job.id), held.revision)], success: [put(this.keys.job(held.job.id), encodeJob(next)), del(this.keys.jobOpen(held.job.id))] },
      'cancel job',
    );
    if (res.succeeded) await this.promoteDependents(held.job.id);
    return res.succeeded;
  }

  /** Ids of a job's tasks that are not finished. */
  async openTaskIds(job: Job): Promise<string[]> {
    const [start, end] = jobTaskIdRange(job.id);
    const out: string[] = [];
    for await (const page of this.kv.pages({ key: this.keys.task(start), end: this.keys.task(end), limit: 1000 }, 'job tasks')) {
      for (const kv of page) {
        const t = decodeTask(kv.value);
        if (t.state === TaskState.QUEUED || t.state === TaskState.RUNNING) out.push(t.id);
      }
    }
    return out;
  }
}

function chunks<T>(xs: T[], n: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += n) out.push(xs.slice(i, i + n));
  return out;
}
