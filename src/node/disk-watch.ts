/**
 * Watches the free space of the node's data dir (--min-free-disk). One
 * statfs every few seconds: a syscall that reads the filesystem's counters,
 * far cheaper than anything per claim, and a disk fills in minutes, not in
 * milliseconds. Reports changes only (low with its reason, or fine again).
 */
import { promises as fs } from 'fs';
import { DiskSample, isLowOnDisk, lowDiskReason, MinFreeDisk } from '../core/disk-space';

/** How often the data dir's filesystem is asked for its free space. */
export const DISK_CHECK_MS = 5000;

export interface DiskWatchOptions {
  dir: string;
  min: MinFreeDisk;
  /** Low: why; undefined: enough space again. Called on changes only. */
  onChange: (reason: string | undefined) => void;
  log: (msg: string) => void;
  everyMs?: number;
}

export async function sampleDisk(dir: string): Promise<DiskSample> {
  const st = await fs.statfs(dir);
  // bavail, not bfree: what a process that is not root may still write
  // (the reserved blocks are the filesystem's safety margin, not ours).
  return { freeBytes: st.bavail * st.bsize, totalBytes: st.blocks * st.bsize };
}

export class DiskWatch {
  private timer: NodeJS.Timeout | undefined;
  private reason: string | undefined;
  private failing = false;
  private stopped = false;

  constructor(private readonly opts: DiskWatchOptions) {}

  /** Why the node is low on disk now (undefined: it is not). */
  get lowReason(): string | undefined {
    return this.reason;
  }

  /** Checks once (so a node started on a full disk never claims), then every everyMs. */
  async start(): Promise<void> {
    if (this.opts.min.bytes <= 0 && this.opts.min.percent <= 0) return;
    await this.check();
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.check().finally(() => this.schedule()), this.opts.everyMs ?? DISK_CHECK_MS);
    this.timer.unref();
  }

  private async check(): Promise<void> {
    let sample: DiskSample;
    try {
      sample = await sampleDisk(this.opts.dir);
    } catch (err) {
      // The verdict stays as it was: a statfs that fails says nothing of the space.
      if (!this.failing) this.opts.log(`cannot read free space of ${this.opts.dir}: ${(err as Error).message}`);
      this.failing = true;
      return;
    }
    this.failing = false;
    if (this.stopped) return;
    const low = isLowOnDisk(sample, this.opts.min, this.reason !== undefined);
    if (low === (this.reason !== undefined)) return;
    this.reason = low ? lowDiskReason(sample, this.opts.min) : undefined;
    this.opts.onChange(this.reason);
  }
}
