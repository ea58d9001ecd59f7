/**
 * Live events for the HTTP API's `/api/v1/events` (Server-Sent Events):
 * task state changes (store/status-feed.ts), the live nodes whenever they
 * change, and the queue every second. One feed per node, shared by its
 * clients, running only while one is connected.
 *
 * Bounded per client: a client that does not read (its socket's buffer past
 * maxBufferedBytes) is dropped, told why if it can still hear it, and costs
 * nothing after that; it may reconnect and list what it missed.
 */
import type { NodeInfo } from '../gen/loom';
import type { StatusFeed, TaskChange } from '../store/status-feed';
import { slotsFree } from '../core/cluster-view';

export interface EventClient {
  /** Bytes written to it and not yet sent. */
  buffered(): number;
  write(text: string): void;
  close(): void;
}

export interface EventHubDeps {
  feed: (onChange: (c: TaskChange) => void) => StatusFeed;
  nodes: () => NodeInfo[];
  onNodesChange: (fn: () => void) => void;
  log: (m: string) => void;
  queueEveryMs?: number;
  maxBufferedBytes?: number;
}

/** One SSE message. */
export function sseMessage(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** What a client sees of a node: its load and state, not its lease or policies. */
function nodeView(n: NodeInfo) {
  const m = n.metrics;
  return {
    name: n.name, address: n.address, slots: n.slots, running: n.running, draining: n.draining, pausedReason: n.pausedReason,
    labels: n.labels, docker: n.docker, startedAtMs: n.startedAtMs, version: n.version,
    cpu: m?.cpuUtilization ?? 0, memoryTotalBytes: m?.memoryTotalBytes ?? 0, memoryAvailableBytes: m?.memoryAvailableBytes ?? 0, sampledAtMs: m?.sampledAtMs ?? 0,
  };
}

export class EventHub {
  private readonly clients = new Set<EventClient>();
  private feed: StatusFeed | undefined;
  private timer: NodeJS.Timeout | undefined;
  private counting = false;
  dropped = 0;

  constructor(private readonly d: EventHubDeps) {
    d.onNodesChange(() => {
      if (this.clients.size > 0) this.broadcast(sseMessage('nodes', { nodes: d.nodes().map(nodeView) }));
    });
  }

  get size(): number {
    return this.clients.size;
  }

  /** Adds a client (sent the live nodes at once); returns its removal. */
  async add(client: EventClient): Promise<() => void> {
    this.clients.add(client);
    client.write(sseMessage('nodes', { nodes: this.d.nodes().map(nodeView) }));
    if (!this.feed) {
      this.feed = this.d.feed((c) => this.broadcast(sseMessage('task', c)));
      this.timer = setInterval(() => void this.sendQueue(), this.d.queueEveryMs ?? 1000);
      this.timer.unref();
      await this.feed.start().catch((err) => this.d.log(`event stream: ${(err as Error).message}`));
    }
    void this.sendQueue();
    return () => this.remove(client);
  }

  private remove(client: EventClient): void {
    if (!this.clients.delete(client) || this.clients.size > 0) return;
    clearInterval(this.timer);
    this.timer = undefined;
    const feed = this.feed;
    this.feed = undefined;
    void feed?.stop();
  }

  private broadcast(text: string): void {
    const max = this.d.maxBufferedBytes ?? 256 * 1024;
    for (const c of this.clients) {
      if (c.buffered() > max) {
        this.dropped++;
        this.remove(c);
        c.write(sseMessage('dropped', { reason: `this client read too slowly (over ${max} bytes waiting): reconnect, and list what changed meanwhile` }));
        c.close();
        continue;
      }
      c.write(text);
    }
  }

  /** The queue's depth and the free slots of the live nodes (as they last published). */
  private async sendQueue(): Promise<void> {
    const feed = this.feed;
    if (!feed || this.counting) return;
    this.counting = true;
    try {
      const queued = await feed.queueDepth();
      if (this.feed === feed) this.broadcast(sseMessage('queue', { queued, slotsFree: slotsFree(this.d.nodes()), atMs: Date.now() }));
    } catch (err) {
      this.d.log(`event stream: queue count: ${(err as Error).message}`);
    } finally {
      this.counting = false;
    }
  }
}
