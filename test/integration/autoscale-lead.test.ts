/**
 * One autoscaler at a time, on a real etcd: the leader key is taken only
 * while missing, the state is written only by the key's holder (value and
 * lease), and when the leader's lease ends another node takes over and goes
 * on from the stored state (no second provider call for a size already
 * applied).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Etcd3 } from 'etcd3';
import { connectEtcd, Kv } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { listScaleGroups, readScaleState, ScaleState, takeScaleLead, writeScaleState } from '../../src/store/autoscale-state';
import { parseAutoscalePolicy } from '../../src/core/autoscale';
import { autoscalerFor } from '../../src/node/autoscaler';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';

jest.setTimeout(60_000);

let client: Etcd3;
let kv: Kv;
let dir: string;

beforeAll(() => {
  client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
  kv = new Kv(client);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-autoscale-lead-'));
});
afterAll(() => {
  client.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const state = (leader: string): ScaleState => ({ target: 1, lastUpMs: 0, lastDownMs: 0, wanted: [], leader, observed: [], removing: [], reason: 'test', atMs: Date.now() });

test('the lead is taken only while free, and only its holder writes the state', async () => {
  const keys = new Keys(uniqueRoot());
  const [a, b] = [client.lease(30), client.lease(30)];
  const [la, lb] = [await a.grant(), await b.grant()];
  expect(await takeScaleLead(kv, keys, 'workers', 'a', la)).toBe(true);
  expect(await takeScaleLead(kv, keys, 'workers', 'a', la)).toBe(true);
  expect(await takeScaleLead(kv, keys, 'workers', 'b', lb)).toBe(false);
  expect(await writeScaleState(kv, keys, 'workers', 'b', lb, state('b'))).toBe(false);
  // The same name with another lease (a restarted node) is not the holder either.
  expect(await writeScaleState(kv, keys, 'workers', 'a', lb, state('a'))).toBe(false);
  expect(await writeScaleState(kv, keys, 'workers', 'a', la, state('a'))).toBe(true);
  await a.revoke();
  expect(await takeScaleLead(kv, keys, 'workers', 'b', lb)).toBe(true);
  expect(await writeScaleState(kv, keys, 'workers', 'a', la, state('a'))).toBe(false);
  expect((await readScaleState(kv, keys, 'workers'))?.leader).toBe('a');
  expect(await writeScaleState(kv, keys, 'workers', 'b', lb, state('b'))).toBe(true);
  expect((await readScaleState(kv, keys, 'workers'))?.leader).toBe('b');
  await b.revoke();
});

test('another node takes over when the leader\'s lease ends, and goes on from its state', async () => {
  const keys = new Keys(uniqueRoot());
  const calls = path.join(dir, 'calls');
  const script = path.join(dir, 'scale.sh');
  fs.writeFileSync(script, `#!/bin/sh\necho "$1 $LOOM_AUTOSCALE_GROUP" >> ${calls}\n`, { mode: 0o755 });
  const policy = parseAutoscalePolicy({ min: 1, max: 3, interval: 1000, provider: { kind: 'exec', command: [script] } });
  const leases = [client.lease(3), client.lease(3)];
  const ids = await Promise.all(leases.map((l) => l.grant()));
  const logs: string[] = [];
  const scalers = ['a', 'b'].map((name, i) => autoscalerFor(policy, {
    kv, keys, node: name, lease: () => ids[i], nodes: () => [], etcdEndpoints: () => [testEtcdEndpoint()], log: (m) => logs.push(`${name}: ${m}`),
  }));
  scalers[0].start();
  await waitFor(async () => (await readScaleState(kv, keys, 'workers'))?.applied === 1, { what: 'a applies min 1' });
  scalers[1].start();
  await scalers[1].tick();
  expect(scalers.map((s) => s.status().leading)).toEqual([true, false]);
  expect(fs.readFileSync(calls, 'utf8')).toBe('1 workers\n');

  // a's node dies: its lease ends (here at once), and b leads at its next evaluation.
  await scalers[0].stop();
  await leases[0].revoke();
  await waitFor(async () => scalers[1].status().leading && (await readScaleState(kv, keys, 'workers'))?.leader === 'b', { what: 'b leading' });
  // The size was applied by a: b does not ask again.
  await scalers[1].tick();
  expect(fs.readFileSync(calls, 'utf8')).toBe('1 workers\n');
  expect(logs.join('\n')).toMatch(/b: autoscale workers: this node evaluates the policy now/);
  // What `loom nodes` shows: the state, with the leader as of now.
  expect(await listScaleGroups(kv, keys)).toEqual([expect.objectContaining({ group: 'workers', target: 1, applied: 1, hasApplied: true, leader: 'b' })]);
  await scalers[1].stop();
  await leases[1].revoke();
  expect(await listScaleGroups(kv, keys)).toEqual([expect.objectContaining({ group: 'workers', leader: '' })]);
});
