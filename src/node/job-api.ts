/** The job endpoints of the API (see src/store/jobs.ts for the transactions). */
import * as grpc from '@grpc/grpc-js';
import { Job, JobRequest, JobSpec, JobState, JobStatus, ListJobsRequest, ListJobsResponse, SubmitJobRequest, TaskSpec } from '../gen/loom';
import { invalid, LoomError } from '../core/errors';
import { checkGraph, MAX_JOB_TASKS } from '../core/job-spec';
import { validateSpec } from '../core/spec';
import { secretsHidden } from '../core/redact';
import { JobStore } from '../store/jobs';
import { AdapterOptions, unary } from './grpc-adapter';
import type { UnaryOp } from './task-ops';
import { Identity } from './tls';
import { forEachLimited } from '../core/limited';

export interface JobApiDeps {
  jobs: JobStore;
  /** Cancels one task (queued: at once; running: asks its owner), as `identity`. */
  cancelTask: (id: string, identity: Identity) => Promise<unknown>;
  isAdmin: (identity: Identity) => boolean;
  /**
   * The submit-time container policy check (ApiServer.checkContainerPolicy).
   * A job's tasks are recorded as no admin's (Task.submitted_by_admin), so
   * they are checked as a non-admin's.
   */
  checkContainers?: (specs: TaskSpec[], identity: Identity, admin: boolean) => Promise<void>;
  /** RESOURCE_EXHAUSTED when `count` more queued tasks would pass the owner's --max-queued-per-owner. */
  checkQueueRoom?: (owner: string, count: number) => Promise<void>;
  /** The submit gate of etcd's space (see ApiDeps.storage). */
  storage?: { checkSubmit(bytes: number): void };
}

/** The job as `identity` may see it: the secrets of its template and overrides hidden from others (core/redact.ts). */
export function visibleJob(job: Job, identity: Identity, isAdmin: boolean): Job {
  const spec = job.spec;
  if (!spec || isAdmin || spec.owner === identity.name) return job;
  const overrides = Object.fromEntries(Object.entries(spec.overrides).map(([k, o]) => [k, secretsHidden(o)]));
  return { ...job, spec: { ...spec, template: spec.template && secretsHidden(spec.template), overrides } };
}

/** Encoded size of a job's spec (template and overrides): its record must fit one etcd request (see store/txn-size.ts). */
export const MAX_JOB_SPEC_BYTES = 512 * 1024;

/** Re-validates a job spec on the server (clients may be anything); the owner is the caller. */
export function validateJobSpec(spec: JobSpec | undefined, owner: string): JobSpec {
  if (!spec) throw invalid('job spec is missing');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(spec.name ?? '')) throw invalid(`invalid job name "${String(spec.name).slice(0, 80)}"`);
  if (!Number.isInteger(spec.count) || spec.count < 1 || spec.count > MAX_JOB_TASKS) {
    throw invalid(`count must be from 1 to ${MAX_JOB_TASKS}`);
  }
  const template = validateSpec(spec.template);
  const overrides: Record<number, ReturnType<typeof validateSpec>> = {};
  for (const [k, o] of Object.entries(spec.overrides ?? {})) {
    const i = Number(k);
    if (!Number.isInteger(i) || i < 0 || i >= spec.count) throw invalid(`override index ${k} out of range`);
    overrides[i] = validateSpec(o);
  }
  const out: JobSpec = { ...spec, owner, template, overrides, after: spec.after ?? [], afterAny: spec.afterAny ?? [], labels: spec.labels ?? {} };
  // The job record (template and every override) is written in one etcd
  // transaction: one too large for etcd's request limit could never be stored.
  const size = JobSpec.encode(out).finish().length;
  if (size > MAX_JOB_SPEC_BYTES) {
    throw invalid(`job spec is ${size} bytes > limit ${MAX_JOB_SPEC_BYTES} (its template and overrides are stored in one etcd request): use fewer or smaller overrides, or several jobs`);
  }
  checkGraph([out], new Set([...out.after, ...out.afterAny]));
  return out;
}

