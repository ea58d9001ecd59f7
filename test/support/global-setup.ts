/**
 * jest globalSetup of the integration and e2e projects: starts ONE real etcd
 * for all their tests (private data dir, free ports on 127.0.0.1), records it
 * in TEST_ETCD_FILE and in $LOOM_TEST_ETCD (which the test workers inherit).
 * When LOOM_TEST_ETCD is already set, uses that etcd and starts nothing.
 * Also notes whether the test Docker engine was up (see support/docker.ts).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EmbeddedEtcd } from '../../src/etcd/embedded';
import {
  TEST_ETCD_ENV,
  TEST_ETCD_FILE,
  TestEtcdInfo,
  freePort,
  processAlive,
  readTestEtcdFile,
} from './etcd';
import { dockerWasUpBeforeRun } from './docker';

/** What teardown needs; globals set here are visible to globalTeardown. */
export interface TestEtcdState {
  etcd: EmbeddedEtcd;
  info: TestEtcdInfo;
}

const STATE_KEY = '__loomTestEtcd';
const DATA_DIR_PREFIX = 'loom-test-etcd-';

export function testEtcdState(): TestEtcdState | undefined {
  return (globalThis as Record<string, unknown>)[STATE_KEY] as TestEtcdState | undefined;
}

function setTestEtcdState(state: TestEtcdState | undefined): void {
  (globalThis as Record<string, unknown>)[STATE_KEY] = state;
}

/** Is dir one of our private data dirs (safe to delete)? */
export function isOurDataDir(dir: string): boolean {
  const resolved = path.resolve(dir);
  return (
    path.dirname(resolved) === path.resolve(os.tmpdir()) &&
    path.basename(resolved).startsWith(DATA_DIR_PREFIX)
  );
}

/** An etcd left by a test run that died before its teardown: stop it. */
function cleanUpStale(): void {
  const info = readTestEtcdFile();
  if (!info || processAlive(info.ownerPid)) return; // none, or another run's own
  let cmdline = '';
  try {
    cmdline = fs.readFileSync(`/proc/${info.pid}/cmdline`, 'utf8');
  } catch {
    // gone already
  }
  if (info.dataDir && cmdline.includes(info.dataDir) && processAlive(info.pid)) {
    try {
      process.kill(info.pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  if (info.dataDir && isOurDataDir(info.dataDir)) {
    fs.rmSync(info.dataDir, { recursive: true, force: true });
  }
  fs.rmSync(TEST_ETCD_FILE, { force: true });
}

async function startTestEtcd(): Promise<TestEtcdState> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), DATA_DIR_PREFIX));
    const clientPort = await freePort();
    let peerPort = await freePort();
    while (peerPort === clientPort) peerPort = await freePort();
    const endpoint = `http://127.0.0.1:${clientPort}`;
    let etcd: EmbeddedEtcd | undefined;
    try {
      etcd = await EmbeddedEtcd.start({
        name: 'loom-test',
        dataDir,
        peerListen: `http://127.0.0.1:${peerPort}`,
        clientListen: endpoint,
        peers: [],
        etcdBin: process.env.LOOM_ETCD_BIN || 'etcd',
      });
      await etcd.waitHealthy({ timeoutMs: 30_000 });
      return { etcd, info: { endpoint, pid: etcd.pid, dataDir, ownerPid: process.pid } };
    } catch (err) {
      lastError = err;
      await etcd?.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
      // A port taken between freePort() and etcd's bind: try other ports.
      if (!/address already in use/.test(String(err))) break;
    }
  }
  throw lastError;
}

const DOCKER_KEY = '__loomDockerWasUp';

/** Was the test Docker engine up before this run (undefined: not asked)? */
export function dockerWasUp(): boolean | undefined {
  return (globalThis as Record<string, unknown>)[DOCKER_KEY] as boolean | undefined;
}

export default async function globalSetup(): Promise<void> {
  // Test files start the shared engine on demand and never stop it; teardown does.
  if (dockerWasUp() === undefined) (globalThis as Record<string, unknown>)[DOCKER_KEY] = dockerWasUpBeforeRun();
  const given = process.env[TEST_ETCD_ENV];
  if (given) {
    process.stderr.write(`\ntest etcd: using ${TEST_ETCD_ENV}=${given}\n`);
    return;
  }
  if (testEtcdState()) return; // already started by this process
  cleanUpStale();

  const state = await startTestEtcd();
  setTestEtcdState(state);
  process.env[TEST_ETCD_ENV] = state.info.endpoint;
  fs.writeFileSync(TEST_ETCD_FILE, JSON.stringify(state.info, null, 2) + '\n');
  // Should jest exit without running globalTeardown, take etcd along.
  process.once('exit', () => {
    if (state.etcd.running) {
      try {
        process.kill(state.etcd.pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });
  process.stderr.write(
    `\ntest etcd: ${state.info.endpoint} (pid ${state.info.pid}, data dir ${state.info.dataDir})\n`,
  );
}
