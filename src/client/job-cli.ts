/** `loom job submit|status|list|cancel|logs|result` and `loom run --array N`. */
import * as fs from 'fs';
import { Job, JobCounts, JobSpec, JobState, JobStatus, TaskSpec, TaskState } from '../gen/loom';
import { invalid } from '../core/errors';
import { jobPhase, progressBar } from '../core/job-state';
import { parseJobFile, submitOrder } from '../core/job-spec';
import { jobTaskId } from '../core/ids';
import { formatDurationMs } from '../core/duration';
import { LoomApi } from './client';
import { sleep } from '../core/sleep';
import { taskExitStatus, writeOut } from './attach';
import { formatStateLine } from './format';

export interface JobIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  isTTY: boolean;
}

export type JobCommand =
  | { verb: 'submit'; file: string; wait: boolean }
  | { verb: 'status'; job: string; watch: boolean }
  | { verb: 'list'; limit: number; pageToken: string }
  | { verb: 'cancel'; job: string }
  | { verb: 'logs' | 'result'; job: string; index: number; follow: boolean };

const write = (s: NodeJS.WritableStream, text: string) => new Promise<void>((r) => s.write(text, () => r()));

function done(st: JobStatus): number {
  const c = st.counts!;
  return c.completed + c.failed + c.cancelled + c.lost;
}

export function describeJob(st: JobStatus): string {
  const j = st.job!;
  const c = st.counts!;
  const lines = [
    `job:       ${j.spec!.name} (${j.id})`,
    `state:     ${jobPhase(j, c)}${j.reason ? ` (${j.reason})` : ''}`,
    `tasks:     ${j.spec!.count}: ${c.queued} queued, ${c.running} running, ${c.completed} completed, ${c.failed} failed, ${c.cancelled} cancelled, ${c.lost} lost, ${c.blocked} not yet submitted`,
  ];
  if (j.spec!.after.length || j.spec!.afterAny.length) lines.push(`after:     ${[...j.spec!.after, ...j.spec!.afterAny.map((n) => `${n} (any)`)].join(', ')}`);
  lines.push(`submitted: ${new Date(j.submittedAtMs).toISOString()}`);
  if (j.finishedAtMs) lines.push(`finished:  ${new Date(j.finishedAtMs).toISOString()} (${formatDurationMs(j.finishedAtMs - j.submittedAtMs)})`);
  return lines.join('\n') + '\n';
}

/**
 * `loom job list`: one line per job. A list carries no task counts, so a job
 * still open shows as "active" (`loom job status` tells pending from running).
 */
export function formatJobsTable(jobs: Job[]): string {
  const state = (j: Job) => (j.state === JobState.ACTIVE ? 'active' : jobPhase(j, JobCounts.fromPartial({})));
  const rows = jobs.map(
    (j) => `${j.spec!.name.padEnd(24)} ${j.id}  ${state(j).padEnd(9)}  ${String(j.spec!.count).padStart(6)}  ${new Date(j.submittedAtMs).toISOString()}`,
  );
  return `${'NAME'.padEnd(24)} ${'ID'.padEnd(36)}  ${'STATE'.padEnd(9)}  ${'TASKS'.padStart(6)}  SUBMITTED\n${rows.join('\n')}${rows.length ? '\n' : ''}`;
}

/** Exit status of a finished job: 0 completed, 1 failed, 130 killed. */
export function jobExitStatus(st: JobStatus): number {
  const phase = jobPhase(st.job!, st.counts!);
  return phase === 'completed' ? 0 : phase === 'killed' ? 130 : 1;
}

async function watch(api: LoomApi, ref: string, io: JobIo, json: boolean): Promise<number> {
  let last = '';
  for (;;) {
    const st = await api.getJob(ref);
    const phase = jobPhase(st.job!, st.counts!);
    const finished = phase === 'completed' || phase === 'failed' || phase === 'killed';
    if (io.isTTY && !json) {
      const line = `\r${st.job!.spec!.name} ${phase} ${progressBar(done(st), st.job!.spec!.count)}`;
      if (line !== last) await write(io.stderr, line);
      last = line;
    }
    if (finished) {
      if (io.isTTY && !json) await write(io.stderr, '\n');
      await write(io.stdout, json ? `${JSON.stringify(JobStatus.toJSON(st))}\n` : describeJob(st));
      return jobExitStatus(st);
    }
    await sleep(500);
  }
}