async function status(jobs: JobStore, ref: string, identity: Identity, isAdmin: boolean): Promise<JobStatus> {
  const { job } = await jobs.get(ref);
  return { job: visibleJob(job, identity, isAdmin), counts: await jobs.counts(job) };
}

/** Task cancels in flight at once for one `loom job cancel`. */
const CANCEL_PARALLELISM = 64;

export interface JobOps {
  submitJob: UnaryOp<SubmitJobRequest, JobStatus>;
  getJob: UnaryOp<JobRequest, JobStatus>;
  listJobs: UnaryOp<ListJobsRequest, ListJobsResponse>;
  cancelJob: UnaryOp<JobRequest, JobStatus>;
}

/** The job calls served over gRPC. */
export function jobHandlers(ops: JobOps, opts: AdapterOptions) {
  return {
    submitJob: unary(ops.submitJob, opts) as grpc.handleUnaryCall<SubmitJobRequest, JobStatus>,
    getJob: unary(ops.getJob, opts),
    listJobs: unary(ops.listJobs, opts),
    cancelJob: unary(ops.cancelJob, opts),
  };
}

/** The job calls, transport-free (see task-ops.ts). */
export function jobOps(d: JobApiDeps): JobOps {
  return {
    submitJob: async (req, { identity }) => {
      const spec = validateJobSpec(req.spec, identity.name);
      await d.checkContainers?.([spec.template!, ...Object.values(spec.overrides)], identity, false);
      await d.checkQueueRoom?.(identity.name, spec.count);
      // The job record, then its tasks, each stored twice while queued (record and queued key).
      d.storage?.checkSubmit(JobSpec.encode(spec).finish().length + 2 * spec.count * TaskSpec.encode(spec.template!).finish().length);
      let held = await d.jobs.create(spec, Date.now());
      if (held.job.state === JobState.SUBMITTING) held = await d.jobs.materialize(held);
      return { job: held.job, counts: await d.jobs.counts(held.job) };
    },
    getJob: async (req, { identity }) => status(d.jobs, req.job, identity, d.isAdmin(identity)),
    listJobs: async (req, { identity }) => {
      const page = await d.jobs.list(req.pageSize, req.pageToken);
      const admin = d.isAdmin(identity);
      return { ...page, jobs: page.jobs.map((j) => visibleJob(j, identity, admin)) };
    },
    cancelJob: async (req, { identity }) => {
      const held = await d.jobs.get(req.job);
      const job: Job = held.job;
      if (job.spec!.owner !== identity.name && !d.isAdmin(identity)) {
        throw new LoomError('PERMISSION_DENIED', `${identity.name} may not cancel job ${job.spec!.name} (owner ${job.spec!.owner})`);
      }
      if ([JobState.JOB_COMPLETED, JobState.JOB_FAILED, JobState.KILLED].includes(job.state)) {
        throw new LoomError('INVALID_STATE', `job ${job.spec!.name} has already ended`);
      }
      if (!(await d.jobs.killBlocked(held))) {
        // Still being written: from now on its writer writes the rest CANCELLED.
        const stopped = job.state === JobState.SUBMITTING ? await d.jobs.cancelSubmitting(held) : undefined;
        if (job.state === JobState.SUBMITTING && !stopped) throw new LoomError('CONFLICT', `job ${job.spec!.name} changed while being cancelled; try again`);
        // One guarded transaction per task, CANCEL_PARALLELISM at a time: a
        // 10,000-task job is cancelled in seconds, not minutes.
        await forEachLimited(await d.jobs.openTaskIds(job), CANCEL_PARALLELISM, async (id) => {
          await d.cancelTask(id, identity).catch(() => undefined); // already finished: fine
        });
        // Finishes the writing here unless another node is at it (then that one does).
        if (stopped) await d.jobs.materialize(stopped);
      }
      return status(d.jobs, job.id, identity, d.isAdmin(identity));
    },
  };
}
