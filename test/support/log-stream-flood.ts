/**
 * A crowd of log followers in a process of its own, so that the client side
 * of a burst (10,000 streams) does not share the event loop of the node under
 * test, as real clients would not: the node's heartbeats must survive the
 * server side of the burst, which is what the test is about.
 *
 * Run with fork(): argv address, task id, stream count. Reports on IPC:
 *   { open: true, errors }             every stream got its first chunk
 *   { extra: { code, details } }       the one stream past the count
 * and on the parent's { drop: true } cancels half the streams and closes the
 * clients of the other half mid-stream, then reports { dropped: true }.
 */
import * as grpc from '@grpc/grpc-js';
import { LoomClient } from '../../src/gen/loom';

const [address, id, countText] = process.argv.slice(2);
const count = Number(countText);
const send = (m: unknown): void => void process.send?.(m);

const clients = Array.from({ length: 20 }, () => new LoomClient(address, grpc.credentials.createInsecure()));
const calls: grpc.ClientReadableStream<unknown>[] = [];
const errors: string[] = [];
let dropping = false;
let firstChunks = 0;
for (let i = 0; i < count; i++) {
  const call = clients[i % clients.length].logs({ id, follow: true, attempt: 0 });
  let seen = false;
  call.on('data', () => {
    if (seen) return;
    seen = true;
    if (++firstChunks === count) opened();
  });
  // After the drop, each call reports its own cancellation or closed channel.
  call.on('error', (e: grpc.ServiceError) => void (dropping || errors.push(e.message)));
  calls.push(call);
}

function opened(): void {
  send({ open: true, errors });
  const call = clients[0].logs({ id, follow: true, attempt: 0 });
  call.on('data', () => undefined);
  call.on('error', (e: grpc.ServiceError) => send({ extra: { code: e.code, details: e.details } }));
}

process.on('message', (m: { drop?: boolean }) => {
  if (!m.drop) return;
  dropping = true;
  calls.forEach((c, i) => i % 2 === 0 && c.cancel());
  clients.forEach((c, i) => i % 2 === 1 && c.close());
  send({ dropped: true });
});
