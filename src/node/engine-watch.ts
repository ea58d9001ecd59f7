/**
 * Whether this node's Docker engine answers, kept current while the node
 * runs. A node started before its engine (a boot order where loom comes up
 * first) takes container tasks once the engine answers; a node whose engine
 * went away stops taking them, so they go to nodes that can run them.
 *
 * The engine is pinged every intervalMs, and marked down at once when a
 * container could not be created for want of an answer (markDown). An engine
 * that answers pings but keeps failing to create containers would otherwise
 * have the same task claimed and handed back every ping interval for as long
 * as it lasts (each hand-back a line in its history): from the second such
 * failure in a row, answering pings bring it back only after a hold that
 * doubles each time (2, 4, 8 ... ping intervals, at most MAX_HOLD_MS), until a
 * container task runs here again (markWorked).
 */
export interface EngineWatchOptions {
  /** Does the engine answer? Must not throw. */
  ping: () => Promise<boolean>;
  intervalMs: number;
  /** Called on every change, with why. */
  onChange: (up: boolean, why: string) => void;
  /** Clock (tests). */
  now?: () => number;
}

/** Longest hold after container creations failed in a row. */
export const MAX_HOLD_MS = 5 * 60_000;

/** How long answering pings are not believed after `strikes` failed creations in a row. */
export function holdAfterStrikes(strikes: number, intervalMs: number): number {
  if (strikes <= 1) return 0;
  return Math.min(MAX_HOLD_MS, intervalMs * 2 ** Math.min(strikes - 1, 30));
}

export class EngineWatch {
  private up = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Bumped by markDown: a ping that was in flight before it is stale. */
  private epoch = 0;
  /** Container creations that failed for want of an answer since one last ran here. */
  private strikes = 0;
  private holdUntilMs = 0;

  constructor(private readonly o: EngineWatchOptions) {}

  get available(): boolean {
    return this.up;
  }

  /** Pings once (awaited), then every intervalMs until stop(). */
  async start(): Promise<void> {
    await this.probe();
    this.schedule();
  }

  /** The engine failed a request: down until a ping answers again (after the hold, if any). */
  markDown(why: string): void {
    this.epoch++;
    this.strikes++;
    const hold = holdAfterStrikes(this.strikes, this.o.intervalMs);
    this.holdUntilMs = this.now() + hold;
    const more = hold > 0 ? `; ${this.strikes} container creations failed in a row: container tasks again no sooner than ${Math.round(hold / 1000)} s from now` : '';
    this.set(false, `${why}${more}`);
  }

  /** A container ran here: the engine works, failed creations are forgotten. */
  markWorked(): void {
    this.strikes = 0;
    this.holdUntilMs = 0;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
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
    if (ok && this.now() < this.holdUntilMs) return; // answers pings, but creations kept failing: not yet
    this.set(ok, ok ? 'the engine answers' : 'the engine does not answer');
  }

  private set(up: boolean, why: string): void {
    if (up === this.up) return;
    this.up = up;
    this.o.onChange(up, why);
  }
}
