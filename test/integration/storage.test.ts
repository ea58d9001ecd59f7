/**
 * etcd's space quota (#22): a node against a real etcd started with a small
 * --quota-backend-bytes (32 MiB) and etcd's default request limit (1.5 MiB).
 * Submits filling it are refused with "cluster storage full" while a running
 * task still records its result; once retention deletes the finished work,
 * one node compacts and defragments and submits work again. And when etcd
 * does raise its NOSPACE alarm (filled by something other than loom), submits
 * are refused with the same error, and the alarm is disarmed once the space
 * is freed.
 */
import { ChildProcess, fork, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { noop } from 'cockatiel';
import { AlarmAction, AlarmType, Etcd3 } from 'etcd3';
import { TaskState } from '../../src/gen/loom';
import { LoomError } from '../../src/core/errors';
import { freePort, uniqueRoot, waitFor } from '../support/etcd';
import { sharedTmpDir, spec, startNode, stopNode, TestNode } from '../support/nodes';
import { FloodOutcome, maxSpec } from '../support/submit-flood';

const QUOTA = 32 * 1024 * 1024;

interface PrivateEtcd {
  proc: ChildProcess;
  endpoint: string;
  dataDir: string;
  client: Etcd3;
}

async function startEtcd(quota = QUOTA): Promise<PrivateEtcd> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-quota-etcd-'));
  const clientPort = await freePort();
  let peerPort = await freePort();
  while (peerPort === clientPort) peerPort = await freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const proc = spawn(process.env.LOOM_ETCD_BIN || 'etcd', [
    '--name', 'quota', '--data-dir', dataDir,
    '--listen-client-urls', endpoint, '--advertise-client-urls', endpoint,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `quota=http://127.0.0.1:${peerPort}`,
    '--quota-backend-bytes', String(quota),
  ], { stdio: 'ignore' });
  // No circuit breaker: the test's own writes are refused on purpose (NOSPACE), and it goes on asking.
  const client = new Etcd3({ hosts: endpoint, faultHandling: { host: () => noop, global: noop } });
  await waitFor(() => client.maintenance.status().then(() => true), { timeoutMs: 20_000, what: 'private etcd up' });
  return { proc, endpoint, dataDir, client };
}

async function stopEtcd(e: PrivateEtcd): Promise<void> {
  e.client.close();
  const exited = new Promise((res) => e.proc.once('exit', res));
  e.proc.kill('SIGKILL');
  await exited;
  fs.rmSync(e.dataDir, { recursive: true, force: true });
}

const nospaceRaised = async (client: Etcd3) =>
  (await client.maintenance.alarm({ action: AlarmAction.Get, alarm: AlarmType.None, memberID: 0 })).alarms.length > 0;

/** A task no node can run (it stays queued), its env 100 KiB: 4 of them fit etcd's default request limit twice over. */
const bulky = (i: number) => spec(['true'], { env: { PAD: 'x'.repeat(100 * 1024), I: String(i) }, constraints: [{ key: 'zone', op: '=', value: 'nowhere' }] });

let etcd: PrivateEtcd;
let t: TestNode;

afterEach(async () => {
  if (t) await stopNode(t);
  if (etcd) await stopEtcd(etcd);
});

