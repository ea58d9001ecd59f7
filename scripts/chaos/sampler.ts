/**
 * An independent witness: samples /proc every few hundred ms for the run's
 * task processes (marked by `loomchaos-<tag>` in their command line) and
 * reads LOOM_TASK_ID / LOOM_ATTEMPT / LOOM_NODE from their environment.
 *
 * It gives the checker two things the log alone cannot:
 *  - lastSeenMs per execution: a lower bound of when it really ended, even
 *    when it was killed and wrote no end line;
 *  - concurrent sightings: two executions (attempt@node) of one task
 *    that were provably alive at the same instant. When a scan finds a task
 *    with live processes of two attempts, it re-reads them all; a process
 *    seen alive (same pid and start time) in both passes was alive during
 *    the whole gap between the passes, so all of them were alive at once.
 *
 * A zombie (exited, not yet reaped, e.g. while its node is SIGSTOPped) is not
 * alive; a fork of the shell that has exec'd `date` or `sleep` no longer
 * carries the mark and is not counted.
 */
import * as fs from 'fs';

export interface Observation {
  id: string;
  attempt: number;
  node: string;
  pids: number[];
  firstSeenMs: number;
  lastSeenMs: number;
}

export interface ConcurrentSighting {
  id: string;
  atMs: number;
  executions: { attempt: number; node: string; pid: number }[];
}

export interface LiveTaskProcess {
  pid: number;
  id: string;
  attempt: number;
  node: string;
}

interface Tracked {
  pid: number;
  startTime: string;
  id: string;
  attempt: number;
  node: string;
}

interface Entry {
  /** 'ignore': not ours; 'recheck': may still exec into ours; 'tracked' / 'ended'. */
  kind: 'ignore' | 'recheck' | 'tracked' | 'ended';
  tracked?: Tracked;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'latin1');
  } catch {
    return undefined;
  }
}

function statOf(pid: number): { state: string; startTime: string } | undefined {
  const s = readText(`/proc/${pid}/stat`);
  if (!s) return undefined;
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return { state: rest[0], startTime: rest[19] };
}

export class ProcessSampler {
  private readonly entries = new Map<number, Entry>();
  private readonly obs = new Map<string, Observation>();
  readonly concurrent: ConcurrentSighting[] = [];
  private timer: NodeJS.Timeout | undefined;
  scans = 0;
  maxGapMs = 0;
  private lastScanMs = 0;

  constructor(
    private readonly tag: string,
    private readonly intervalMs = 150,
  ) {}

  start(): void {
    this.scan();
    this.timer = setInterval(() => this.scan(), this.intervalMs);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.lastScanMs = 0;
  }

  /**
   * Scans back to back for `ms` (blocking; a few ms apart). Used right after
   * a paused node resumes: a task it starts then, under a lease that is gone,
   * may live only milliseconds before the node kills it.
   */
  burst(ms: number, gapMs = 2): number {
    const until = Date.now() + ms;
    const sab = new Int32Array(new SharedArrayBuffer(4));
    let n = 0;
    while (Date.now() < until) {
      this.scan();
      n++;
      Atomics.wait(sab, 0, 0, gapMs);
    }
    return n;
  }

  observations(): Observation[] {
    return [...this.obs.values()];
  }

  /** Is this tracked process still alive and still ours? */
  private alive(t: Tracked): boolean {
    const st = statOf(t.pid);
    if (!st || st.state === 'Z' || st.state === 'X' || st.startTime !== t.startTime) return false;
    const cmd = readText(`/proc/${t.pid}/cmdline`);
    return cmd !== undefined && cmd.includes(this.tag);
  }

  private identify(pid: number): Entry {
    const cmd = readText(`/proc/${pid}/cmdline`);
    if (cmd === undefined || cmd === '') return { kind: 'ignore' };
    if (!cmd.includes(this.tag)) {
      // A node forks before exec'ing a task: its child briefly has the node's command line.
      return { kind: cmd.includes('loom.js') ? 'recheck' : 'ignore' };
    }
    const st = statOf(pid);
    const env = readText(`/proc/${pid}/environ`);
    if (!st || st.state === 'Z' || env === undefined) return { kind: 'ignore' };
    const vars = new Map<string, string>();
    for (const kv of env.split('\0')) {
      const eq = kv.indexOf('=');
      if (eq > 0) vars.set(kv.slice(0, eq), kv.slice(eq + 1));
    }
    const id = vars.get('LOOM_TASK_ID');
    const attempt = Number(vars.get('LOOM_ATTEMPT'));
    const node = vars.get('LOOM_NODE') ?? '?';
    if (!id || !Number.isInteger(attempt)) return { kind: 'ignore' };
    return { kind: 'tracked', tracked: { pid, startTime: st.startTime, id, attempt, node } };
  }

  private note(t: Tracked, atMs: number): void {
    const key = `${t.id}/${t.attempt}/${t.node}`;
    const o = this.obs.get(key);
    if (!o) {
      this.obs.set(key, { id: t.id, attempt: t.attempt, node: t.node, pids: [t.pid], firstSeenMs: atMs, lastSeenMs: atMs });
      return;
    }
    if (!o.pids.includes(t.pid)) o.pids.push(t.pid);
    o.lastSeenMs = Math.max(o.lastSeenMs, atMs);
    o.firstSeenMs = Math.min(o.firstSeenMs, atMs);
  }

  /** One pass over /proc. Returns the task processes alive now. */
  scan(): LiveTaskProcess[] {
    const now = Date.now();
    if (this.timer) {
      if (this.lastScanMs) this.maxGapMs = Math.max(this.maxGapMs, now - this.lastScanMs);
      this.lastScanMs = now;
    }
    this.scans++;
    let names: string[];
    try {
      names = fs.readdirSync('/proc');
    } catch {
      return [];
    }
    const present = new Set<number>();
    const live: Tracked[] = [];
    for (const name of names) {
      if (!/^\d+$/.test(name)) continue;
      const pid = Number(name);
      present.add(pid);
      let e = this.entries.get(pid);
      if (!e || e.kind === 'recheck') {
        e = this.identify(pid);
        this.entries.set(pid, e);
      }
      if (e.kind !== 'tracked' || !e.tracked) continue;
      const before = Date.now();
      if (this.alive(e.tracked)) {
        this.note(e.tracked, before);
        live.push(e.tracked);
      } else {
        e.kind = 'ended';
      }
    }
    // A pid that vanished may be reused later: forget it.
    for (const pid of this.entries.keys()) if (!present.has(pid)) this.entries.delete(pid);
    this.checkConcurrent(live);
    return live.map((t) => ({ pid: t.pid, id: t.id, attempt: t.attempt, node: t.node }));
  }

  private checkConcurrent(live: Tracked[]): void {
    const byTask = new Map<string, Tracked[]>();
    for (const t of live) {
      const list = byTask.get(t.id) ?? [];
      list.push(t);
      byTask.set(t.id, list);
    }
    for (const [id, list] of byTask) {
      // One execution = one (attempt, node); its shell's forks share both.
      const execOf = (t: Tracked) => `${t.attempt}@${t.node}`;
      if (new Set(list.map(execOf)).size < 2) continue;
      // Second pass: everything seen alive in both passes was alive in between.
      const boundary = Date.now();
      const still = list.filter((t) => this.alive(t));
      if (new Set(still.map(execOf)).size < 2) continue;
      this.concurrent.push({
        id,
        atMs: boundary,
        executions: still.map((t) => ({ attempt: t.attempt, node: t.node, pid: t.pid })),
      });
    }
  }
}
