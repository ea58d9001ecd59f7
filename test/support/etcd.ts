/**
 * Helpers for integration and e2e tests: the shared test etcd started by
 * global-setup, fresh key roots, free ports, and polling without fixed sleeps.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';

/** Where global-setup records the etcd it started. */
export const TEST_ETCD_FILE = path.join(os.tmpdir(), 'loom-test-etcd.json');

/** The environment variable naming the test etcd's client URL. */
export const TEST_ETCD_ENV = 'LOOM_TEST_ETCD';

export interface TestEtcdInfo {
  endpoint: string;
  pid: number;
  dataDir: string;
  /** PID of the jest process that started it (only it may stop it). */
  ownerPid: number;
}

export function readTestEtcdFile(): TestEtcdInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(TEST_ETCD_FILE, 'utf8')) as TestEtcdInfo;
  } catch {
    return undefined;
  }
}

/** Client URL of the shared test etcd (http://127.0.0.1:PORT). */
export function testEtcdEndpoint(): string {
  const fromEnv = process.env[TEST_ETCD_ENV];
  if (fromEnv) return fromEnv;
  const info = readTestEtcdFile();
  if (info?.endpoint) return info.endpoint;
  throw new Error(
    `no test etcd: ${TEST_ETCD_ENV} is not set and ${TEST_ETCD_FILE} does not exist ` +
      `(run the tests through jest's integration/e2e projects, whose globalSetup starts one, ` +
      `or set ${TEST_ETCD_ENV}=http://HOST:PORT)`,
  );
}

/** A fresh key root such as "/t-1a2b3c4d": each test owns its own prefix. */
export function uniqueRoot(): string {
  return `/t-${randomBytes(4).toString('hex')}`;
}

/** A TCP port that was free on host a moment ago. */
export { freePort } from './ports';

export interface WaitForOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Pause between tries (default 50 ms). */
  intervalMs?: number;
  /** What is awaited, for the timeout message. */
  what?: string;
}

/**
 * Calls fn until it returns (or resolves to) a truthy value, and returns that
 * value. Errors thrown by fn count as "not yet". On timeout, throws an Error
 * naming `what` and the last value or error seen.
 */
export async function waitFor<T>(
  fn: () => Promise<T | undefined | false | null> | T | undefined | false | null,
  opts: WaitForOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 50;
  const what = opts.what ?? 'condition';
  const deadline = Date.now() + timeoutMs;
  let last: { value: unknown } | { error: unknown } | undefined;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
      last = { value };
    } catch (error) {
      last = { error };
    }
    if (Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(0, deadline - Date.now()))));
  }
  let seen = 'nothing (fn never returned)';
  if (last && 'error' in last) {
    const e = last.error;
    seen = `last error: ${e instanceof Error ? `${e.name}: ${e.message}` : inspect(e)}`;
  } else if (last) {
    seen = `last value: ${inspect(last.value, { depth: 4, breakLength: Infinity })}`;
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${seen}`);
}

/** True when a process with this PID exists and is not a zombie. */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true;
  }
}
