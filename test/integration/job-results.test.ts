/**
 * A dependent job reads its dependency's results: `loom job result JOB
 * --index N` prints the bytes a task of JOB left (its $LOOM_RESULT), waiting
 * for it to end, and exits with its code; a task of a job that runs `after`
 * it calls the same command (real node, the CLI as a process, here and
 * inside the task).
 */
import { JobSpec, JobState } from '../../src/gen/loom';
import { uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';
import { cli, LOOM_BIN } from '../support/cluster';

jest.setTimeout(90_000);

const job = (name: string, command: string[], extra: Partial<JobSpec> = {}): JobSpec => ({
  name, owner: '', template: spec(command), count: 1, overrides: {}, after: [], afterAny: [], labels: {}, ...extra,
});

describe('job results', () => {
  let n: TestNode;
  const env = { LOOM_INSECURE: '', LOOM_TLS_CA: '', LOOM_TLS_CERT: '', LOOM_TLS_KEY: '' };
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'jresults');
  });
  afterAll(async () => stopNode(n));

  it('prints a task\'s result by job and index, also to a task of a job that runs after it', async () => {
    await n.api.submitJob(job('shards', ['sh', '-c', 'printf "shard-$LOOM_TASK_INDEX" > "$LOOM_RESULT"'], { count: 3 }));
    const reader = job('merge', ['sh', '-c', '"$NODE" "$LOOM_JS" -N "$ADDR" job result shards --index 2 > "$LOOM_RESULT"'], { after: ['shards'] });
    reader.template!.env = { NODE: process.execPath, LOOM_JS: LOOM_BIN, ADDR: n.node.address };
    await n.api.submitJob(reader);
    const direct = await cli(['-N', n.node.address, 'job', 'result', 'shards', '--index', '1'], env);
    expect(direct).toMatchObject({ code: 0, stdout: 'shard-1' });
    await waitFor(async () => (await n.api.getJob('merge')).job!.state === JobState.JOB_COMPLETED, { what: 'merge to complete', timeoutMs: 60_000 });
    expect(await cli(['-N', n.node.address, 'job', 'result', 'merge', '--index', '0'], env)).toMatchObject({ code: 0, stdout: 'shard-2' });
  });

  it('a failed task\'s code is the exit status; a bad index is refused with exit 2', async () => {
    await n.api.submitJob(job('broken', ['sh', '-c', 'printf partial > "$LOOM_RESULT"; exit 4']));
    expect(await cli(['-N', n.node.address, 'job', 'result', 'broken', '--index', '0'], env)).toMatchObject({ code: 4, stdout: 'partial' });
    const bad = await cli(['-N', n.node.address, 'job', 'result', 'broken', '--index', '5'], env);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--index must be from 0 to 0/);
  });
});
