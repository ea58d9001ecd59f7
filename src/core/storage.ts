/**
 * How loom keeps etcd's space quota from taking the cluster down (pure).
 *
 * etcd refuses every write that would take its backend file past
 * --quota-backend-bytes and raises the NOSPACE alarm; while the alarm stands
 * it refuses every transaction that puts anything (deletes still pass) and
 * every lease grant. A result, a claim, a heartbeat and a rejoin are all
 * puts: a cluster filled by submits would stop recording results, fence every
 * node and let none rejoin. So submits stop at half the quota
 * (SUBMIT_STOP_FRACTION), and the other half is a reserve for what the work
 * already stored still writes: claiming, cancelling or finishing a task
 * rewrites its record (a queued task is stored twice, its record and its
 * queued key: rewriting every record of a store filled to the limit once
 * takes another quarter), results add a tail (capped, 64 KiB a stream),
 * heartbeats and jobs a little, and every rewrite leaves the old revision
 * until a compaction.
 *
 * etcd measures the backend by its file size, which deletions and
 * compactions do not shrink (bbolt reuses the freed pages, but the file
 * stays); only a defragmentation gives the space back, and it blocks its
 * member while it runs. So one node compacts often once the file is past
 * MAINTAIN_FRACTION (bounding the history rewrites leave), defragments a
 * member only when its file is at the submit limit with much of it free,
 * and disarms the alarm once every file is back under the submit limit.
  */
import { LoomError } from './errors';

/** Submits are refused once a member's backend file reaches this fraction of the quota. */
export const SUBMIT_STOP_FRACTION = 0.5;
/** The maintainer compacts (at each look, up to the previous look's revision) once a member's file reaches this fraction of the quota. */
export const MAINTAIN_FRACTION = 0.4;
/** A member whose file is at the submit limit is defragmented when at least this fraction of it is free pages. */
export const DEFRAG_FREE_FRACTION = 0.25;

/** etcd's own default --quota-backend-bytes (2 GiB): what an `--etcd` cluster has unless told otherwise. */
export const ETCD_DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024;

/** What one member's Status said about its backend (bytes). */
export interface MemberSpace {
  endpoint: string;
  /** Size of the backend file (what etcd compares with its quota). */
  dbSize: number;
  /** Bytes of it in use; the rest is free pages a defragmentation returns. */
  dbSizeInUse: number;
}

export interface StorageState {
  quotaBytes: number;
  members: MemberSpace[];
  /** etcd's NOSPACE alarm is raised (on any member). */
  nospace: boolean;
}

function mib(n: number): string {
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/** The largest member (the first to hit the quota: every member holds the same data, in files of its own). */
function largest(s: StorageState): MemberSpace | undefined {
  let big: MemberSpace | undefined;
  for (const m of s.members) if (!big || m.dbSize > big.dbSize) big = m;
  return big;
}

/** Why a submit is refused now, or undefined when it may go on. */
export function storageRefusal(s: StorageState): string | undefined {
  if (s.nospace) return `etcd raised its NOSPACE alarm (quota ${mib(s.quotaBytes)}): finished tasks must be deleted (retention) and the space defragmented`;
  const big = largest(s);
  const limit = s.quotaBytes * SUBMIT_STOP_FRACTION;
  if (big && big.dbSize > limit) {
    return `etcd member ${big.endpoint} would hold ${mib(big.dbSize)} of its ${mib(s.quotaBytes)} quota; submits stop at ${Math.round(SUBMIT_STOP_FRACTION * 100)}% so that running tasks can still record their results`;
  }
  return undefined;
}

/** The stable error of a refused submit (RESOURCE_EXHAUSTED: retrying once space is freed can succeed; the request itself is fine). */
export function storageFull(why: string): LoomError {
  return new LoomError('RESOURCE_EXHAUSTED', `cluster storage full: ${why}`);
}

export interface MaintenancePlan {
  /** Compact the history up to an older revision, so deleted keys' pages are freed. */
  compact: boolean;
  /** Members to defragment, one at a time (each is blocked while it runs). */
  defrag: string[];
  /** Disarm the NOSPACE alarm: every member is back under the submit limit. */
  disarm: boolean;
}

/** What the one maintaining node should do now. */
export function maintenancePlan(s: StorageState): MaintenancePlan {
  const big = largest(s);
  const pressure = s.nospace || (big !== undefined && big.dbSize >= s.quotaBytes * MAINTAIN_FRACTION);
  const atLimit = (m: MemberSpace) => s.nospace || m.dbSize >= s.quotaBytes * SUBMIT_STOP_FRACTION;
  const defrag = s.members.filter((m) => atLimit(m) && m.dbSize - m.dbSizeInUse >= m.dbSize * DEFRAG_FREE_FRACTION).map((m) => m.endpoint);
  const under = s.members.length > 0 && s.members.every((m) => m.dbSize < s.quotaBytes * SUBMIT_STOP_FRACTION);
  return { compact: pressure, defrag, disarm: s.nospace && under };
}
