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

/**
 * An absolute floor (bytes), a share of the filesystem (percent), or both:
 * then the smaller of the two. 0 and 0: off.
 */
export interface MinFreeDisk {
  bytes: number;
  percent: number;
}

/**
 * 1 GiB, or 5% of a filesystem smaller than 20 GiB: a node whose data dir is
 * a small dedicated volume still works, and a big disk is not asked to keep
 * more than 1 GiB free.
 */
export const DEFAULT_MIN_FREE_DISK: MinFreeDisk = { bytes: 1024 ** 3, percent: 5 };

/**
 * Once low, a node takes work again only when free space is this much above
 * the floor (a tenth of it): a floor crossed back and forth by a few bytes of
 * log would otherwise flip the node, and its published record, on every check.
 */
export const RESUME_MARGIN = 0.1;

/** "1G", "512M", "5%", "1G,5%" (the smaller), "0" (off). Throws INVALID_ARGUMENT. */
export function parseMinFreeDisk(text: string): MinFreeDisk {
  const t = text.trim();
  const bad = () => invalid(`invalid --min-free-disk "${t.slice(0, 80)}" (examples: 1G, 512M, 5%, 1G,5% = the smaller of the two, 0 = off)`);
  const out: MinFreeDisk = { bytes: 0, percent: 0 };
  const parts = t.split(',').map((p) => p.trim());
  if (parts.length > 2) throw bad();
  for (const part of parts) {
    const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(part);
    if (pct) {
      if (out.percent > 0) throw bad();
      out.percent = Number(pct[1]);
      if (out.percent >= 100) throw invalid(`--min-free-disk ${t}: a percentage must be below 100%`);
      continue;
    }
    const bytes = parseBytes(part);
    if (bytes === undefined || out.bytes > 0) throw bad();
    out.bytes = bytes;
  }
  if (parts.length === 2 && (out.bytes === 0 || out.percent === 0)) throw bad();
  return out;
}

export function formatMinFreeDisk(m: MinFreeDisk): string {
  const parts = [...(m.bytes > 0 ? [formatBytes(m.bytes)] : []), ...(m.percent > 0 ? [`${m.percent}%`] : [])];
  return parts.length > 0 ? parts.join(',') : '0';
}

/** What statfs says of the data dir's filesystem (bytes an unprivileged writer may still use, and the total). */
export interface DiskSample {
  freeBytes: number;
  totalBytes: number;
}

/** The floor in bytes for this filesystem (0: off). */
export function floorBytes(m: MinFreeDisk, totalBytes: number): number {
  const share = Math.ceil((totalBytes * m.percent) / 100);
  if (m.bytes > 0 && m.percent > 0) return Math.min(m.bytes, share);
  return m.percent > 0 ? share : m.bytes;
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
  const share = `${m.percent}% of ${formatBytes(sample.totalBytes)}`;
  const what =
    m.percent > 0 && m.bytes > 0 ? `${formatBytes(floor)} (the smaller of ${formatBytes(m.bytes)} and ${share})`
    : m.percent > 0 ? `${formatBytes(floor)} (${share})`
    : formatBytes(floor);
  return `data dir low on space: ${formatBytes(sample.freeBytes)} free < --min-free-disk ${what}`;
}
