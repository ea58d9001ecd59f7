/**
 * Drives jobs forward from this node: after a job's task ends here, checks
 * (debounced) whether the job is done; every few seconds, sweeps open jobs
 * so a submit or promotion interrupted by a dead node is finished.
 */
import { JobStore } from '../store/jobs';

export class JobSweeper {
  private timer: NodeJS.Timeout | undefined;
  private pending = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly jobs: JobStore,
    private readonly log: (m: string) => void,
    private readonly intervalMs = 5000,
    private readonly debounceMs = 200,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.jobs.sweep().catch((e) => this.log(`job sweep: ${(e as Error).message}`)), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
  }

  taskEnded(jobId: string): void {
    if (this.pending.has(jobId)) return;
    const t = setTimeout(() => {
      this.pending.delete(jobId);
      void this.jobs.finalizeIfDone(jobId).catch((e) => this.log(`job ${jobId}: ${(e as Error).message}`));
    }, this.debounceMs);
    t.unref();
    this.pending.set(jobId, t);
  }
}