export async function submitArray(api: LoomApi, spec: TaskSpec, count: number, io: JobIo, json: boolean, detach: boolean): Promise<number> {
  const job: JobSpec = {
    name: spec.name || `array-${Date.now().toString(36)}`,
    owner: '',
    template: spec,
    count,
    overrides: {},
    after: [],
    afterAny: [],
    labels: {},
  };
  const st = await api.submitJob(job);
  if (detach) {
    await write(io.stdout, json ? `${JSON.stringify({ job: st.job!.id, name: st.job!.spec!.name })}\n` : `${st.job!.spec!.name} ${st.job!.id}\n`);
    return 0;
  }
  return watch(api, st.job!.id, io, json);
}

export async function runJobCommand(cmd: JobCommand, api: LoomApi, io: JobIo, json: boolean): Promise<number> {
  switch (cmd.verb) {
    case 'submit': {
      let text: string;
      try {
        text = fs.readFileSync(cmd.file, 'utf8');
      } catch (e) {
        throw invalid(`cannot read job file ${cmd.file}: ${(e as Error).message}`);
      }
      const specs = submitOrder(parseJobFile(text, ''));
      const results: JobStatus[] = [];
      for (const spec of specs) {
        let timer: NodeJS.Timeout | undefined;
        let submitted = false;
        if (io.isTTY && !json && spec.count >= 1000) {
          timer = setInterval(() => {
            api.getJob(spec.name).then(
              // A poll answered after the submit returned would redraw a stale bar.
              (st) => void (submitted || write(io.stderr, `\rsubmitting ${spec.name} ${progressBar(spec.count - st.counts!.blocked, spec.count)}`)),
              () => undefined,
            );
          }, 300);
        }
        try {
          results.push(await api.submitJob(spec));
        } finally {
          submitted = true;
          if (timer) {
            clearInterval(timer);
            await write(io.stderr, '\n');
          }
        }
        if (!json) await write(io.stdout, `submitted job ${spec.name} (${results[results.length - 1].job!.id}): ${spec.count} task(s)\n`);
      }
      if (json) await write(io.stdout, `${JSON.stringify(results.map((r) => JobStatus.toJSON(r)))}\n`);
      if (!cmd.wait) return 0;
      let status = 0;
      for (const r of results) status = Math.max(status, await watch(api, r.job!.id, io, json));
      return status;
    }
    case 'status':
      if (cmd.watch) return watch(api, cmd.job, io, json);
      {
        const st = await api.getJob(cmd.job);
        if (json) await write(io.stdout, `${JSON.stringify(JobStatus.toJSON(st))}\n`);
        else {
          await write(io.stdout, describeJob(st));
          if (io.isTTY) await write(io.stdout, `${progressBar(done(st), st.job!.spec!.count)}\n`);
        }
        return 0;
      }
    case 'list': {
      const res = await api.listJobs(cmd.limit, cmd.pageToken);
      if (json) {
        await write(io.stdout, `${JSON.stringify({ jobs: res.jobs.map((j) => ({ id: j.id, name: j.spec!.name, state: j.state, count: j.spec!.count, submittedAtMs: j.submittedAtMs })), nextPageToken: res.nextPageToken })}\n`);
        return 0;
      }
      await write(io.stdout, formatJobsTable(res.jobs));
      if (res.nextPageToken) await write(io.stderr, `loom: more jobs: --page-token ${res.nextPageToken}\n`);
      return 0;
    }
    case 'cancel': {
      const st = await api.cancelJob(cmd.job);
      await write(io.stdout, json ? `${JSON.stringify(JobStatus.toJSON(st))}\n` : `job ${st.job!.spec!.name}: ${st.counts!.cancelled} task(s) cancelled, ${st.counts!.running} still stopping, ${st.counts!.completed + st.counts!.failed + st.counts!.lost} had ended\n`);
      return 0;
    }
    case 'logs':
    case 'result': {
      const st = await api.getJob(cmd.job);
      if (cmd.index < 0 || cmd.index >= st.job!.spec!.count) throw invalid(`--index must be from 0 to ${st.job!.spec!.count - 1}`);
      const id = jobTaskId(st.job!.id, cmd.index);
      if (cmd.verb === 'result') {
        // As `loom wait --result`: the bytes as stored, the task's exit status.
        const t = await api.wait(id);
        await writeOut(io.stdout, t.result);
        if (t.state !== TaskState.COMPLETED) await write(io.stderr, `loom: ${formatStateLine(t)}\n`);
        return taskExitStatus(t);
      }
      for await (const c of api.logs(id, cmd.follow)) {
        if (c.notice) await write(io.stderr, `loom: ${c.notice}\n`);
        if (c.data.length) await write(c.stream === 2 ? io.stderr : io.stdout, Buffer.from(c.data) as unknown as string);
      }
      return 0;
    }
  }
}
