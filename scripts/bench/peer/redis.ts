/**
 * A private redis-server for the BullMQ peer figures: a free loopback port,
 * its own temp dir (working dir, AOF, log), started and stopped by PID.
 *
 *   const r = await RedisServer.start('none', log);
 *   try { ... r.port ... } finally { await r.stop() }
 *
 * Every server and peer process not stopped yet is SIGKILLed by
 * killAllPeersNow() (main calls it on SIGINT/SIGTERM, errors and exit).
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { alive, freePorts, sleep, stopProcess } from '../proc';

export const REDIS_BIN = process.env.LOOM_REDIS_BIN ?? 'redis-server';

/**
 * 'none': no persistence (--save '' --appendonly no), how BullMQ is usually benchmarked.
 * 'aof': --appendonly yes --appendfsync everysec, closer to loom's durability
 * (etcd commits every write to disk before answering; everysec may lose the last second).
 */
export type Persistence = 'none' | 'aof';

export const PERSISTENCE_ARGS: Record<Persistence, string[]> = {
  none: ['--save', '', '--appendonly', 'no'],
  aof: ['--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec'],
};

export const PERSISTENCE_TEXT: Record<Persistence, string> = {
  none: "no persistence (--save '' --appendonly no)",
  aof: 'AOF, fsync every second (--appendonly yes --appendfsync everysec)',
};

/** Child processes of the peer figures (Redis servers, BullMQ workers and producers) still running. */
const livePeers = new Set<ChildProcess>();
const liveDirs = new Set<string>();

export function trackPeer(proc: ChildProcess): void {
  livePeers.add(proc);
  proc.once('exit', () => livePeers.delete(proc));
}

/** Synchronous last resort: SIGKILLs every peer process this run started, by PID. */
export function killAllPeersNow(): void {
  for (const p of livePeers) if (alive(p)) p.kill('SIGKILL');
  livePeers.clear();
  for (const d of liveDirs) {
    try {
      fs.rmSync(d, { recursive: true, force: true });
    } catch {
      // best effort on the way out
    }
  }
  liveDirs.clear();
}

/** redis-server --version, or why it is not available. */
export function redisVersion(): { version?: string; error?: string } {
  try {
    const out = require('child_process').execFileSync(REDIS_BIN, ['--version'], { encoding: 'utf8', timeout: 10_000 }) as string;
    return { version: /v=(\S+)/.exec(out)?.[1] ?? out.trim() };
  } catch (err) {
    return { error: `${REDIS_BIN} not available (${(err as Error).message.split('\n')[0]}); npm run bench installs it with scripts/bench/setup-peer.sh` };
  }
}

/** One request in RESP inline form, the first reply line back. */
function ask(port: number, command: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const t = setTimeout(() => s.destroy(new Error('timed out')), timeoutMs);
    s.on('connect', () => s.write(`${command}\r\n`));
    s.on('data', (d) => {
      buf += d.toString('utf8');
      const i = buf.indexOf('\r\n');
      if (i >= 0) {
        clearTimeout(t);
        s.end();
        resolve(buf.slice(0, i));
      }
    });
    s.on('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

export class RedisServer {
  private stopped: Promise<void> | undefined;

  private constructor(
    readonly persistence: Persistence,
    readonly port: number,
    readonly dir: string,
    readonly proc: ChildProcess,
    private readonly log: (msg: string) => void,
  ) {}

  get pid(): number {
    return this.proc.pid!;
  }

  static async start(persistence: Persistence, log: (msg: string) => void, readyTimeoutMs = 20_000): Promise<RedisServer> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `loom-bench-redis-${persistence}-`));
    liveDirs.add(dir);
    const [port] = await freePorts(1);
    const logFile = path.join(dir, 'redis.log');
    const fd = fs.openSync(logFile, 'a');
    const proc = spawn(REDIS_BIN, [
      '--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'yes', '--dir', dir,
      '--daemonize', 'no', '--logfile', '', '--databases', '1', '--maxmemory-policy', 'noeviction',
      ...PERSISTENCE_ARGS[persistence],
    ], { stdio: ['ignore', fd, fd], cwd: dir });
    fs.closeSync(fd);
    const spawnError = new Promise<Error>((resolve) => proc.once('error', resolve));
    trackPeer(proc);
    const r = new RedisServer(persistence, port, dir, proc, log);
    const deadline = Date.now() + readyTimeoutMs;
    try {
      for (;;) {
        const err = await Promise.race([spawnError, sleep(0).then(() => undefined)]);
        if (err) throw new Error(`${REDIS_BIN}: ${err.message}`);
        if (!alive(proc)) throw new Error(`redis-server exited (${proc.exitCode ?? proc.signalCode}) before answering: ${tail(logFile)}`);
        try {
          if ((await ask(port, 'PING')) === '+PONG') break;
        } catch {
          // not up yet
        }
        if (Date.now() > deadline) throw new Error(`redis-server not answering on port ${port} after ${readyTimeoutMs} ms: ${tail(logFile)}`);
        await sleep(50);
      }
    } catch (err) {
      await r.stop();
      throw err;
    }
    log(`redis ${persistence}: pid ${proc.pid}, 127.0.0.1:${port}, dir ${dir}`);
    return r;
  }

  /** SIGTERM (Redis writes nothing more with --save ''), SIGKILL after 5 s; removes the temp dir. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      const clean = await stopProcess(this.proc, 5000);
      if (!clean) this.log(`redis ${this.persistence}: pid ${this.pid} did not stop in 5 s; SIGKILLed`);
      if (process.env.LOOM_BENCH_KEEP) this.log(`kept ${this.dir}`);
      else fs.rmSync(this.dir, { recursive: true, force: true });
      liveDirs.delete(this.dir);
    })();
    return this.stopped;
  }
}

function tail(file: string, lines = 3): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ');
  } catch {
    return '(no log)';
  }
}