test('submits stop short of the quota; a running task still records its result; after retention, space is reclaimed and submits work again', async () => {
  etcd = await startEtcd();
  t = await startNode(uniqueRoot(), 'quota1', { etcdEndpoints: [etcd.endpoint], etcdQuotaBytes: QUOTA, slots: 1, retentionMs: 2000 }, { storageCheckMs: 200 });
  const dir = sharedTmpDir('loom-quota-');
  const go = path.join(dir, 'go');
  // Prints 200 KB (the tail keeps 64 KiB) once the test says so.
  const [runningId] = await t.api.submit([spec(['sh', '-c', `while [ ! -e ${go} ]; do sleep 0.05; done; head -c 200000 /dev/zero | tr '\\0' x`])]);
  await waitFor(async () => (await t.api.get(runningId)).state === TaskState.RUNNING, { what: 'task running' });

  let refused: LoomError | undefined;
  let accepted = 0;
  for (let i = 0; i < 200 && !refused; i++) {
    try {
      await t.api.submit([bulky(4 * i), bulky(4 * i + 1), bulky(4 * i + 2), bulky(4 * i + 3)]);
      accepted += 4;
    } catch (err) {
      refused = err as LoomError;
    }
  }
  expect(refused).toBeInstanceOf(LoomError);
  expect(refused!.code).toBe('RESOURCE_EXHAUSTED');
  expect(refused!.message).toMatch(/cluster storage full: .*quota/);
  expect(accepted).toBeGreaterThan(20);
  expect(refused!.message).toMatch(/submits stop at 50%/);
  // Refused at the limit, not far past it (each accepted submit stores 800 KiB).
  expect(accepted * 200 * 1024).toBeLessThan(QUOTA * 0.5 + 1024 * 1024);
  // Refused by loom, short of the quota: etcd has not raised its alarm.
  expect(await nospaceRaised(etcd.client)).toBe(false);

  // The running task ends and its result (with a full 64 KiB tail) is recorded.
  fs.writeFileSync(go, '');
  const done = await t.api.wait(runningId);
  expect(done.state).toBe(TaskState.COMPLETED);
  expect(done.exitCode).toBe(0);
  expect(await nospaceRaised(etcd.client)).toBe(false);
  fs.rmSync(dir, { recursive: true, force: true });

  // Cancelled, the bulky tasks are finished work: retention deletes them,
  // the maintaining node compacts and defragments (the cancels' rewrites and
  // the deletions), and submits go through again.
  const cancelled = await t.api.cancelQueued();
  expect(cancelled.cancelled).toBe(accepted);
  const deleted = () => t.logs.map((l) => /^retention: deleted (\d+) task/.exec(l)).reduce((n, m) => n + (m ? Number(m[1]) : 0), 0);
  await waitFor(() => deleted() >= accepted, { timeoutMs: 30_000, what: 'retention deleted the cancelled tasks' });
  await waitFor(
    async () => {
      try {
        return (await t.api.submit([spec(['true'])])).length === 1;
      } catch (err) {
        if ((err as LoomError).code !== 'RESOURCE_EXHAUSTED') throw err;
        return false;
      }
    },
    { timeoutMs: 30_000, intervalMs: 200, what: 'submits accepted again' },
  );
  const size = Number((await etcd.client.maintenance.status()).dbSize);
  expect(size).toBeLessThan(QUOTA * 0.5);
  // The reserve held throughout: loom's own writes (the cancels rewrote every record) never reached the quota.
  expect(t.logs.filter((l) => /NOSPACE/.test(l))).toEqual([]);
}, 120_000);

