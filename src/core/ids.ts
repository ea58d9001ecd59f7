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

/**
 * Time buckets of task ids. A UUIDv7's text starts with its creation time in
 * ms (48 bits, as "xxxxxxxx-xxxx"); the first 10 characters ("xxxxxxxx-x",
 * the top 36 bits) name a bucket of 4,096 ms. Ids sort by text, so a
 * bucket's ids are one contiguous key range: [bucket, nextTimeBucket(bucket)).
 */
const TIME_BUCKET_CHARS = 10;

const BUCKET = /^[0-9a-f]{8}-[0-9a-f]$/;

export function isTimeBucket(text: string): boolean {
  return BUCKET.test(text);
}

export function timeBucketOf(id: string): string {
  return id.slice(0, TIME_BUCKET_CHARS);
}

/** The bucket holding ids minted at `ms` (ms since the epoch). */
export function timeBucketAt(ms: number): string {
  const h = Math.max(0, Math.trunc(ms)).toString(16).padStart(12, '0').slice(-12);
  return `${h.slice(0, 8)}-${h[8]}`;
}

/**
 * The bucket after `bucket`, as the text an id range ends at. The last
 * bucket ("ffffffff-f") is followed by "g", past every hex id.
 */
export function nextTimeBucket(bucket: string): string {
  const n = parseInt(bucket.slice(0, 8) + bucket.slice(9, 10), 16) + 1;
  if (n >= 16 ** 9) return 'g';
  const h = n.toString(16).padStart(9, '0');
  return `${h.slice(0, 8)}-${h[8]}`;
}
