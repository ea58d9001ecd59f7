/**
 * The physical limit: how fast one Node process can spawn `true` on this
 * machine, the way a node runs a task (own process group, stdout and stderr
 * piped and read to the end), keeping `concurrency` children in flight.
 */
import { spawn } from 'child_process';

export function runOnce(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', () => undefined);
    child.stderr!.on('data', () => undefined);
    child.once('error', reject);
    child.once('close', () => resolve());
  });
}

/** Tasks per second over about durationMs. */
export async function rawSpawnRate(concurrency: number, durationMs: number, command = 'true'): Promise<number> {
  const t0 = performance.now();
  const stopAt = t0 + durationMs;
  let done = 0;
  let last = t0;
  const worker = async () => {
    while (performance.now() < stopAt) {
      await runOnce(command);
      done++;
      last = performance.now();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return done / ((last - t0) / 1000);
}
