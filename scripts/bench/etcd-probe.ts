/**
 * What the bench reads from etcd directly: Prometheus metrics (db size,
 * leader, Txn counts), and counts of the task status index keys (progress of
 * a run without loading the nodes with thousands of Wait calls).
 */
import { execFileSync } from 'child_process';
import * as http from 'http';
import { Etcd3, Range } from 'etcd3';
import { TaskState } from '../../src/gen/loom';
import { Keys } from '../../src/store/keys';
import { sleep } from './proc';

export function httpGet(url: string, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(body));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

/** Sum of every sample of a metric whose labels contain all of `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const lbl = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => lbl.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

export async function metrics(clientUrl: string): Promise<string> {
  return httpGet(`${clientUrl}/metrics`);
}

export interface DbSize {
  totalBytes: number;
  inUseBytes: number;
}

export async function dbSize(clientUrl: string): Promise<DbSize> {
  const text = await metrics(clientUrl);
  return {
    totalBytes: metricSum(text, 'etcd_mvcc_db_total_size_in_bytes'),
    inUseBytes: metricSum(text, 'etcd_mvcc_db_total_size_in_use_in_bytes'),
  };
}

export async function isLeader(clientUrl: string): Promise<boolean> {
  return metricSum(await metrics(clientUrl), 'etcd_server_is_leader') === 1;
}

/** Txn RPCs this member has served (all codes). */
export async function txnRpcs(clientUrl: string): Promise<number> {
  return metricSum(await metrics(clientUrl), 'grpc_server_handled_total', { grpc_method: 'Txn' });
}

export function etcdVersion(bin = process.env.LOOM_ETCD_BIN ?? 'etcd'): string {
  try {
    const out = execFileSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 });
    return /etcd Version:\s*(\S+)/.exec(out)?.[1] ?? out.split('\n')[0];
  } catch (err) {
    return `unknown (${(err as Error).message.split('\n')[0]})`;
  }
}

export interface StateCounts {
  queued: number;
  running: number;
  completed: number;
  failed: number;
  cancelled: number;
  lost: number;
}

export function terminalTotal(c: StateCounts): number {
  return c.completed + c.failed + c.cancelled + c.lost;
}

/** Counts of the status index keys, read with count-only ranges. */
export class TaskCounter {
  private readonly keys = new Keys('');

  constructor(private readonly client: Etcd3) {}

  private count(prefix: string): Promise<number> {
    return this.client.getAll().prefix(prefix).count();
  }

  async counts(): Promise<StateCounts> {
    const k = this.keys;
    const [queued, running, completed, failed, cancelled, lost] = await Promise.all([
      this.count(k.queuedPrefix),
      this.count(k.runningPrefix),
      this.count(k.terminalPrefix(TaskState.COMPLETED)),
      this.count(k.terminalPrefix(TaskState.FAILED)),
      this.count(k.terminalPrefix(TaskState.CANCELLED)),
      this.count(k.terminalPrefix(TaskState.LOST)),
    ]);
    return { queued, running, completed, failed, cancelled, lost };
  }

  /** Records stored (/task/<id>), whatever their state. */
  records(): Promise<number> {
    return this.client.getAll().inRange(new Range(this.keys.taskRangeStart, this.keys.taskRangeEnd)).count();
  }

  /** Finish time (ms) of the latest task to reach `state`, from its index key. */
  async lastFinishMs(state: TaskState = TaskState.COMPLETED): Promise<number | undefined> {
    const [key] = await this.client.getAll().prefix(this.keys.terminalPrefix(state)).sort('Key', 'Descend').limit(1).keys();
    if (!key) return undefined;
    return Number(key.split('/').slice(-2)[0]);
  }

  /**
   * Polls until `n` more tasks than `baseline` are terminal or the deadline
   * (ms since epoch) passes; says how many were done and when it stopped.
   */
  async waitTerminalUntil(baseline: number, n: number, deadlineMs: number, pollMs = 100): Promise<{ counts: StateCounts; done: number; timedOut: boolean; atMs: number }> {
    for (;;) {
      const c = await this.counts();
      const atMs = Date.now();
      const done = terminalTotal(c) - baseline;
      if (done >= n) return { counts: c, done, timedOut: false, atMs };
      if (atMs > deadlineMs) return { counts: c, done, timedOut: true, atMs };
      await sleep(pollMs);
    }
  }
}

/**
 * Round trips (ms) of `n` sequential puts of one key, from this process:
 * a durable write's floor on that cluster at that moment. The key is
 * deleted afterwards.
 */
export async function putRoundTrips(etcd: Etcd3, key: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await etcd.put(key).value(String(i));
    out.push(performance.now() - t0);
  }
  await etcd.delete().key(key);
  return out;
}