test('under etcd\'s NOSPACE alarm submits are refused with the same error; once the space is freed the alarm is disarmed and submits work', async () => {
  etcd = await startEtcd();
  t = await startNode(uniqueRoot(), 'quota2', { etcdEndpoints: [etcd.endpoint], etcdQuotaBytes: QUOTA, slots: 1, metricsListen: '127.0.0.1:0' }, { storageCheckMs: 200 });
  const metric = async (name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${t.node.metricsPort}/metrics`)).text();
    return new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[2];
  };
  expect(await waitFor(() => metric('loom_etcd_quota_bytes'), { what: 'storage metrics' })).toBe(String(QUOTA));
  // Something other than loom fills etcd until it raises the alarm.
  const junk = Buffer.alloc(1024 * 1024, 'j');
  for (let i = 0; i < 100; i++) {
    try {
      await etcd.client.put(`/junk/${i}`).value(junk);
    } catch (err) {
      expect(String(err)).toMatch(/database space exceeded/);
      break;
    }
  }
  expect(await nospaceRaised(etcd.client)).toBe(true);
  await waitFor(async () => (await metric('loom_etcd_nospace')) === '1', { what: 'loom_etcd_nospace 1' });

  const refused = await t.api.submit([spec(['true'])]).then(() => undefined, (e: LoomError) => e);
  expect(refused?.code).toBe('RESOURCE_EXHAUSTED');
  expect(refused?.message).toMatch(/cluster storage full/);

  await etcd.client.delete().prefix('/junk/');
  await waitFor(async () => !(await nospaceRaised(etcd.client)), { timeoutMs: 30_000, intervalMs: 200, what: 'alarm disarmed' });
  expect(t.logs.some((l) => /disarmed etcd's NOSPACE alarm/.test(l))).toBe(true);
  await waitFor(async () => (await metric('loom_etcd_nospace')) === '0', { what: 'loom_etcd_nospace 0' });
  // Submits work again (the node may first have to rejoin: under the alarm etcd refuses heartbeats and lease grants).
  const id = await waitFor(
    async () => (await t.api.submit([spec(['true'])]).catch(() => []))[0],
    { timeoutMs: 30_000, intervalMs: 200, what: 'a submit accepted' },
  );
  expect((await t.api.wait(id)).state).toBe(TaskState.COMPLETED);
}, 120_000);

/** Runs test/support/submit-flood.js against `address` and resolves its outcomes, one per request. */
function submitFlood(address: string, clients: number, requests: number, perRequest: number): Promise<FloodOutcome[]> {
  const child = fork(path.join(__dirname, '../support/submit-flood.js'), [address, String(clients), String(requests), String(perRequest)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m: { outcomes: FloodOutcome[] }) => resolve(m.outcomes));
    child.once('exit', (code) => reject(new Error(`submit-flood exited (${code}) before reporting`)));
  });
}

test('a flood of maximum-size submits from three clients: each accepted or refused RESOURCE_EXHAUSTED, the node keeps its lease, large tasks are claimed and finish', async () => {
  const quota = 256 * 1024 * 1024;
  etcd = await startEtcd(quota);
  t = await startNode(uniqueRoot(), 'flood1', { etcdEndpoints: [etcd.endpoint], etcdQuotaBytes: quota, slots: 8 }, { storageCheckMs: 500 });

  // 12 of the largest tasks in one submit, claimed up to 8 at once: every
  // transaction stays under etcd's default request limit (1.5 MiB).
  const ids = await t.api.submit(Array.from({ length: 12 }, (_, i) => maxSpec(i, true)));
  for (const id of ids) expect((await t.api.wait(id)).state).toBe(TaskState.COMPLETED);

  // Three clients, four requests each, 55 of the largest specs per request
  // (~16 MiB, the API's request limit), from a process of their own.
  const outcomes = await submitFlood(t.node.address, 3, 4, 55);
  const refused = outcomes.filter((o): o is { code: string; message: string } => 'code' in o);
  const accepted = outcomes.filter((o) => 'accepted' in o);
  if (process.env.LOOM_TEST_VERBOSE) process.stderr.write(`flood: ${accepted.length} accepted, ${refused.length} refused\n`);
  // Both happen: the quota's half (128 MiB) holds about 4 requests' tasks (stored twice).
  expect(accepted.length).toBeGreaterThan(0);
  expect(refused.length).toBeGreaterThan(0);
  for (const e of refused) {
    expect(e.code).toBe('RESOURCE_EXHAUSTED');
    expect(e.message).toMatch(/cluster storage full/);
  }
  expect(await nospaceRaised(etcd.client)).toBe(false);
  // The node kept its lease throughout and still answers.
  expect(t.logs.filter((l) => /FENCED/.test(l))).toEqual([]);
  expect((await t.api.nodes()).map((n) => n.name)).toContain('flood1');
}, 180_000);

test('a task whose every attempt fails quoting a 120 KiB command still records its results (reasons are cut) and ends FAILED', async () => {
  etcd = await startEtcd();
  t = await startNode(uniqueRoot(), 'reason1', { etcdEndpoints: [etcd.endpoint], etcdQuotaBytes: QUOTA, slots: 1 }, { storageCheckMs: 500 });
  // "command not found: <argv[0]>" each time, 25 attempts: uncut, the record's
  // reason and history (20 entries) outgrew etcd's request limit (1.5 MiB here).
  const [id] = await t.api.submit([spec([`/nonexistent/${'c'.repeat(120 * 1024)}`], { retries: 24 })]);
  const done = await t.api.wait(id);
  expect(done.state).toBe(TaskState.FAILED);
  expect(done.attempt).toBe(25);
  expect(done.reason).toMatch(/^command not found: \/nonexistent\/c+\.\.\. \(\d+ more characters cut\)$/);
  expect(done.history).toHaveLength(20);
}, 120_000);
