/**
 * What the simulated cluster must never do, checked as it runs (the same
 * rules as the chaos checker's, scripts/chaos/checker.ts, on a simulated
 * history): a task runs in at most one place at a time; every task gets
 * exactly one recorded result, and only from an attempt that ran to its end;
 * no run that ended is thrown away (in this model a node's lease lapses only
 * after its process died, so a finished run's result is always wanted).
 */
export class SimLog {
  readonly violations: string[] = [];
  private readonly open = new Map<string, { node: string; attempt: number; startMs: number }>();
  /** Runs that ended (`id/attempt`), and on which node; removed when their result is recorded. */
  private readonly completed = new Map<string, string>();
  private readonly recordedBy = new Map<string, string>();
  starts = 0;
  kills = 0;

  started(id: string, node: string, attempt: number, nowMs: number): void {
    this.starts++;
    const other = this.open.get(id);
    if (other) this.violate(`task ${id} started on ${node} (attempt ${attempt}) at ${ms(nowMs)} while running on ${other.node} (attempt ${other.attempt}, since ${ms(other.startMs)})`);
    this.open.set(id, { node, attempt, startMs: nowMs });
  }

  exited(id: string, node: string, _nowMs: number): void {
    const run = this.close(id, node);
    if (run) this.completed.set(`${id}/${run.attempt}`, node);
  }

  killed(id: string, node: string, _nowMs: number): void {
    this.kills++;
    this.close(id, node);
  }

  recorded(id: string, node: string, attempt: number): void {
    const before = this.recordedBy.get(id);
    if (before) this.violate(`task ${id} has a second result (attempt ${attempt} on ${node}; first ${before})`);
    else this.recordedBy.set(id, `attempt ${attempt} on ${node}`);
    if (!this.completed.delete(`${id}/${attempt}`)) this.violate(`task ${id}: result of attempt ${attempt} on ${node}, which did not run to its end`);
  }

  /** At the end: every task has its one result. */
  finish(ids: Iterable<string>): void {
    let missing = 0;
    for (const id of ids) if (!this.recordedBy.has(id)) missing++;
    if (missing > 0) this.violate(`${missing} task(s) without a result when the run ended`);
    for (const [run, node] of this.completed) {
      const [id, attempt] = run.split('/');
      if (this.recordedBy.has(id)) this.violate(`task ${id}: attempt ${attempt} ran to its end on ${node} and its result was refused (the task ran again)`);
    }
  }

  get results(): number {
    return this.recordedBy.size;
  }

  private close(id: string, node: string): { attempt: number } | undefined {
    const run = this.open.get(id);
    if (!run || run.node !== node) return undefined;
    this.open.delete(id);
    return run;
  }

  /** A node got watch batch `seq` after a later one: its view of the queue went stale. */
  outOfOrder(node: string, seq: number, after: number): void {
    this.violate(`${node} got watch batch ${seq} after ${after}`);
  }

  private violate(what: string): void {
    if (this.violations.length < 100) this.violations.push(what);
  }
}

function ms(n: number): string {
  return `${n.toFixed(1)} ms`;
}
