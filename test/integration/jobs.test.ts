/** Jobs against real nodes and etcd: arrays, pipelines, failure cascade, priority, promotion races. */
import { JobSpec, JobState, TaskState } from '../../src/gen/loom';
import { parseJobFile, submitOrder } from '../../src/core/job-spec';
import { JobStore } from '../../src/store/jobs';
import { connectEtcd, Kv } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { TaskTransitions } from '../../src/store/transitions';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode, sharedFile, sharedTmpDir } from '../support/nodes';
import * as fs from 'fs';

jest.setTimeout(90_000);

const job = (name: string, command: string[], extra: Partial<JobSpec> = {}): JobSpec => ({
  name, owner: 'me', template: spec(command), count: 1, overrides: {}, after: [], afterAny: [], labels: {}, ...extra,
});

describe('jobs', () => {
  const root = uniqueRoot();
  let a: TestNode;
  let b: TestNode;
  beforeAll(async () => {
    a = await startNode(root, 'ja', { slots: 4 });
    b = await startNode(root, 'jb', { slots: 4 });
  });
  /** Removed after the suite (a test's own output files, e.g. the pipeline's order log). */
  const tmpDirs: string[] = [];
  afterAll(async () => {
    await stopNode(a);
    await stopNode(b);
    for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  });

  const finished = async (ref: string) => {
    await waitFor(async () => {
      const st = await a.api.getJob(ref);
      return [JobState.JOB_COMPLETED, JobState.JOB_FAILED, JobState.KILLED].includes(st.job!.state) && st;
    }, { what: `job ${ref} to end`, timeoutMs: 60_000 });
    return a.api.getJob(ref);
  };

  it('runs a 500-task array with each index exactly once', async () => {
    const dir = sharedTmpDir('loom-array-');
    try {
      const out = sharedFile(dir, 'ran');
      const st = await a.api.submitJob(job('array500', ['sh', '-c', `echo "$LOOM_TASK_INDEX $LOOM_JOB_ID {{index}}" >> ${out}`], { count: 500 }));
      expect(st.job!.state).toBe(JobState.ACTIVE);
      const end = await finished('array500');
      expect(end.job!.state).toBe(JobState.JOB_COMPLETED);
      expect(end.counts!.completed).toBe(500);
      const lines = fs.readFileSync(out, 'utf8').trim().split('\n');
      expect(lines).toHaveLength(500);
      const indexes = lines.map((l) => l.split(' ')).map(([i, j, sub]) => {
        expect(j).toBe(st.job!.id);
        expect(sub).toBe(i);
        return Number(i);
      });
      expect(new Set(indexes).size).toBe(500);
      expect(Math.max(...indexes)).toBe(499);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('runs a 3-stage pipeline in order, and a failure cascades without running dependents', async () => {
    const dir = sharedTmpDir('loom-pipe-');
    tmpDirs.push(dir);
    const log = sharedFile(dir, 'order');
    const specs = submitOrder(parseJobFile(`jobs:
  - {name: p-c, after: [p-b], task: {command: "echo c >> ${log}"}}
  - {name: p-b, after: [p-a], task: {command: "sleep 0.2; echo b >> ${log}"}}
  - {name: p-a, count: 3, task: {command: "sleep 0.2; echo a >> ${log}"}}
`, 'me'));
    for (const s of specs) await a.api.submitJob(s);
    expect((await a.api.getJob('p-c')).job!.state).toBe(JobState.BLOCKED);
    expect((await finished('p-c')).job!.state).toBe(JobState.JOB_COMPLETED);
    expect(fs.readFileSync(log, 'utf8')).toBe('a\na\na\nb\nc\n');

    await a.api.submitJob(job('f-a', ['true']));
    await a.api.submitJob(job('f-b', ['sh', '-c', 'exit 3'], { after: ['f-a'] }));
    await a.api.submitJob(job('f-c', ['sh', '-c', `echo ran >> ${log}.c`], { after: ['f-b'] }));
    await a.api.submitJob(job('f-any', ['true'], { afterAny: ['f-b'] }));
    expect((await finished('f-b')).job!.state).toBe(JobState.JOB_FAILED);
    const c = await finished('f-c');
    expect(c.job!.state).toBe(JobState.JOB_FAILED);
    expect(c.job!.reason).toBe('dependency f-b failed');
    expect(c.counts!.failed).toBe(1);
    expect(fs.existsSync(`${log}.c`)).toBe(false);
    const t = await a.api.get((await a.api.list({ state: TaskState.FAILED, pageSize: 1000 })).tasks.find((x) => x.jobId === c.job!.id)!.id);
    expect(t.reason).toBe('dependency f-b failed');
    expect((await finished('f-any')).job!.state).toBe(JobState.JOB_COMPLETED);
  });

  it('rejects unknown dependencies and duplicate names; cancels a job', async () => {
    await expect(a.api.submitJob(job('x', ['true'], { after: ['nope'] }))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await a.api.submitJob(job('sleepy', ['sleep', '30'], { count: 3 }));
    await expect(a.api.submitJob(job('sleepy', ['true']))).rejects.toMatchObject({ code: 'INVALID_STATE' });
    await waitFor(async () => (await a.api.getJob('sleepy')).counts!.running === 3, { what: 'sleepy running' });
    await a.api.cancelJob('sleepy');
    expect((await finished('sleepy')).job!.state).toBe(JobState.KILLED);
  });
});

describe('priority and promotion races', () => {
  it('starts a priority-90 task next, behind 1,000 queued priority-10 tasks', async () => {
    const root = uniqueRoot();
    const n = await startNode(root, 'prio', { slots: 1 });
    try {
      const [blocker] = await n.api.submit([spec(['sleep', '30'])]);
      await waitFor(async () => (await n.api.get(blocker)).state === TaskState.RUNNING, { what: 'blocker running' });
      const low = await n.api.submit(Array.from({ length: 1000 }, () => spec(['true'], { priority: 10 })));
      const [high] = await n.api.submit([spec(['true'], { priority: 90 })]);
      await n.api.cancel(blocker);
      const h = await n.api.wait(high);
      const firstLow = await n.api.wait(low[0]);
      expect(h.startedAtMs).toBeLessThanOrEqual(firstLow.startedAtMs);
      const started = await Promise.all(low.slice(0, 20).map((id) => n.api.get(id)));
      for (const t of started) if (t.startedAtMs) expect(t.startedAtMs).toBeGreaterThanOrEqual(h.startedAtMs);
    } finally {
      await stopNode(n);
    }
  });

  it('an urgent task starts at once on a full node in its urgent slot; queued urgent tasks take it next; normal work waits', async () => {
    const n = await startNode(uniqueRoot(), 'urgent', { slots: 1, urgentSlots: 1, urgentPriority: 900 });
    try {
      const [blocker] = await n.api.submit([spec(['sleep', '30'])]);
      await waitFor(async () => (await n.api.get(blocker)).state === TaskState.RUNNING, { what: 'blocker running' });
      const [normal] = await n.api.submit([spec(['true'], { priority: 899 })]);
      // One task, and this node has a free urgent slot: claimed in the submit transaction itself.
      const [urgent] = await n.api.submit([spec(['sleep', '30'], { priority: 900 })]);
      expect((await n.api.get(urgent)).state).toBe(TaskState.RUNNING);
      // Two in one submit are queued; the urgent slot is taken until `urgent` ends.
      const more = await n.api.submit([spec(['true'], { priority: 950 }), spec(['true'], { priority: 950 })]);
      await n.api.cancel(urgent);
      for (const id of more) expect((await n.api.wait(id)).state).toBe(TaskState.COMPLETED);
      // The normal slot is still the blocker's: the priority-899 task has not run.
      expect((await n.api.get(normal)).state).toBe(TaskState.QUEUED);
      expect((await n.api.get(blocker)).state).toBe(TaskState.RUNNING);
      await n.api.cancel(blocker);
      expect((await n.api.wait(normal)).state).toBe(TaskState.COMPLETED);
    } finally {
      await stopNode(n);
    }
  });

  it('two stores racing to promote a blocked job queue it once', async () => {
    const client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
    const kv = new Kv(client);
    const keys = new Keys(uniqueRoot());
    const tr = new TaskTransitions(kv, keys);
    const s1 = new JobStore(kv, keys, tr);
    const s2 = new JobStore(new Kv(client), keys, tr);
    try {
      let up = await s1.create(job('up', ['true']), Date.now());
      up = await s1.materialize(up);
      const down = await s1.create(job('down', ['true'], { count: 50, after: ['up'] }), Date.now());
      expect(down.job.state).toBe(JobState.BLOCKED);
      // Mark every task of `up` completed by hand (no node runs them here).
      const ids = await s1.openTaskIds(up.job);
      for (const id of ids) {
        const q = await kv.get(keys.task(id), 't');
        const { decodeTask } = await import('../../src/store/codec');
        const t = decodeTask(q!.value);
        await kv.txn({ compare: [], success: [
          { request_delete_range: { key: Buffer.from(keys.queued(t.spec!.priority!, id, t.queueRound)) } },
          { request_put: { key: Buffer.from(keys.jobDone(up.job.id, t.index)), value: Buffer.from('completed') } },
        ] }, 't');
      }
      await Promise.all([s1.finalizeIfDone(up.job.id), s2.finalizeIfDone(up.job.id)]);
      await Promise.all([s1.reevaluate(down.job.id), s2.reevaluate(down.job.id), s1.sweep(), s2.sweep()]);
      const d = await s1.get('down');
      expect(d.job.state).toBe(JobState.ACTIVE);
      const counts = await s1.counts(d.job);
      expect(counts.queued).toBe(50);
      const queuedKeys = await kv.range({ key: Buffer.from(keys.queuedPrefix), range_end: Buffer.from(keys.queuedPrefix.slice(0, -1) + '0'), count_only: true }, 't');
      expect(Number(queuedKeys.count)).toBe(50);
    } finally {
      client.close();
    }
  });
  it('counts a job that is still being submitted from a count of its written records', async () => {
    const client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
    const kv = new Kv(client);
    const keys = new Keys(uniqueRoot());
    const store = new JobStore(kv, keys, new TaskTransitions(kv, keys));
    try {
      const held = await store.create(job('sub', ['true'], { count: 1500 }), Date.now());
      expect(held.job.state).toBe(JobState.SUBMITTING);
      expect(await store.counts(held.job)).toMatchObject({ queued: 0, blocked: 1500 });
      await store.materialize(held);
      // The same job seen mid-submit (state still SUBMITTING) once every record is written.
      expect(await store.counts(held.job)).toMatchObject({ queued: 1500, blocked: 0, completed: 0 });
    } finally {
      client.close();
    }
  });

  it('a closed Kv refuses calls with UNAVAILABLE instead of reaching the closed client', async () => {
    const kv = new Kv(connectEtcd({ endpoints: [testEtcdEndpoint()] }));
    kv.close();
    await expect(kv.get('/x', 'get x')).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/closed/) });
    await expect(kv.txn({ compare: [], success: [] }, 'txn x')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});
