/**
 * Whether this node's Docker engine answers, kept current while the node
 * runs. A node started before its engine (a boot order where loom comes up
 * first) takes container tasks once the engine answers; a node whose engine
 * went away stops taking them, so they go to nodes that can run them.
 *
 * The engine is pinged every intervalMs, and marked down at once when a
 * container could not be created for want of an answer (markDown).
 */
export interface EngineWatchOptions {
  /** Does the engine answer? Must not throw. */
  ping: () => Promise<boolean>;
  intervalMs: number;
  /** Called on every change, with why. */
  onChange: (up: boolean, why: string) => void;
}

export class EngineWatch {
  private up = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Bumped by markDown: a ping that was in flight before it is stale. */
  private epoch = 0;

  constructor(private readonly o: EngineWatchOptions) {}

  get available(): boolean {
    return this.up;
  }

  /** Pings once (awaited), then every intervalMs until stop(). */
  async start(): Promise<void> {
    await this.probe();
    this.schedule();
  }

  /** The engine failed a request: down until a ping answers again. */
  markDown(why: string): void {
    this.epoch++;
    this.set(false, why);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.probe().finally(() => this.schedule()), this.o.intervalMs);
    this.timer.unref();
  }

  private async probe(): Promise<void> {
    const epoch = this.epoch;
    const ok = await this.o.ping();
    if (this.stopped || epoch !== this.epoch) return;
    this.set(ok, ok ? 'the engine answers' : 'the engine does not answer');
  }

  private set(up: boolean, why: string): void {
    if (up === this.up) return;
    this.up = up;
    this.o.onChange(up, why);
  }
}
