/**
 * Drives jobs forward from this node: after a job's task ends here, checks
 * (debounced) whether the job is done; every few seconds, sweeps open jobs
 * so a submit or promotion interrupted by a dead node is finished.
 *
 * Both reads grow with the cluster if every node makes them: the check
 * counts the job's finished tasks (etcd walks them all), and every node
 * ends tasks of a big job several times a second. So the check waits while
 * this node's queue window still holds queued tasks of the job (it cannot
 * be done yet; the window's watch tells us when they go), and the periodic
 * sweep is made by SWEEPERS_PER_TURN nodes per interval (takesTurn).
 */
import { SWEEPERS_PER_TURN, takesTurn } from '../core/steal-policy';
import { JobStore } from '../store/jobs';

export interface JobSweeperDeps {
  jobs: JobStore;
  log: (m: string) => void;
  self: string;
  liveNodes: () => string[];
  /** Whether this node sees queued tasks of the job (then it is not done). */
  holdsQueued: (jobId: string) => boolean;
  intervalMs?: number;
  debounceMs?: number;
}

export class JobSweeper {
  private timer: NodeJS.Timeout | undefined;
  private pending = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly d: JobSweeperDeps) {}

  start(): void {
    const every = this.d.intervalMs ?? 5000;
    this.timer = setInterval(() => {
      if (!takesTurn(this.d.self, this.d.liveNodes(), `job-sweep/${Math.floor(Date.now() / every)}`, SWEEPERS_PER_TURN)) return;
      void this.d.jobs.sweep().catch((e) => this.d.log(`job sweep: ${(e as Error).message}`));
    }, every);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.pending.values()) clearTimeout(t);
    this.pending.clear();
  }

  taskEnded(jobId: string): void {
    if (this.pending.has(jobId) || this.stopped) return;
    const t = setTimeout(() => {
      this.pending.delete(jobId);
      // Checked again once the window's queued tasks of the job are gone.
      if (this.d.holdsQueued(jobId)) return this.taskEnded(jobId);
      void this.d.jobs.finalizeIfDone(jobId).catch((e) => this.d.log(`job ${jobId}: ${(e as Error).message}`));
    }, this.d.debounceMs ?? 200);
    t.unref();
    this.pending.set(jobId, t);
  }
}
