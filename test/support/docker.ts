/**
 * The private Docker engine of scripts/docker-up.sh, shared by every test file
 * of a run. A file asks for it with ensureDockerEngine() and never stops it:
 * files run in parallel, and one that stopped "its" engine took it away from
 * another still using it. The run's globalTeardown stops it (stopDockerIfStarted)
 * when it was not up before the run began.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DOCKER_SOCK = process.env.LOOM_DOCKER_SOCK || '/tmp/loom-docker/docker.sock';
export const TEST_IMAGE = 'loom-busybox:latest';

export interface DockerAvailability {
  available: boolean;
  /** Why the engine tests cannot run. */
  reason?: string;
  /**
   * Not "no Docker here" but a broken script, or no engine under CI (whose
   * machine must have one): a test must fail rather than skip.
   */
  broken?: boolean;
}

function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'scripts', 'docker-up.sh'))) return dir;
  }
  return process.cwd();
}

/** Does an engine answer /_ping on DOCKER_SOCK? (Synchronous: it decides describe vs describe.skip.) */
export function dockerAnswers(): boolean {
  const probe = `require('http').get({ socketPath: ${JSON.stringify(DOCKER_SOCK)}, path: '/_ping', timeout: 3000 },
    (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1)).on('timeout', () => process.exit(1));`;
  return spawnSync(process.execPath, ['-e', probe], { timeout: 10_000 }).status === 0;
}

let cached: DockerAvailability | undefined;

/** Starts the engine (and imports the test image) unless it is up already; idempotent. */
export function ensureDockerEngine(): DockerAvailability {
  if (cached) return cached;
  const r = spawnSync('bash', [path.join(repoRoot(), 'scripts', 'docker-up.sh')], {
    env: { ...process.env, LOOM_DOCKER_SOCK: DOCKER_SOCK },
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
    timeout: 600_000, // a fresh machine installs docker.io first
  });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  if (r.status === 0) {
    cached = { available: true };
  } else if (r.status === 3) {
    const lines = (r.stderr ?? '').trim().split('\n');
    const reason = lines[lines.length - 1] || 'docker-up.sh exited 3';
    cached = { available: false, reason, broken: process.env.CI === 'true' };
  } else {
    cached = {
      available: false,
      broken: true,
      reason: `scripts/docker-up.sh failed (exit ${r.status ?? r.signal ?? r.error?.message}):\n${output}`,
    };
  }
  return cached;
}

/**
 * describe when the engine is here, describe.skip (saying why) when it cannot
 * be had, and a failing test when that is a fault rather than the machine.
 */
export function describeWithDocker(label: string): jest.Describe {
  const a = ensureDockerEngine();
  if (a.available) return describe;
  if (a.broken) {
    test(`${label}: a Docker engine is available`, () => {
      throw new Error(a.reason);
    });
  } else {
    console.warn(`${label} skipped: ${a.reason}`);
  }
  return describe.skip;
}

/** globalSetup: was the engine up before this run? */
export function dockerWasUpBeforeRun(): boolean {
  return dockerAnswers();
}

/** globalTeardown: stop the engine when this run started it. */
export function stopDockerIfStarted(wasUp: boolean): void {
  if (wasUp || !dockerAnswers()) return;
  // The engine's data (the imported image) stays for the next run.
  spawnSync('bash', [path.join(repoRoot(), 'scripts', 'docker-down.sh')], {
    env: { ...process.env, LOOM_DOCKER_SOCK: DOCKER_SOCK },
    stdio: 'ignore',
    timeout: 60_000,
  });
}
