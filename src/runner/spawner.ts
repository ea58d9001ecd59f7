/**
 * The node's side of loom-spawner (spawner/loom-spawner.c): a small native
 * helper that starts task processes with posix_spawn instead of Node's
 * fork(). On virtual machines fork() of a large process is slow (here
 * 5-13 ms of blocked event loop per task, against about 0.5 ms); the helper
 * makes starting a task cheap for the node and for the task.
 *
 * The task's stdout and stderr are unix socket connections the helper makes
 * to a server of ours before it spawns; each starts with a header naming the
 * request. Exit statuses come back on the helper's stdout. Anything the
 * helper cannot start (a missing command, a script without #!, a broken
 * connection) is reported as `failed` and the caller starts the task itself,
 * so behaviour and error messages stay those of Node's spawn.
 *
 * If the helper dies, tasks it started are reported `lost` (their exit status
 * is gone) and the spawner stops taking requests.
 */
import { ChildProcess, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import { constants } from 'os';
import * as path from 'path';
import { Readable } from 'stream';

export interface SpawnRequest {
  argv: string[];
  env: Record<string, string>;
  /** '' = the helper's working directory. */
  cwd: string;
  /**
   * Wall-clock ms past which the helper must not start it (the node's fence
   * deadline). The node checks it too before asking, but it can be frozen
   * between asking and the start; the helper checks at the start itself.
   */
  notAfterMs?: number;
}

export interface SpawnCallbacks {
  /** The task runs with this pid (its own session and process group). */
  started(pid: number): void;
  /** Not started; the caller should start it another way. */
  failed(why: string): void;
  /** Not started because notAfterMs had passed; it must not be started at all. */
  late(): void;
  /** Stream 1 (stdout) or 2 (stderr), after `started`. Reading it is the caller's job. */
  stream(id: 1 | 2, socket: Readable): void;
  /** The task exited; loom-spawner has already SIGKILLed what it left in its process group. */
  exited(code: number | null, signal: NodeJS.Signals | null): void;
  /** The helper died: the exit status of this started task will never come. */
  lost(why: string): void;
}

const TOKEN_LEN = 32;
const HEADER_LEN = TOKEN_LEN + 10;
/**
 * A connection to the socket must send its header within this long. The
 * helper writes it right after connecting, so only a stranger (anything
 * running as the node's user can reach the socket) is ever this slow; a node
 * whose event loop stalled this long has been fenced already.
 */
export const HEADER_TIMEOUT_MS = 10_000;
/**
 * Connections without a header kept at once, beyond two per request in
 * flight: past it the oldest is closed. Each holds a descriptor and a socket
 * object, and the node's descriptors are its log files and etcd connections.
 */
export const MAX_UNIDENTIFIED = 64;
/** At most one log line per this long about connections closed for want of a header. */
const DROP_LOG_MS = 60_000;
/** Longest unix socket path (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;

interface Pending {
  cb: SpawnCallbacks;
  pid?: number;
  /** Connections that arrived before the pid. */
  early: Array<{ id: 1 | 2; socket: net.Socket }>;
  streams: number;
  exited: boolean;
}

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(constants.signals).map(([name, num]) => [num, name as NodeJS.Signals]),
);

export function spawnerBinary(): string {
  return path.join(__dirname, 'loom-spawner');
}

export class Spawner {
  private readonly bySeq = new Map<number, Pending>();
  private readonly byPid = new Map<number, number>();
  private seq = 0;
  private dead = false;
  private stdoutBuf = '';
  /** Connections still to send their header, oldest first (Set keeps insertion order). */
  private readonly unidentified = new Set<net.Socket>();
  /** Connections closed without a header since the last log line about them. */
  private dropped = 0;
  private droppedLoggedAt = 0;
  /** Connections closed without a header, ever (tests). */
  droppedTotal = 0;

