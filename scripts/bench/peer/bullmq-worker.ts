/**
 * A BullMQ worker process for the peer figures (forked by peer/bullmq.ts,
 * one per "node"): `concurrency` jobs at a time from one queue, each job
 * spawning its command the way a loom node runs a task (own process group,
 * stdout and stderr piped and read to the end; the last 64 KiB of each kept
 * and returned as the job's result, stored in Redis with the job, as loom
 * keeps an output tail in the task's final record).
 *
 *   node bullmq-worker.js PORT QUEUE CONCURRENCY
 *
 * IPC: sends {ready: true} once connected; {op: 'stop'} closes the worker
 * and exits. Exits at once when the bench process goes away (IPC closed).
 */
import { spawn } from 'child_process';
import { Job, Worker } from 'bullmq';

const TAIL = 64 * 1024;

export interface CommandJob {
  command: string[];
}

/** Keeps the last `max` bytes of a stream. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly max: number) {}
  push(b: Buffer): void {
    this.chunks.push(b);
    this.size += b.length;
    while (this.size - this.chunks[0].length >= this.max) this.size -= this.chunks.shift()!.length;
  }
  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.max)).toString('utf8');
  }
}

function run(command: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command[0], command.slice(1), { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = new Tail(TAIL);
    const err = new Tail(TAIL);
    child.stdout!.on('data', (d: Buffer) => out.push(d));
    child.stderr!.on('data', (d: Buffer) => err.push(d));
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (code === 0) resolve({ exitCode: 0, stdout: out.text(), stderr: err.text() });
      else reject(new Error(`${command.join(' ')} exited ${code ?? signal}: ${err.text().slice(-200)}`));
    });
  });
}

async function main(): Promise<void> {
  const [port, queue, concurrency] = process.argv.slice(2);
  process.on('disconnect', () => process.exit(1));
  const worker = new Worker<CommandJob>(queue, async (job: Job<CommandJob>) => run(job.data.command), {
    connection: { host: '127.0.0.1', port: Number(port) },
    concurrency: Number(concurrency),
  });
  worker.on('error', (err) => process.stderr.write(`bullmq worker ${process.pid}: ${err.message}\n`));
  process.on('message', (m: { op?: string }) => {
    if (m?.op === 'stop') {
      worker.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    }
  });
  await worker.waitUntilReady();
  process.send!({ ready: true });
}

main().catch((err) => {
  process.stderr.write(`bullmq worker: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
