/**
 * Retention: deletes finished tasks (record, status key, log tail) and
 * finished jobs (record, name, marks, edges) older than the retention
 * period. Safe to run on several nodes at once: each delete is guarded by
 * the revision it read; normally only one node (rendezvous choice) sweeps.
 *
 *   compare: /task/<id> at the revision read (still the finished record)
 *   then:    delete /task/<id>, its terminal status key, /tail/<id>
 */
import { Job, JobState } from '../gen/loom';
import { decodeTask } from './codec';
import { b, del, ifModRevision, Kv, rangeOp, prefixEnd } from '../etcd/client';
import { jobTaskIdRange, Keys, pad, TERMINAL_KEY_STATES } from './keys';
import { isTimeBucket, nextTimeBucket, timeBucketAt, timeBucketOf } from '../core/ids';
import { priorityOf } from '../core/spec';

const PAGE = 100;
const FINISHED_JOB = new Set([JobState.JOB_COMPLETED, JobState.JOB_FAILED, JobState.KILLED]);

export interface SweepResult {
  tasks: number;
  jobs: number;
  /** Time markers (list hints) of emptied buckets deleted. */
  markers: number;
}

/**
 * Which time markers a sweep checks. Checking a bucket counts its records,
 * and etcd 3.4 walks every key of a range to count it (100,000 queued tasks:
 * the whole queue, on every sweep), so a sweep normally checks only the
 * buckets it deleted tasks from ('touched'); 'all' also finds markers left by
 * an earlier sweep that stopped midway (the caller runs it now and then).
 */
export type MarkerSweep = 'touched' | 'all';

export async function sweepFinished(
  kv: Kv, keys: Keys, retentionMs: number, nowMs: number, signal?: AbortSignal, markers: MarkerSweep = 'all',
): Promise<SweepResult> {
  const cutoff = nowMs - retentionMs;
  const out: SweepResult = { tasks: 0, jobs: 0, markers: 0 };
  const touched = new Set<string>();
  for (const state of TERMINAL_KEY_STATES) {
    const prefix = keys.terminalPrefix(state);
    // Terminal keys sort by finish time: everything before `end` is old enough.
    const end = `${prefix}${pad(cutoff, 13)}`;
    for await (const page of kv.pages({ key: prefix, end, limit: PAGE, keysOnly: true }, 'retention scan', signal)) {
      const ids = page.map((k) => k.key.toString().split('/').pop()!);
      for (const id of ids) touched.add(timeBucketOf(id));
      const recs = await kv.txn({ compare: [], success: ids.map((id) => rangeOp(keys.task(id))) }, 'retention read');
      const ops = page.map((statusKv, i) => {
        const id = ids[i];
        const rec = recs.responses[i]?.response_range?.kvs[0];
        const statusKey = statusKv.key.toString();
        if (!rec) return { request_txn: { compare: [], success: [del(statusKey), del(keys.tail(id))] } };
        const t = decodeTask(rec.value);
        // Tasks of an open job stay until the job has finished (its marks count them).
        if (t.jobId) return undefined;
        return {
          request_txn: {
            compare: [ifModRevision(keys.task(id), rec.mod_revision)],
            success: [del(keys.task(id)), del(statusKey), del(keys.tail(id))],
          },
        };
      });
      const live = ops.filter((o): o is NonNullable<typeof o> => o !== undefined);
      if (live.length) {
        const res = await kv.txn({ compare: [], success: live }, 'retention delete');
        out.tasks += res.responses.filter((r) => r.response_txn?.succeeded).length;
      }
      // Tasks of jobs are skipped (the job sweep takes them with their job).
    }
    if (signal?.aborted) return out;
  }
  out.jobs = await sweepJobs(kv, keys, cutoff, out, touched, signal);
  out.markers = markers === 'all' ? await sweepTimeMarkers(kv, keys, cutoff, signal) : await sweepTouchedMarkers(kv, keys, cutoff, touched);
  return out;
}

/** The markers of `buckets` older than the cutoff whose buckets are empty (the same rule as sweepTimeMarkers). */
async function sweepTouchedMarkers(kv: Kv, keys: Keys, cutoff: number, buckets: Set<string>): Promise<number> {
  const newest = timeBucketAt(cutoff);
  const old = [...buckets].filter((bk) => bk < newest);
  let deleted = 0;
  for (let i = 0; i < old.length; i += PAGE) {
    deleted += await deleteEmptyMarkers(kv, keys, old.slice(i, i + PAGE), true);
  }
  return deleted;
}

/**
 * Deletes the markers of the buckets that hold no task record; with
 * `checkMarkers`, only markers that exist are deleted and counted.
 */