  private constructor(
    private readonly child: ChildProcess,
    private readonly server: net.Server,
    private readonly socketPath: string,
    private readonly token: string,
    private readonly log: (message: string) => void,
    private readonly headerTimeoutMs: number,
  ) {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => this.onReplies(chunk));
    child.stdin!.on('error', () => undefined); // 'exit' reports the death
    child.once('exit', (code, signal) => this.onDeath(`loom-spawner exited (code ${code}, signal ${signal})`));
    child.once('error', (err) => this.onDeath(`loom-spawner failed: ${err.message}`));
    server.on('connection', (socket) => this.onConnection(socket));
    // Neither keeps the node alive: its shutdown closes them.
    child.unref();
    server.unref();
    for (const pipe of [child.stdin, child.stdout]) (pipe as unknown as { unref?: () => void } | null)?.unref?.();
  }

  /**
   * Starts the helper, its socket at `socketPath`. Resolves undefined (with
   * the reason logged) when the helper cannot be used: no binary, a path too
   * long for a unix socket, a failed listen.
   */
  static async start(opts: {
    socketPath: string;
    binary?: string;
    log: (message: string) => void;
    /** The helper's own environment (default: this process's); tasks get only what each request carries. */
    env?: NodeJS.ProcessEnv;
    /** Niceness 0-19 the helper gives every task it starts (see task-priority.ts); default 0. */
    taskNice?: number;
    /** Default HEADER_TIMEOUT_MS (tests shorten it). */
    headerTimeoutMs?: number;
  }): Promise<Spawner | undefined> {
    const binary = opts.binary ?? spawnerBinary();
    const why = (reason: string) => {
      opts.log(`spawner: not used (${reason}); tasks are started with Node's spawn`);
      return undefined;
    };
    try {
      fs.accessSync(binary, fs.constants.X_OK);
    } catch {
      return why(`no executable ${binary}; \`npm run build\` compiles it when a C compiler is installed`);
    }
    if (Buffer.byteLength(opts.socketPath) > MAX_SOCKET_PATH) return why(`socket path longer than ${MAX_SOCKET_PATH} bytes: ${opts.socketPath}`);
    fs.rmSync(opts.socketPath, { force: true });
    const server = net.createServer();
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.socketPath, () => resolve());
      });
      fs.chmodSync(opts.socketPath, 0o600);
    } catch (err) {
      server.close();
      return why(`cannot listen on ${opts.socketPath}: ${(err as Error).message}`);
    }
    const token = randomBytes(TOKEN_LEN / 2).toString('hex');
    // Its own session: a Ctrl-C to the node's process group does not reach it.
    const child = spawn(binary, [opts.socketPath, String(opts.taskNice ?? 0)], { stdio: ['pipe', 'pipe', 'inherit'], detached: true, env: opts.env ?? process.env });
    child.stdin!.write(`${token}\n`);
    return new Spawner(child, server, opts.socketPath, token, opts.log, opts.headerTimeoutMs ?? HEADER_TIMEOUT_MS);
  }

  /** Whether requests are taken (false once the helper died or close() ran). */
  get usable(): boolean {
    return !this.dead;
  }

  get helperPid(): number | undefined {
    return this.child.pid;
  }

  spawn(req: SpawnRequest, cb: SpawnCallbacks): void {
    if (this.dead) return cb.failed('loom-spawner is not running');
    const seq = (this.seq = (this.seq + 1) % 0xffffffff);
    const envEntries = Object.entries(req.env);
    const notAfter = req.notAfterMs !== undefined && Number.isFinite(req.notAfterMs) ? Math.max(0, Math.floor(req.notAfterMs)) : 0;
    const fields = [String(seq), String(notAfter), req.cwd, String(req.argv.length), ...req.argv, String(envEntries.length), ...envEntries.map(([k, v]) => `${k}=${v}`)];
    if (fields.some((f) => f.includes('\0'))) return cb.failed('a NUL byte in argv, env or cwd');
    const payload = Buffer.from(fields.join('\0') + '\0');
    if (this.bySeq.size === 0) this.holdLoop(true);
    this.bySeq.set(seq, { cb, early: [], streams: 0, exited: false });
    // One write: each one that wakes the helper costs real CPU on a VM.
    this.child.stdin!.write(Buffer.concat([Buffer.from(`${payload.length}\n`), payload]));
  }

  /** Stops the helper (running tasks are not touched) and the socket server. */
  async close(): Promise<void> {
    this.dead = true;
    this.child.stdin!.end();
    // server.close waits for every connection: a stranger's must not hold it up.
    for (const socket of this.unidentified) socket.destroy();
    this.unidentified.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    fs.rmSync(this.socketPath, { force: true });
  }

  private onReplies(chunk: string): void {
    this.stdoutBuf += chunk;
    let nl: number;
    while ((nl = this.stdoutBuf.indexOf('\n')) >= 0) {
      const line = this.stdoutBuf.slice(0, nl);
      this.stdoutBuf = this.stdoutBuf.slice(nl + 1);
      const [kind, a, b] = line.split(' ');
      const x = Number(a);
      const y = Number(b);
      if (kind === 'pid') this.onStarted(x, y);
      else if (kind === 'err') this.onFailed(x, y);
      else if (kind === 'late') this.onLate(x);
      else if (kind === 'exit') this.onExited(x, y, null);
      else if (kind === 'sig') this.onExited(x, null, signalNames.get(y) ?? null);
      else this.log(`spawner: unexpected reply ${JSON.stringify(line)}`);
    }
  }

  private onStarted(seq: number, pid: number): void {
    const p = this.bySeq.get(seq);
    if (!p) return;
    p.pid = pid;
    this.byPid.set(pid, seq);
    p.cb.started(pid);
    for (const { id, socket } of p.early.splice(0)) this.deliver(seq, p, id, socket);
  }

  private onFailed(seq: number, errno: number): void {
    const name = Object.entries(constants.errno).find(([, n]) => n === errno)?.[0] ?? `errno ${errno}`;
    this.dropUnstarted(seq)?.cb.failed(name);
  }

  private onLate(seq: number): void {
    this.dropUnstarted(seq)?.cb.late();
  }

  /** A request that will not start: forgotten, with any connection it already made. */
  private dropUnstarted(seq: number): Pending | undefined {
    const p = this.bySeq.get(seq);
    if (!p) return undefined;
    this.forget(seq);
    for (const { socket } of p.early) socket.destroy();
    return p;
  }

  private onExited(pid: number, code: number | null, signal: NodeJS.Signals | null): void {
    const seq = this.byPid.get(pid);
    if (seq === undefined) return;
    this.byPid.delete(pid);
    const p = this.bySeq.get(seq)!;
    p.exited = true;
    this.forgetIfDone(seq, p);
    p.cb.exited(code, signal);
  }

  /** Connections that have not sent their header yet, now. */
  get unidentifiedCount(): number {
    return this.unidentified.size;
  }

  private onConnection(socket: net.Socket): void {
    socket.on('error', () => undefined); // a task's end of its output closing early is not our error
    // Bounded: the oldest stranger makes room (the helper's own connections
    // send their header at once, so they are never the oldest for long).
    if (this.unidentified.size >= MAX_UNIDENTIFIED + 2 * this.bySeq.size) {
      const oldest = this.unidentified.values().next().value as net.Socket;
      this.dropUnidentified(oldest, 'too many connections without a header');
    }
    this.unidentified.add(socket);
    // A whole-header deadline, not an idle timeout: a byte every few seconds must not keep it open.
    const timer = setTimeout(() => this.dropUnidentified(socket, `no header within ${this.headerTimeoutMs} ms`), this.headerTimeoutMs);
    timer.unref();
    const identified = () => {
      clearTimeout(timer);
      this.unidentified.delete(socket);
      socket.removeListener('readable', readHeader);
    };
    socket.once('close', identified);
    const readHeader = () => {
      const header = socket.read(HEADER_LEN) as Buffer | null;
      if (header === null) return;
      identified();
      socket.removeListener('close', identified);
      const text = header.toString('latin1');
      const seq = parseInt(text.slice(TOKEN_LEN, TOKEN_LEN + 8), 16);
      const id = text[TOKEN_LEN + 8] === '1' ? 1 : text[TOKEN_LEN + 8] === '2' ? 2 : 0;
      const p = this.bySeq.get(seq);
      if (text.slice(0, TOKEN_LEN) !== this.token || id === 0 || !p || text[HEADER_LEN - 1] !== '\n') {
        socket.destroy();
        return;
      }
      if (p.pid === undefined) p.early.push({ id, socket });
      else this.deliver(seq, p, id, socket);
    };
    socket.on('readable', readHeader);
  }

  /** Closes a connection that never sent its header; says so now and then. */
  private dropUnidentified(socket: net.Socket, why: string): void {
    if (!this.unidentified.delete(socket)) return;
    socket.destroy();
    this.dropped++;
    this.droppedTotal++;
    const now = Date.now();
    if (now - this.droppedLoggedAt >= DROP_LOG_MS) {
      this.log(`spawner: closed ${this.dropped} connection(s) to ${this.socketPath} (${why}); only loom-spawner should connect there`);
      this.dropped = 0;
      this.droppedLoggedAt = now;
    }
  }

  private deliver(seq: number, p: Pending, id: 1 | 2, socket: net.Socket): void {
    p.streams++;
    this.forgetIfDone(seq, p);
    p.cb.stream(id, socket);
  }

  private forgetIfDone(seq: number, p: Pending): void {
    if (p.exited && p.streams === 2) this.forget(seq);
  }

  private forget(seq: number): void {
    this.bySeq.delete(seq);
    if (this.bySeq.size === 0) this.holdLoop(false);
  }

  /**
   * The helper's pipes do not keep the process alive on their own, except
   * while a request waits for its reply: a process whose only pending work
   * is a spawn must not exit under it.
   */
  private holdLoop(hold: boolean): void {
    const out = this.child.stdout as unknown as { ref?: () => void; unref?: () => void } | null;
    if (hold) out?.ref?.();
    else out?.unref?.();
  }

  private onDeath(why: string): void {
    const wasClosing = this.dead;
    this.dead = true;
    this.server.close();
    for (const socket of this.unidentified) socket.destroy();
    this.unidentified.clear();
    const pending = [...this.bySeq.values()];
    this.bySeq.clear();
    this.byPid.clear();
    this.holdLoop(false);
    if (!wasClosing) this.log(`spawner: ${why}; tasks are started with Node's spawn from now on`);
    for (const p of pending) {
      for (const { socket } of p.early) socket.destroy();
      if (p.pid === undefined) p.cb.lost(`${why} before the task was started`);
      else if (!p.exited) p.cb.lost(why);
    }
  }
}
