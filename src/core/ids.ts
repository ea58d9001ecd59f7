/** Ids derived from other ids (pure). */

/**
 * The id of task `index` of a job: the job id's first 24 characters (its
 * time and most of its randomness) + the index in the last group. Task ids of
 * a job are therefore deterministic (a resumed submit rewrites the same
 * keys), contiguous (one range scan lists a job's tasks) and in index order.
 */
export function jobTaskId(jobId: string, index: number): string {
  return `${jobId.slice(0, 24)}${index.toString(16).padStart(12, '0')}`;
}

/** Range [start, end) of the task ids of a job. */
export function jobTaskIdRange(jobId: string): [string, string] {
  return [jobId.slice(0, 24) + '000000000000', jobId.slice(0, 24) + 'g'];
}