async function deleteEmptyMarkers(kv: Kv, keys: Keys, buckets: string[], checkMarkers: boolean): Promise<number> {
  if (buckets.length === 0) return 0;
  const counts = await kv.txn(
    {
      compare: [],
      success: buckets.flatMap((bk) => [
        { request_range: { key: b(keys.task(bk)), range_end: b(keys.task(nextTimeBucket(bk))), count_only: true } },
        ...(checkMarkers ? [{ request_range: { key: b(keys.timeMarker(bk)), count_only: true } }] : []),
      ]),
    },
    'retention count buckets',
  );
  const per = checkMarkers ? 2 : 1;
  const count = (i: number) => Number(counts.responses[i]?.response_range?.count ?? 1);
  const empty = buckets.filter((_, i) => count(i * per) === 0 && (!checkMarkers || count(i * per + 1) > 0));
  if (empty.length) await kv.txn({ compare: [], success: empty.map((bk) => del(keys.timeMarker(bk))) }, 'retention delete markers');
  return empty.length;
}

/**
 * Time markers (list hints, see id-order.ts) of buckets older than the cutoff
 * whose task records are all gone.
 *   read:   count of /task/<id> in each bucket's id range
 *   then:   delete the markers of empty buckets (no compare: a marker is only
 *           a hint; if a task with a far-behind clock lands in a bucket as its
 *           marker goes, lists take longer to reach it, they still list it)
 */
async function sweepTimeMarkers(kv: Kv, keys: Keys, cutoff: number, signal?: AbortSignal): Promise<number> {
  const end = keys.timeMarker(timeBucketAt(cutoff));
  let deleted = 0;
  for await (const page of kv.pages({ key: keys.timeMarkerPrefix, end, limit: PAGE, keysOnly: true }, 'retention scan markers', signal)) {
    const buckets = page
      .map((k) => keys.parseTimeMarker(k.key.toString()))
      .filter((bk): bk is string => bk !== undefined && isTimeBucket(bk));
    deleted += await deleteEmptyMarkers(kv, keys, buckets, false);
  }
  return deleted;
}

/** Finished jobs older than the cutoff: the job and all its tasks go together. */
async function sweepJobs(kv: Kv, keys: Keys, cutoff: number, out: SweepResult, touched: Set<string>, signal?: AbortSignal): Promise<number> {
  let jobs = 0;
  for await (const page of kv.pages({ key: keys.jobPrefix, end: prefixEnd(keys.jobPrefix), limit: PAGE }, 'retention jobs', signal)) {
    for (const jkv of page) {
      const job = Job.decode(jkv.value);
      if (!FINISHED_JOB.has(job.state) || !job.finishedAtMs || job.finishedAtMs >= cutoff) continue;
      out.tasks += await deleteJobTasks(kv, keys, job);
      // A job's task ids share its id's time (jobTaskId): one bucket.
      touched.add(timeBucketOf(job.id));
      const edges = keys.jobWaitOf(job.id);
      const marks = keys.jobDoneOf(job.id);
      const res = await kv.txn(
        {
          compare: [ifModRevision(keys.job(job.id), jkv.mod_revision)],
          success: [
            del(keys.job(job.id)),
            del(keys.jobName(job.spec!.name)),
            { request_delete_range: { key: b(marks), range_end: b(prefixEnd(marks)) } },
            { request_delete_range: { key: b(edges), range_end: b(prefixEnd(edges)) } },
          ],
        },
        'retention job',
      );
      if (res.succeeded) jobs++;
    }
  }
  return jobs;
}

async function deleteJobTasks(kv: Kv, keys: Keys, job: Job): Promise<number> {
  const [start, end] = jobTaskIdRange(job.id);
  let n = 0;
  for (;;) {
    const page = await kv.range({ key: b(keys.task(start)), range_end: b(keys.task(end)), limit: PAGE }, 'retention job tasks');
    if (page.kvs.length === 0) return n;
    const ops = page.kvs.map((rec) => {
      const t = decodeTask(rec.value);
      const statusKey = keys.statusKeyFor({ id: t.id, state: t.state, node: t.node, priority: priorityOf(t.spec), finishedAtMs: t.finishedAtMs, queueRound: t.queueRound });
      return {
        request_txn: {
          compare: [ifModRevision(keys.task(t.id), rec.mod_revision)],
          success: [del(keys.task(t.id)), del(statusKey), del(keys.tail(t.id))],
        },
      };
    });
    const res = await kv.txn({ compare: [], success: ops }, 'retention job tasks');
    const deleted = res.responses.filter((r) => r.response_txn?.succeeded).length;
    n += deleted;
    if (deleted === 0) return n; // something keeps changing them: next sweep
  }
}

