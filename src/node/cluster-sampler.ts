/**
 * The cluster's queue as this node sees it, looked at every 10 s while the
 * node serves /metrics or the HTTP API: tasks queued (a count of the queued
 * keys), slots free on the live nodes, and tasks they started since the look
 * before (core/cluster-view.ts). The last hour is kept for the dashboard's
 * chart (GET /api/v1/queue); the latest is loom_queue_depth and
 * loom_slots_free in /metrics.
 */
import type { NodeInfo } from '../gen/loom';
import { ClaimCount, slotsFree, startedSince } from '../core/cluster-view';

export interface QueueSample {
  atMs: number;
  queued: number;
  slotsFree: number;
  /** Tasks the live nodes started since the sample before. */
  started: number;
}

export interface ClusterSamplerDeps {
  countQueued: () => Promise<number>;
  nodes: () => NodeInfo[];
  log: (m: string) => void;
  everyMs?: number;
  keepMs?: number;
}

export class ClusterSampler {
  private readonly samples: QueueSample[] = [];
  private counts = new Map<string, ClaimCount>();
  private lastAtMs = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private looking = false;
  private failing = false;

  constructor(private readonly d: ClusterSamplerDeps) {}

  get everyMs(): number {
    return this.d.everyMs ?? 10_000;
  }

  start(): void {
    if (this.timer) return;
    this.counts = startedSince(new Map(), this.d.nodes(), Date.now()).counts;
    void this.look();
    this.timer = setInterval(() => void this.look(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Oldest first. */
  history(): QueueSample[] {
    return [...this.samples];
  }

  latest(): QueueSample | undefined {
    return this.samples[this.samples.length - 1];
  }

  private async look(): Promise<void> {
    if (this.looking) return;
    this.looking = true;
    try {
      const queued = await this.d.countQueued();
      const nodes = this.d.nodes();
      const atMs = Date.now();
      const { started, counts } = startedSince(this.counts, nodes, this.lastAtMs);
      this.counts = counts;
      this.lastAtMs = atMs;
      this.samples.push({ atMs, queued, slotsFree: slotsFree(nodes), started });
      const keepMs = this.d.keepMs ?? 3_600_000;
      while (this.samples.length > 0 && this.samples[0].atMs < atMs - keepMs) this.samples.shift();
      this.failing = false;
    } catch (err) {
      // Said once per outage, not every 10 s.
      if (!this.failing) this.d.log(`queue sampler: cannot count the queue: ${(err as Error).message}`);
      this.failing = true;
    } finally {
      this.looking = false;
    }
  }
}
