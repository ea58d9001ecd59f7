/**
 * The BullMQ producer process for the peer figures (forked by peer/bullmq.ts):
 * it adds the jobs, so its CPU is its own and it shares no event loop with
 * the bench.
 *
 *   node bullmq-producer.js PORT QUEUE
 *
 * IPC requests (each answered with one message, {error} on failure):
 *   {op: 'bulk', n, batch, lanes, command}: n jobs in batches of `batch`
 *     (Queue.addBulk), `lanes` connections adding batches concurrently, batches
 *     round-robin over the lanes (as the loom run submits one lane per node);
 *     answers {t0, t1}: wall clock (ms) before the first add and after the last.
 *   {op: 'latency', n, command}: n jobs one at a time, each Queue.add then
 *     Job.waitUntilFinished (QueueEvents); answers {samples}: ms per job.
 *   {op: 'stop'}: closes the connections and exits.
 */
import { Queue, QueueEvents } from 'bullmq';

interface Bulk {
  op: 'bulk';
  n: number;
  batch: number;
  lanes: number;
  command: string[];
}
interface Latency {
  op: 'latency';
  n: number;
  command: string[];
}
type Request = Bulk | Latency | { op: 'stop' };

const [port, queueName] = process.argv.slice(2);
const connection = { host: '127.0.0.1', port: Number(port) };
const queues: Queue[] = [];
let events: QueueEvents | undefined;

async function lanes(k: number): Promise<Queue[]> {
  while (queues.length < k) queues.push(new Queue(queueName, { connection }));
  await Promise.all(queues.map((q) => q.waitUntilReady()));
  return queues.slice(0, k);
}

async function bulk(r: Bulk): Promise<{ t0: number; t1: number }> {
  const qs = await lanes(r.lanes);
  const batches: number[] = [];
  for (let left = r.n; left > 0; left -= r.batch) batches.push(Math.min(r.batch, left));
  const data = { command: r.command };
  const t0 = Date.now();
  await Promise.all(
    qs.map(async (q, lane) => {
      for (let b = lane; b < batches.length; b += qs.length) {
        await q.addBulk(Array.from({ length: batches[b] }, () => ({ name: 'task', data })));
      }
    }),
  );
  return { t0, t1: Date.now() };
}

async function latency(r: Latency): Promise<{ samples: number[] }> {
  const [q] = await lanes(1);
  events ??= new QueueEvents(queueName, { connection });
  await events.waitUntilReady();
  const samples: number[] = [];
  for (let i = 0; i < r.n; i++) {
    const t0 = performance.now();
    const job = await q.add('task', { command: r.command });
    await job.waitUntilFinished(events, 60_000);
    samples.push(performance.now() - t0);
  }
  return { samples };
}

async function stop(): Promise<never> {
  await Promise.allSettled([...queues.map((q) => q.close()), events?.close()]);
  process.exit(0);
}

process.on('disconnect', () => process.exit(1));
process.on('message', (r: Request) => {
  const work = r.op === 'bulk' ? bulk(r) : r.op === 'latency' ? latency(r) : stop();
  work.then(
    (answer) => process.send!(answer),
    (err: Error) => process.send!({ error: err.message }),
  );
});
process.send!({ ready: true });
