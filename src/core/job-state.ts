/** A job's state as users see it, derived from its record and its tasks' counts. */
import { Job, JobCounts, JobState } from '../gen/loom';

export type JobPhase = 'pending' | 'running' | 'completed' | 'failed' | 'killed';

export function jobPhase(job: Job, c: JobCounts): JobPhase {
  switch (job.state) {
    case JobState.JOB_COMPLETED:
      return 'completed';
    case JobState.JOB_FAILED:
      return 'failed';
    case JobState.KILLED:
      return 'killed';
    case JobState.ACTIVE: {
      const done = c.completed + c.failed + c.cancelled + c.lost;
      return c.running > 0 || (done > 0 && c.queued > 0) ? 'running' : 'pending';
    }
    default:
      return 'pending';
  }
}

/** "[#####.....] 50% 5/10" for terminals. */
export function progressBar(done: number, total: number, width = 30): string {
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const full = Math.round(frac * width);
  return `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${Math.round(frac * 100)}% ${done}/${total}`;
}
