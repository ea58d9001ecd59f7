/**
 * --min-free-disk: how much free space a node's data dir must keep for the
 * node to take new tasks. Task logs, the lease file and (embedded) the etcd
 * member's data all live there; a node that kept claiming on a full disk would
 * write truncated logs for every task it takes and could starve its own etcd
 * member. The node itself measures (statfs, a few times a minute); this file
 * only says what the numbers mean.
 */
import { invalid } from './errors';
import { formatBytes, parseBytes } from './fit';

/** Either an absolute floor (bytes) or a share of the filesystem (percent); 0 and 0: off. */
export interface MinFreeDisk {
  bytes: number;
  percent: number;
}

export const DEFAULT_MIN_FREE_DISK: MinFreeDisk = { bytes: 1024 ** 3, percent: 0 };

/**
 * Once low, a node takes work again only when free space is this much above
 * the floor (a tenth of it): a floor crossed back and forth by a few bytes of
 * log would otherwise flip the node, and its published record, on every check.
 */
export const RESUME_MARGIN = 0.1;

/** "1G", "512M", "5%", "0" (off). Throws INVALID_ARGUMENT. */
export function parseMinFreeDisk(text: string): MinFreeDisk {
  const t = text.trim();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(t);
  if (pct) {
    const percent = Number(pct[1]);
    if (percent >= 100) throw invalid(`--min-free-disk ${t}: a percentage must be below 100%`);
    return { bytes: 0, percent };
  }
  const bytes = parseBytes(t);
  if (bytes === undefined) throw invalid(`invalid --min-free-disk "${t.slice(0, 80)}" (examples: 1G, 512M, 5%, 0 = off)`);
  return { bytes, percent: 0 };
}

export function formatMinFreeDisk(m: MinFreeDisk): string {
  if (m.percent > 0) return `${m.percent}%`;
  return m.bytes > 0 ? formatBytes(m.bytes) : '0';
}

/** What statfs says of the data dir's filesystem (bytes an unprivileged writer may still use, and the total). */
export interface DiskSample {
  freeBytes: number;
  totalBytes: number;
}

/** The floor in bytes for this filesystem (0: off). */
export function floorBytes(m: MinFreeDisk, totalBytes: number): number {
  return m.percent > 0 ? Math.ceil((totalBytes * m.percent) / 100) : m.bytes;
}

/**
 * Is the data dir too full to take new tasks? `wasLow` is the previous
 * verdict: a low node stays low until free space is back above the floor plus
 * RESUME_MARGIN.
 */
export function isLowOnDisk(sample: DiskSample, m: MinFreeDisk, wasLow: boolean): boolean {
  const floor = floorBytes(m, sample.totalBytes);
  if (floor <= 0) return false;
  return sample.freeBytes < (wasLow ? floor + Math.ceil(floor * RESUME_MARGIN) : floor);
}

/**
 * The reason a node shows (log, `loom nodes`) when it turns low. Made once,
 * at the change: it names the free space of that moment, and a reason that
 * changed with every check would rewrite the node's record each time.
 */
export function lowDiskReason(sample: DiskSample, m: MinFreeDisk): string {
  const floor = floorBytes(m, sample.totalBytes);
  const what = m.percent > 0 ? `${formatBytes(floor)} (${m.percent}% of ${formatBytes(sample.totalBytes)})` : formatBytes(floor);
  return `data dir low on space: ${formatBytes(sample.freeBytes)} free < --min-free-disk ${what}`;
}
