/**
 * BullMQ, the peer the throughput and latency scenarios compare loom with:
 * one private redis-server, a worker process per entry of `concurrency`
 * (the jobs it runs at once) and one producer process, all children of the bench, stopped by PID.
 *
 *   const rig = await BullRig.start({ persistence: 'none', concurrency: [2, 2, 2] }, log);
 *   try { const r = await rig.throughput(n, batch, deadline) } finally { await rig.stop() }
 *
 * Progress is polled from Redis (ZCARD of the completed and failed sets, as
 * the loom figures poll etcd with count-only ranges); the end time is the
 * latest finishedOn (the completed set's score, the worker's clock), as the
 * loom figure takes the latest finish time from its completed index.
 */
import { ChildProcess, fork } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import Redis from 'ioredis';
import { procCpu } from '../cpu';
import { alive, sleep, stopProcess } from '../proc';
import { Persistence, RedisServer, trackPeer } from './redis';

export const BULLMQ_VERSION: string = require('bullmq/package.json').version;
const QUEUE = 'bench';
const PREFIX = 'bull';

export interface BullOptions {
  persistence: Persistence;
  /** One worker process per entry: the jobs it runs at once (BullMQ's Worker concurrency). */
  concurrency: number[];
}

/** CPU ms per job over a run, by process. */
export interface BullCpu {
  redisMs: number;
  workersMs: number;
  /** The jobs' commands (`true`): the waited-for children of the workers. */
  commandsMs: number;
  producerMs: number;
}

export interface BullRun {
  rate: number;
  submitRate: number;
  cpu: BullCpu;
  failed: number;
  /** Set when the deadline cut the run: rate is jobs done / time so far. */
  partial?: string;
}

interface Child {
  proc: ChildProcess;
  logFile: string;
}

function forkChild(script: string, args: string[], logFile: string): Child {
  const fd = fs.openSync(logFile, 'a');
  // Node's default flags, not loom's (--max-semi-space-size): BullMQ as its users run it.
  const proc = fork(path.join(__dirname, script), args, { stdio: ['ignore', fd, fd, 'ipc'], execArgv: [] });
  fs.closeSync(fd);
  trackPeer(proc);
  return { proc, logFile };
}

/** The next IPC message from a child, or an error if it exits or times out first. */
function nextMessage<T>(c: Child, what: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(t);
      c.proc.off('message', onMessage);
      c.proc.off('exit', onExit);
    };
    const onMessage = (m: T & { error?: string }) => {
      done();
      if (m && typeof m === 'object' && m.error) reject(new Error(`${what}: ${m.error}`));
      else resolve(m);
    };
    const onExit = (code: number | null, sig: string | null) => {
      done();
      reject(new Error(`${what}: process exited (${code ?? sig}): ${tail(c.logFile)}`));
    };
    const t = setTimeout(() => {
      done();
      reject(new Error(`${what}: no answer in ${timeoutMs} ms: ${tail(c.logFile)}`));
    }, timeoutMs);
    if (!alive(c.proc)) return onExit(c.proc.exitCode, c.proc.signalCode);
    c.proc.on('message', onMessage);
    c.proc.once('exit', onExit);
  });
}

function tail(file: string, lines = 3): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-lines).join(' | ') || '(empty log)';
  } catch {
    return '(no log)';
  }
}

export class BullRig {
  private stopped: Promise<void> | undefined;

  private constructor(
    readonly opts: BullOptions,
    readonly redis: RedisServer,
    private readonly workers: Child[],
    private readonly producer: Child,
    private readonly client: Redis,
    private readonly log: (msg: string) => void,
  ) {}

  static async start(opts: BullOptions, log: (msg: string) => void): Promise<BullRig> {
    const redis = await RedisServer.start(opts.persistence, log);
    const workers: Child[] = [];
    let producer: Child | undefined;
    let client: Redis | undefined;
    try {
      const aof = await redisConfig(redis.port, 'appendonly');
      if (aof !== (opts.persistence === 'aof' ? 'yes' : 'no')) throw new Error(`redis ${opts.persistence}: appendonly is ${aof}`);
      opts.concurrency.forEach((k, i) => {
        workers.push(forkChild('bullmq-worker.js', [String(redis.port), QUEUE, String(k)], path.join(redis.dir, `worker${i + 1}.log`)));
      });
      producer = forkChild('bullmq-producer.js', [String(redis.port), QUEUE], path.join(redis.dir, 'producer.log'));
      await Promise.all([...workers, producer].map((c, i) => nextMessage(c, i < workers.length ? `bullmq worker ${i + 1}` : 'bullmq producer', 30_000)));
      client = new Redis({ host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: 1, lazyConnect: true });
      await client.connect();
    } catch (err) {
      client?.disconnect();
      await Promise.all([...workers, ...(producer ? [producer] : [])].map((c) => stopProcess(c.proc, 0)));
      await redis.stop();
      throw err;
    }
    log(`bullmq ${opts.persistence}: worker processes ${workers.map((w) => w.proc.pid).join(',')} (concurrency ${opts.concurrency.join('+')}), producer ${producer.proc.pid}`);
    return new BullRig(opts, redis, workers, producer, client, log);
  }

