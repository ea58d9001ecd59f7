/**
 * How a runner stops what it started: SIGTERM now, SIGKILL once the grace
 * period is over. Stops can arrive several times (a cancel, then a timeout,
 * then a node shutting down) with different graces; the rule is that a later
 * stop may bring the SIGKILL forward but never push it back, and SIGTERM is
 * sent once. `send` delivers a signal to whatever the runner runs (a process
 * group, a container) and must not throw.
 */
export type StopSignal = 'SIGTERM' | 'SIGKILL';

export class KillEscalation {
  private termSent = false;
  private killAt: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private done = false;

  constructor(
    private readonly send: (signal: StopSignal) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Stop with graceMs before SIGKILL (0 or less: SIGKILL now). */
  stop(graceMs: number): void {
    if (this.done) return;
    if (graceMs <= 0) {
      this.settle();
      this.send('SIGKILL');
      return;
    }
    if (!this.termSent) {
      this.termSent = true;
      this.send('SIGTERM');
    }
    const killAt = this.now() + graceMs;
    if (this.killAt !== undefined && this.killAt <= killAt) return;
    this.killAt = killAt;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.send('SIGKILL');
    }, graceMs);
  }

  /** What was stopped has exited: no SIGKILL follows, and later stops send nothing. */
  settle(): void {
    this.done = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
