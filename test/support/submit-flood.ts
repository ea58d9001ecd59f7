/**
 * Clients flooding a node with the largest submits the API takes, in a
 * process of their own: building and encoding 12 requests of ~16 MiB holds an
 * event loop for seconds, and a real node does not share its loop with its
 * clients. The test is about the node's side: its heartbeats must survive
 * decoding, checking and storing the flood.
 *
 * Run with fork(): argv address, clients, requests per client, specs per
 * request. Reports once on IPC: { outcomes: [{ accepted } | { code, message }] },
 * one per request.
 */
import { LoomError } from '../../src/core/errors';
import { LoomApi } from '../../src/client/client';
import { TaskSpec } from '../../src/gen/loom';
import { spec } from './nodes';

/**
 * The largest spec the API accepts: argv and env at 128 KiB each, 64
 * constraints; about 300 KiB. `runnable`: false adds a constraint no node
 * meets (it stays queued).
 */
export function maxSpec(i: number, runnable: boolean): TaskSpec {
  const constraints = Array.from({ length: 63 }, (_, k) => ({ key: `k${k}`, op: '!=', value: 'v'.repeat(250) }));
  constraints.push(runnable ? { key: 'kz', op: '!=', value: 'none' } : { key: 'zone', op: '=', value: 'nowhere' });
  return spec(['sh', '-c', 'exit 0', `${i}`.padEnd(128 * 1024 - 20, 'p')], { env: { PAD: 'e'.repeat(128 * 1024 - 10) }, constraints });
}

export type FloodOutcome = { accepted: number } | { code: string; message: string };

async function flood(address: string, clients: number, requests: number, perRequest: number): Promise<FloodOutcome[]> {
  // A long deadline: the test is about what the node accepts or refuses, not how fast it answers a flood.
  const apis = Array.from({ length: clients }, () => new LoomApi(address, { deadlineMs: 120_000 }));
  const batch = (c: number, r: number) => Array.from({ length: perRequest }, (_, i) => maxSpec(c * 1000 + r * 100 + i, false));
  try {
    return await Promise.all(
      apis.flatMap((api, c) =>
        Array.from({ length: requests }, (_, r) =>
          api.submit(batch(c, r)).then(
            (ids): FloodOutcome => ({ accepted: ids.length }),
            (e: unknown): FloodOutcome => (e instanceof LoomError ? { code: e.code, message: e.message } : { code: 'NOT_LOOM_ERROR', message: String(e) }),
          ),
        ),
      ),
    );
  } finally {
    apis.forEach((a) => a.close());
  }
}

if (require.main === module) {
  const [address, clients, requests, perRequest] = process.argv.slice(2);
  void flood(address, Number(clients), Number(requests), Number(perRequest)).then((outcomes) => process.send?.({ outcomes }, () => process.disconnect()));
}
