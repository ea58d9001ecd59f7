/**
 * Runs the retention sweep when this node is the rendezvous choice among the
 * live nodes (so normally one node sweeps; guarded deletes keep it safe if
 * two do), and removes this node's own old log files.
 */
import { promises as fs } from 'fs';
import * as path from 'path';
import { takesTurn } from '../core/steal-policy';
import { Kv } from '../etcd/client';
import { Keys } from '../store/keys';
import { sweepFinished } from '../store/retention';

export interface RetentionDeps {
  kv: Kv;
  keys: Keys;
  self: string;
  liveNodes: () => string[];
  dataDir: string;
  retentionMs: number;
  log: (m: string) => void;
}

/** How often a sweep checks every time marker, not only those of buckets it deleted from. */
const ALL_MARKERS_EVERY_MS = 3_600_000;

export class RetentionSweeper {
  private timer: NodeJS.Timeout | undefined;
  private allMarkersAtMs = -Infinity;
  private running = false;
  deletedTasks = 0;
  deletedJobs = 0;

  constructor(private readonly d: RetentionDeps) {}

  start(): void {
    const every = Math.min(60_000, Math.max(1000, this.d.retentionMs / 4));
    this.timer = setInterval(() => void this.tick(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      // This node counts itself among the live ones: under etcd's NOSPACE
      // alarm every node is fenced and none can rejoin (lease grants are
      // refused), and deleting finished work is how space comes back.
      // Guarded deletes keep a second sweeper safe.
      if (takesTurn(this.d.self, this.d.liveNodes(), 'retention', 1)) {
        // Every marker is checked at the first sweep and then hourly; in between only
        // those of buckets a sweep deleted from (checking one walks its records).
        const now = Date.now();
        const all = now - this.allMarkersAtMs >= ALL_MARKERS_EVERY_MS;
        const r = await sweepFinished(this.d.kv, this.d.keys, this.d.retentionMs, now, undefined, all ? 'all' : 'touched');
        if (all) this.allMarkersAtMs = now;
        this.deletedTasks += r.tasks;
        this.deletedJobs += r.jobs;
        if (r.tasks || r.jobs) this.d.log(`retention: deleted ${r.tasks} task(s) and ${r.jobs} job(s) finished over ${this.d.retentionMs} ms ago`);
      }
      await this.removeOldLogs();
    } catch (e) {
      this.d.log(`retention sweep failed: ${(e as Error).message}`);
    } finally {
      this.running = false;
    }
  }

  /** Log files (and directories of the older layout) of tasks this node ran, untouched for longer than the retention. */
  private async removeOldLogs(): Promise<void> {
    const dir = path.join(this.d.dataDir, 'logs');
    const cutoff = Date.now() - this.d.retentionMs;
    let names: string[];
    try {
      names = await fs.readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const p = path.join(dir, name);
      const st = await fs.stat(p).catch(() => undefined);
      if (st && st.mtimeMs < cutoff) await fs.rm(p, { recursive: true, force: true }).catch(() => undefined);
    }
  }
}
