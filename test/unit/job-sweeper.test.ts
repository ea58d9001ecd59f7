import { JobSweeper } from '../../src/node/job-sweeper';
import { JobStore } from '../../src/store/jobs';
import { sleep } from '../../src/core/sleep';
import { waitFor } from '../support/etcd';

/** The sweeper's timing only: a JobStore that records the checks it is asked for. */
function recorder() {
  const checks: string[] = [];
  const jobs = { finalizeIfDone: async (id: string) => void checks.push(id), sweep: async () => undefined } as unknown as JobStore;
  return { checks, jobs };
}

describe('job sweeper', () => {
  it('checks a job once per burst of task ends', async () => {
    const { checks, jobs } = recorder();
    const s = new JobSweeper({ jobs, log: () => undefined, self: 'a', liveNodes: () => ['a'], holdsQueued: () => false, debounceMs: 20 });
    for (let i = 0; i < 10; i++) s.taskEnded('j1');
    await waitFor(() => checks.length > 0, { what: 'the check', timeoutMs: 5000, intervalMs: 5 });
    await sleep(60); // no second check arrives (an absence: nothing to wait for)
    expect(checks).toEqual(['j1']);
    s.stop();
  });

  it('waits while this node still sees queued tasks of the job, and checks once they are gone', async () => {
    const { checks, jobs } = recorder();
    let queued = true;
    let asked = 0;
    const s = new JobSweeper({ jobs, log: () => undefined, self: 'a', liveNodes: () => ['a'], holdsQueued: () => (asked++, queued), debounceMs: 10 });
    s.taskEnded('j1');
    await waitFor(() => asked >= 3, { what: 'the window asked again', timeoutMs: 5000, intervalMs: 5 });
    expect(checks).toEqual([]);
    queued = false;
    await waitFor(() => checks.length > 0, { what: 'the check', timeoutMs: 5000, intervalMs: 5 });
    expect(checks).toEqual(['j1']);
    s.stop();
  });
});
