/** jest globalTeardown: stops the etcd global-setup started, by its PID, and removes its data; stops the test Docker engine if this run started it. */
import * as fs from 'node:fs';
import { TEST_ETCD_ENV, TEST_ETCD_FILE, processAlive, readTestEtcdFile } from './etcd';
import { dockerWasUp, isOurDataDir, testEtcdState } from './global-setup';
import { stopDockerIfStarted } from './docker';

async function killByPid(pid: number, graceMs: number): Promise<void> {
  const deadline = Date.now() + graceMs;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  while (processAlive(pid) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  if (processAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
}

export default async function globalTeardown(): Promise<void> {
  const docker = dockerWasUp();
  if (docker !== undefined) {
    stopDockerIfStarted(docker);
    (globalThis as Record<string, unknown>).__loomDockerWasUp = true; // once per run
  }
  const state = testEtcdState();
  const recorded = readTestEtcdFile();
  const info = state?.info ?? (recorded?.ownerPid === process.pid ? recorded : undefined);
  if (!info) return; // nothing started here (LOOM_TEST_ETCD was given)

  if (state) {
    await state.etcd.stop(5000);
  } else {
    await killByPid(info.pid, 5000);
  }
  if (isOurDataDir(info.dataDir)) fs.rmSync(info.dataDir, { recursive: true, force: true });
  if (readTestEtcdFile()?.ownerPid === process.pid) fs.rmSync(TEST_ETCD_FILE, { force: true });
  if (process.env[TEST_ETCD_ENV] === info.endpoint) delete process.env[TEST_ETCD_ENV];
  (globalThis as Record<string, unknown>).__loomTestEtcd = undefined;
}
