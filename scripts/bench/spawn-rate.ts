/**
 * The physical limit: how fast one Node process can spawn `true` on this
 * machine, the way a node runs a task (own process group, stdout and stderr
 * piped and read to the end), keeping `concurrency` children in flight.
 * Beside it, the same through loom-spawner (posix_spawn), which is how a node
 * starts plain tasks by default.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Spawner } from '../../src/runner/spawner';

export function runOnce(command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', () => undefined);
    child.stderr!.on('data', () => undefined);
    child.once('error', reject);
    child.once('close', () => resolve());
  });
}

/** Tasks per second over about durationMs, `concurrency` at a time, each started and awaited by runOne. */
async function rate(concurrency: number, durationMs: number, runOne: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  const stopAt = t0 + durationMs;
  let done = 0;
  let last = t0;
  const worker = async () => {
    while (performance.now() < stopAt) {
      await runOne();
      done++;
      last = performance.now();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return done / ((last - t0) / 1000);
}

/** Tasks per second over about durationMs, spawned by this process (Node's spawn). */
export function rawSpawnRate(concurrency: number, durationMs: number, command = 'true'): Promise<number> {
  return rate(concurrency, durationMs, () => runOnce(command));
}

/**
 * One `true` through loom-spawner (posix_spawn, the way a node starts plain
 * tasks by default): the request, both output connections read to the end,
 * the exit status.
 */
export function runOnceSpawner(spawner: Spawner, command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let open = 3; // two streams and the exit
    const done = () => --open === 0 && resolve();
    spawner.spawn({ argv: [command], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: '' }, {
      started: () => undefined,
      failed: (why) => reject(new Error(`loom-spawner could not start ${command}: ${why}`)),
      late: () => reject(new Error('loom-spawner: refused as late (no deadline was given)')),
      stream: (_id, socket) => {
        socket.on('data', () => undefined);
        socket.resume();
        if (socket.closed || socket.destroyed) done();
        else socket.once('close', done);
      },
      exited: done,
      lost: (why) => reject(new Error(why)),
    });
  });
}

/** Like rawSpawnRate, through loom-spawner. */
export function rawSpawnerRate(spawner: Spawner, concurrency: number, durationMs: number, command = 'true'): Promise<number> {
  return rate(concurrency, durationMs, () => runOnceSpawner(spawner, command));
}

/** A loom-spawner for the benchmark process itself (socket in a fresh temp dir). */
export async function benchSpawner(): Promise<{ spawner: Spawner; close: () => Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-bench-spawner-'));
  const why: string[] = [];
  const spawner = await Spawner.start({ socketPath: path.join(dir, 's.sock'), log: (m) => why.push(m) });
  if (!spawner) throw new Error(`loom-spawner unavailable: ${why.join('; ')}`);
  return { spawner, close: async () => { await spawner.close(); fs.rmSync(dir, { recursive: true, force: true }); } };
}
