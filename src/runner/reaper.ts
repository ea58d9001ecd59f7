/**
 * The node's handle on its reaper process (see reaper-main.ts). Every task
 * process group and the embedded etcd are registered here; heartbeats carry
 * the time left on the node's lease, so if the node freezes the reaper kills
 * its tasks before another node can steal them, and if the node dies (even
 * SIGKILL) the reaper sees stdin close and kills everything.
 */
import { randomBytes } from 'crypto';
import { ChildProcess, spawn } from 'child_process';
import * as path from 'path';

/** Longest a task (un)registration waits to share a write with others. */
const REGISTRATION_BATCH_MS = 50;

export interface ReaperOptions {
  log?: (message: string) => void;
}

export class Reaper {
  private readonly child: ChildProcess;
  private readonly log: (message: string) => void;
  private readonly fencedListeners: Array<(count: number) => void> = [];
  private readonly exited: Promise<void>;
  private hasExited = false;
  private warnedLost = false;
  private closing = false;
  private seq = 0;
  /** Registrations not written yet (see queue). */
  private pending: string[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  /** Waiters for the answers to `ping` and `killtask`, by sequence number. */
  private readonly answers = new Map<number, (n: number) => void>();
  /** How many times the reaper's deadline passed and it killed this node's tasks. */
  fenceCount = 0;
  /** Marker put in every task's environment (LOOM_REAPER_TAG) so the reaper can find unregistered ones. */
  readonly tag = `${process.pid}-${randomBytes(6).toString('hex')}`;

  private constructor(opts: ReaperOptions) {
    this.log = opts.log ?? (() => undefined);
    const main = path.join(__dirname, 'reaper-main.js');
    // detached: its own session, so a Ctrl-C to the node's process group does
    // not reach it; it must outlive the node long enough to clean up.
    this.child = spawn(process.execPath, [main, this.tag], {
      detached: true,
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.hasExited = true;
        this.flushAnswers();
        if (!this.closing) this.lost(`reaper exited unexpectedly (code ${code}, signal ${signal})`);
        resolve();
      });
      this.child.once('error', (err) => {
        // Spawn failure: 'exit' may never come.
        this.hasExited = true;
        this.flushAnswers();
        this.lost(`reaper failed: ${err.message}`);
        resolve();
      });
    });
    this.child.stdin?.on('error', (err) => this.lost(`reaper stdin: ${err.message}`));
    this.readEvents();
    // The reaper must not keep the node alive on its own: when the node exits,
    // the reaper sees EOF and cleans up, which is exactly what we want.
    this.child.unref();
    unrefStream(this.child.stdin);
    unrefStream(this.child.stdout);
  }

  static start(opts: ReaperOptions = {}): Reaper {
    return new Reaper(opts);
  }

  /** The reaper's own pid (for diagnostics and tests). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Registers a task's process group. `tagged`: its processes carry
   * LOOM_REAPER_TAG=<tag> (the reaper's scan finds them unregistered), so
   * the registration may wait to share a write (see queue); others (a
   * container's init) are written at once.
   */
  addTask(pgid: number, opts: { tagged?: boolean } = {}): void {
    if (opts.tagged) this.queue(`task ${pgid}`);
    else this.send(`task ${pgid}`);
  }

  removeTask(pgid: number): void {
    this.queue(`done ${pgid}`);
  }

  addMember(pid: number): void {
    this.send(`member ${pid}`);
  }

  /** The helper exited and was given up (its pid may be reused): no longer killed with the node. */
  removeMember(pid: number): void {
    this.send(`unmember ${pid}`);
  }

  /**
   * Tasks are killed unless another heartbeat arrives within remainingMs.
   * A non-positive value means the time is already up: fence at once.
   */
  heartbeat(remainingMs: number): void {
    if (!Number.isFinite(remainingMs)) return this.clearHeartbeat();
    this.send(`hb ${Math.max(1, Math.ceil(remainingMs))}`);
  }

  /** No deadline (e.g. while the node shuts down cleanly). */
  clearHeartbeat(): void {
    this.send('nohb');
  }

  /**
   * Resolves once every event the reaper reported before now has been
   * handled here: a task that just died of SIGKILL was killed by the reaper
   * exactly when an `onFenced` listener has run by the time this resolves.
   * Resolves at once if the reaper is gone, and after timeoutMs at worst.
   */
  sync(timeoutMs = 2000): Promise<void> {
    return this.ask((seq) => `ping ${seq}`, timeoutMs).then(() => undefined);
  }

  /**
   * Kills every process of task `id` (attempt `attempt`) that carries this
   * reaper's tag, found by their environment (for a task whose pid the node
   * never learned). Resolves with the number of process groups killed; 0 if
   * the reaper is gone or does not answer within timeoutMs.
   */
  killTask(id: string, attempt: string, timeoutMs = 5000): Promise<number> {
    return this.ask((seq) => `killtask ${seq} ${id} ${attempt}`.trimEnd(), timeoutMs);
  }

  /**
   * Sends the command made for a fresh sequence number and resolves with
   * the number in the reaper's answer to it (`pong <seq>`: 0, `killed <seq> <n>`: n);
   * with 0 at once if the reaper is gone, or after timeoutMs without one.
   */
  private ask(command: (seq: number) => string, timeoutMs: number): Promise<number> {
    if (this.hasExited || this.closing) return Promise.resolve(0);
    const seq = ++this.seq;
    return new Promise<number>((resolve) => {
      const timer = setTimeout(() => {
        this.answers.delete(seq);
        resolve(0);
      }, timeoutMs);
      timer.unref();
      this.answers.set(seq, (n) => {
        clearTimeout(timer);
        resolve(n);
      });
      this.send(command(seq));
    });
  }

  /** Called with the number of task groups killed when a deadline passed. */
  onFenced(fn: (count: number) => void): void {
    this.fencedListeners.push(fn);
  }

  /**
   * Ends stdin (the reaper kills everything registered and tagged) and waits
   * for it to exit. Call it with no task start in flight (the node has
   * stopped its runners): the reaper then skips the later scans it makes
   * after a crash for a task that had not exec'd yet, and exits at once.
   */
  async close(): Promise<void> {
    if (!this.hasExited && !this.closing) this.send('bye');
    this.closing = true;
    if (!this.hasExited) {
      this.child.ref(); // keep the loop alive until the exit arrives
      this.child.stdin?.end();
    }
    await this.exited;
  }

  /**
   * Task registrations wait up to REGISTRATION_BATCH_MS and go with the next
   * write: a pipe write that wakes the reaper costs about a millisecond of
   * CPU on a virtual machine, and a busy node starts and ends many tasks a
   * second. Nothing is at risk meanwhile: a task not yet registered when the
   * node dies or its deadline passes is found by the reaper's scan for the
   * tag every task carries, and killed with the registered ones.
   */
  private queue(line: string): void {
    this.pending.push(line);
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      if (this.pending.length > 0) this.send(undefined);
    }, REGISTRATION_BATCH_MS);
    this.flushTimer.unref();
  }

  /**
   * Writes (pending registrations first, then `line`) go straight to the
   * pipe in one write: with an empty write queue Node hands the bytes to the
   * kernel within write() itself. A dead reaper never makes this throw.
   */
  private send(line: string | undefined): void {
    if (this.pending.length > 0) {
      line = line === undefined ? this.pending.join('\n') : `${this.pending.join('\n')}\n${line}`;
      this.pending = [];
    }
    if (line === undefined) return;
    const stdin = this.child.stdin;
    if (this.closing) return; // tasks still exiting during shutdown: the reaper is killing them anyway
    if (this.hasExited || !stdin || stdin.destroyed || !stdin.writable) {
      this.lost(`reaper unavailable; dropped command: ${line}`);
      return;
    }
    try {
      stdin.write(line + '\n');
    } catch (err) {
      this.lost(`reaper write failed: ${(err as Error).message}`);
    }
  }

  private readEvents(): void {
    const stdout = this.child.stdout;
    if (!stdout) return;
    stdout.setEncoding('latin1');
    let partial = '';
    stdout.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const answer = /^(?:pong (\d+)|killed (\d+) (\d+))$/.exec(line.trim());
        if (answer) {
          const seq = Number(answer[1] ?? answer[2]);
          const waiter = this.answers.get(seq);
          this.answers.delete(seq);
          waiter?.(Number(answer[3] ?? 0));
          continue;
        }
        const match = /^fenced (\d+)$/.exec(line.trim());
        if (!match) continue;
        const count = Number(match[1]);
        this.fenceCount++;
        this.log(`reaper fenced: killed ${count} task group(s)`);
        for (const fn of this.fencedListeners) {
          try {
            fn(count);
          } catch (err) {
            this.log(`onFenced listener threw: ${(err as Error).message}`);
          }
        }
      }
    });
    stdout.on('error', () => undefined);
  }

  private flushAnswers(): void {
    const waiters = [...this.answers.values()];
    this.answers.clear();
    for (const w of waiters) w(0);
  }

  /** Logs the first sign that the reaper is gone; later ones would only repeat it. */
  private lost(message: string): void {
    if (this.warnedLost) return;
    this.warnedLost = true;
    this.log(message);
  }
}

function unrefStream(stream: unknown): void {
  const s = stream as { unref?: () => void } | null;
  s?.unref?.();
}
