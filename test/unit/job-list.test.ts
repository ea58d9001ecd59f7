/** `loom job list`: the table, with each job's state. */
import { Job, JobSpec, JobState } from '../../src/gen/loom';
import { formatJobsTable } from '../../src/client/job-cli';

const job = (name: string, state: JobState, count: number): Job =>
  Job.fromPartial({ id: `0190aaaa-0000-7000-8000-00000000000${count}`, spec: JobSpec.fromPartial({ name, count }), state, submittedAtMs: Date.UTC(2026, 10, 30, 8, 0, 0) });

describe('formatJobsTable', () => {
  it('shows each job with its state: active while open, else how it ended', () => {
    const text = formatJobsTable([
      job('nightly', JobState.ACTIVE, 3),
      job('build', JobState.JOB_COMPLETED, 1),
      job('flaky', JobState.JOB_FAILED, 2),
      job('old', JobState.KILLED, 4),
    ]);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+ID\s+STATE\s+TASKS\s+SUBMITTED$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(0, 4))).toEqual([
      ['nightly', '0190aaaa-0000-7000-8000-000000000003', 'active', '3'],
      ['build', '0190aaaa-0000-7000-8000-000000000001', 'completed', '1'],
      ['flaky', '0190aaaa-0000-7000-8000-000000000002', 'failed', '2'],
      ['old', '0190aaaa-0000-7000-8000-000000000004', 'killed', '4'],
    ]);
    expect(lines[1]).toContain('2026-11-30T08:00:00.000Z');
  });

  it('prints only the header when there are no jobs', () => {
    expect(formatJobsTable([])).toMatch(/^NAME\s+ID\s+STATE\s+TASKS\s+SUBMITTED\n$/);
  });
});