  /** Jobs completed and failed so far. */
  async counts(): Promise<{ completed: number; failed: number }> {
    const [completed, failed] = await Promise.all([
      this.client.zcard(`${PREFIX}:${QUEUE}:completed`),
      this.client.zcard(`${PREFIX}:${QUEUE}:failed`),
    ]);
    return { completed, failed };
  }

  /** Latest finishedOn among completed jobs (ms since epoch). */
  async lastFinishMs(): Promise<number | undefined> {
    const r = await this.client.zrevrange(`${PREFIX}:${QUEUE}:completed`, 0, 0, 'WITHSCORES');
    return r.length === 2 ? Number(r[1]) : undefined;
  }

  cpuNow(): BullCpu {
    const w = this.workers.map((c) => procCpu(c.proc.pid!));
    return {
      redisMs: procCpu(this.redis.pid).selfMs,
      workersMs: w.reduce((a, c) => a + c.selfMs, 0),
      commandsMs: w.reduce((a, c) => a + c.childrenMs, 0),
      producerMs: procCpu(this.producer.proc.pid!).selfMs,
    };
  }

  /**
   * n jobs running `command`, added by the producer in batches of `batch`
   * over `lanes` connections; jobs/s from the producer's clock before the
   * first add to the latest finishedOn. Waits until `deadline` at most.
   */
  async throughput(n: number, batch: number, lanes: number, deadline: number, command = ['true']): Promise<BullRun> {
    const before = await this.counts();
    const c0 = this.cpuNow();
    const { t0, t1 } = await this.ask<{ t0: number; t1: number }>({ op: 'bulk', n, batch, lanes, command }, 'bullmq producer: bulk add', Math.max(30_000, deadline - Date.now()));
    let done = 0;
    let failed = 0;
    let timedOut = false;
    for (;;) {
      const c = await this.counts();
      done = c.completed - before.completed;
      failed = c.failed - before.failed;
      if (done + failed >= n) break;
      if (Date.now() > deadline) {
        timedOut = true;
        break;
      }
      for (const w of this.workers) if (!alive(w.proc)) throw new Error(`a bullmq worker exited (${w.proc.exitCode ?? w.proc.signalCode}): ${tail(w.logFile)}`);
      await sleep(250);
    }
    const atMs = Date.now();
    const c1 = this.cpuNow();
    const per = Math.max(1, done + failed);
    const cpu = {} as BullCpu;
    for (const k of Object.keys(c0) as (keyof BullCpu)[]) cpu[k] = (c1[k] - c0[k]) / per;
    const submitRate = n / (Math.max(1, t1 - t0) / 1000);
    if (timedOut) {
      return {
        rate: done / ((atMs - t0) / 1000), submitRate, cpu, failed,
        partial: `${done} of ${n} jobs done after ${((atMs - t0) / 1000).toFixed(0)} s; the rate is jobs done / time so far`,
      };
    }
    const last = await this.lastFinishMs();
    if (last === undefined) throw new Error('bullmq: no completed job found');
    return { rate: n / (Math.max(1, last - t0) / 1000), submitRate, cpu, failed };
  }

  /** n jobs one at a time (add, then waitUntilFinished); ms per job, submit → done, on the producer's clock. */
  async latency(n: number, command = ['true']): Promise<number[]> {
    const r = await this.ask<{ samples: number[] }>({ op: 'latency', n, command }, 'bullmq producer: latency', 60_000 + n * 1000);
    return r.samples;
  }

  private async ask<T>(request: object, what: string, timeoutMs: number): Promise<T> {
    const answer = nextMessage<T>(this.producer, what, timeoutMs);
    this.producer.proc.send(request);
    return answer;
  }

  /** Stops the producer and workers (they close their connections; SIGKILL after 5 s), then Redis. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.client.disconnect();
      const all = [this.producer, ...this.workers];
      for (const c of all) if (alive(c.proc) && c.proc.connected) c.proc.send({ op: 'stop' });
      const clean = await Promise.all(all.map((c) => waitExit(c.proc, 5000)));
      if (clean.some((ok) => !ok)) this.log(`bullmq ${this.opts.persistence}: ${clean.filter((ok) => !ok).length} process(es) did not stop in 5 s; SIGKILLed`);
      await this.redis.stop();
    })();
    return this.stopped;
  }
}

/** Waits for a child to exit by itself for ms, then SIGKILLs it; true if it exited by itself. */
async function waitExit(proc: ChildProcess, ms: number): Promise<boolean> {
  for (const t = Date.now(); alive(proc) && Date.now() - t < ms; ) await sleep(25);
  if (!alive(proc)) return true;
  await stopProcess(proc, 0);
  return false;
}

async function redisConfig(port: number, name: string): Promise<string> {
  const r = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: true });
  try {
    await r.connect();
    const v = (await r.config('GET', name)) as string[];
    return v[1];
  } finally {
    r.disconnect();
  }
}
