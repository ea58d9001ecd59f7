/** A real in-process node (real etcd, real processes) driven through its gRPC API. */
import * as fs from 'fs';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { LoomClient, RunEvent, TaskSpec, TaskState } from '../../src/gen/loom';
import { freePort, testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { LoomApi } from '../../src/client/client';
import { LoomError } from '../../src/core/errors';
import { TcpProxy } from '../support/tcp-proxy';
import { collectLogs, spec, startNode, stopNode, TestNode, sharedFile, sharedTmpDir } from '../support/nodes';

jest.setTimeout(60_000);

describe('a node', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'solo', { slots: 2 });
  });
  afterAll(() => stopNode(n));

  it('runs a command, records its exit code and serves its output', async () => {
    const [id] = await n.api.submit([spec(['sh', '-c', 'echo out; echo err >&2; exit 3'])]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.exitCode).toBe(3);
    expect(await collectLogs(n.api, id)).toEqual({ stdout: 'out\n', stderr: 'err\n' });
  });

  it('writes logs/<id>.<attempt>.log and still serves a log file of the older logs/<id>/<attempt>.log layout', async () => {
    // 100,000 bytes: more than the 64 KiB tail kept in etcd, so only the file can give them all.
    const [id] = await n.api.submit([spec(['sh', '-c', 'head -c 100000 /dev/zero | tr "\\0" a'])]);
    expect((await n.api.wait(id)).state).toBe(TaskState.COMPLETED);
    const flat = path.join(n.dataDir, 'logs', `${id}.1.log`);
    expect(fs.existsSync(flat)).toBe(true);
    const legacy = path.join(n.dataDir, 'logs', id, '1.log');
    fs.mkdirSync(path.dirname(legacy));
    fs.renameSync(flat, legacy);
    const out = await collectLogs(n.api, id);
    expect(out.stdout).toBe('a'.repeat(100_000));
  });

  it('completes a log whose file could not be written (disk full) from the retained tail', async () => {
    // The attempt's log file is a link to /dev/full before the task prints:
    // every write fails with ENOSPC, as on a full disk.
    const [id] = await n.api.submit([spec(['sh', '-c', 'sleep 0.5; echo hello; echo oops >&2; exit 4'])]);
    fs.mkdirSync(path.join(n.dataDir, 'logs'), { recursive: true });
    fs.symlinkSync('/dev/full', path.join(n.dataDir, 'logs', `${id}.1.log`));
    // Followed while it runs, then read again once it is finished.
    const live = collectLogs(n.api, id, true);
    expect((await n.api.wait(id)).exitCode).toBe(4);
    expect(await live).toEqual({ stdout: 'hello\n', stderr: 'oops\n' });
    expect(await collectLogs(n.api, id, false)).toEqual({ stdout: 'hello\n', stderr: 'oops\n' });
    expect(n.logs.join('\n')).toMatch(new RegExp(`log file .*${id}\\.1\\.log: ENOSPC`));
  });

  it('run: submits and waits in one call; onId gets the id once, before the result', async () => {
    const ids: string[] = [];
    const t = await n.api.run(spec(['sh', '-c', 'exit 3']), { onId: (id) => ids.push(id) });
    expect(ids).toEqual([t.id]);
    expect(t).toMatchObject({ state: TaskState.FAILED, exitCode: 3 });
    expect(await n.api.get(t.id)).toMatchObject({ state: TaskState.FAILED, exitCode: 3 });
  });

  it('run: a task still running after 10 ms gets its id alone first; the last event has the id and the final record', async () => {
    const raw = new LoomClient(n.node.address, grpc.credentials.createInsecure());
    try {
      const events = async (command: string[]) => {
        const out: RunEvent[] = [];
        for await (const ev of raw.run({ task: spec(command) })) out.push(ev as RunEvent);
        return out;
      };
      const long = await events(['sleep', '0.2']);
      expect(long).toHaveLength(2);
      expect(long[0]).toMatchObject({ id: long[1].id, task: undefined });
      expect(long[1].task).toMatchObject({ id: long[1].id, state: TaskState.COMPLETED });
      const short = await events(['true']);
      expect(short.length).toBeLessThanOrEqual(2);
      expect(short[short.length - 1].task).toMatchObject({ id: short[0].id, state: TaskState.COMPLETED });
    } finally {
      raw.close();
    }
  });

  it('run: a bad spec is refused before anything is recorded; a caller that stops waiting leaves the task running', async () => {
    await expect(n.api.run(TaskSpec.fromPartial({ command: [] }))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.not.stringContaining('task ') });
    const ctrl = new AbortController();
    let id = '';
    const running = n.api.run(spec(['sh', '-c', 'sleep 0.3; exit 4']), { signal: ctrl.signal, onId: (i) => { id = i; ctrl.abort(); } });
    await expect(running).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(id).not.toBe('');
    expect(await n.api.wait(id)).toMatchObject({ state: TaskState.FAILED, exitCode: 4 });
  });

  it('keeps non-UTF-8 output as bytes', async () => {
    const [id] = await n.api.submit([spec(['printf', '\\377\\376ok'])]);
    await n.api.wait(id);
    const chunks: Buffer[] = [];
    for await (const c of n.api.logs(id, false)) chunks.push(Buffer.from(c.data));
    expect(Buffer.concat(chunks)).toEqual(Buffer.from([0xff, 0xfe, 0x6f, 0x6b]));
  });

  it('enforces a timeout', async () => {
    const [id] = await n.api.submit([spec(['sleep', '30'], { timeoutMs: 300 })]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.reason).toMatch(/timeout/);
  });

  it('retries a failing task and records every attempt', async () => {
    const [id] = await n.api.submit([spec(['sh', '-c', 'echo attempt $LOOM_ATTEMPT; exit 1'], { retries: 2 })]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.attempt).toBe(3);
    expect(t.history.map((h) => h.outcome)).toEqual(['exit 1', 'exit 1', 'exit 1']);
  });

  it('waits the backoff before each retry (exponential doubles it)', async () => {
    const [id] = await n.api.submit([spec(['sh', '-c', 'exit 1'], { retries: 2, backoffMs: 200, backoffExponential: true })]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.history).toHaveLength(3);
    expect(t.history[1].startedAtMs - t.history[0].finishedAtMs).toBeGreaterThanOrEqual(200);
    expect(t.history[2].startedAtMs - t.history[1].finishedAtMs).toBeGreaterThanOrEqual(400);
  });

  it('reports a missing program clearly', async () => {
    const [id] = await n.api.submit([spec(['no-such-program-xyz'])]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.reason).toMatch(/not found/);
  });

  it('cancels a queued task and a running one', async () => {
    const ids = await n.api.submit([spec(['sleep', '30']), spec(['sleep', '30']), spec(['sleep', '30'])]);
    await waitFor(async () => (await Promise.all(ids.map((i) => n.api.get(i)))).filter((t) => t.state === TaskState.RUNNING).length === 2, { what: 'two running' });
    const tasks = await Promise.all(ids.map((i) => n.api.get(i)));
    const queued = tasks.find((t) => t.state === TaskState.QUEUED)!;
    expect((await n.api.cancel(queued.id)).state).toBe(TaskState.CANCELLED);
    for (const t of tasks.filter((x) => x.state === TaskState.RUNNING)) await n.api.cancel(t.id);
    for (const t of tasks.filter((x) => x.state === TaskState.RUNNING)) {
      expect((await n.api.wait(t.id)).state).toBe(TaskState.CANCELLED);
    }
    await expect(n.api.cancel(queued.id)).rejects.toMatchObject({ code: 'INVALID_STATE' });
  });

  it('answers bad requests with stable codes', async () => {
    await expect(n.api.get('not-an-id')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(n.api.get('01890000-0000-7000-8000-000000000000')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(n.api.submit([spec(['true']), { ...spec(['true']), command: [] }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(n.api.submit([{ ...spec(['x']), command: ['x', 'y'.repeat(200_000)] }])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('LoomApi with several node addresses', () => {
  it('goes on to the next node when one cannot be reached; a change that may have reached a node is not sent again', async () => {
    const m = await startNode(uniqueRoot(), 'multi');
    const stalled = TcpProxy.fromUrl(`http://${m.node.address}`);
    await stalled.start();
    stalled.stall();
    const dead = `127.0.0.1:${await freePort()}`;
    const viaDead = new LoomApi([dead, m.node.address]);
    const viaStalled = new LoomApi(`${stalled.url.replace('http://', '')},${m.node.address}`, { deadlineMs: 500 });
    try {
      // Nothing listens at `dead`: a submit never left, so it goes to the next node.
      const [id] = await viaDead.submit([spec(['true'])]);
      expect(viaDead.address).toBe(m.node.address);
      expect((await viaDead.wait(id)).state).toBe(TaskState.COMPLETED);
      // The stalled address accepts connections and answers nothing: the submit may have
      // arrived, so it is not sent again (its error goes to the caller) ...
      const before = (await m.api.list({ pageSize: 100 })).tasks.length;
      await expect(viaStalled.submit([spec(['true'])])).rejects.toMatchObject({ code: expect.stringMatching(/^(UNAVAILABLE|DEADLINE_EXCEEDED)$/) });
      expect((await m.api.list({ pageSize: 100 })).tasks.length).toBe(before);
      // ... and the next call goes to the next node; a read after a timeout is sent again there.
      expect(viaStalled.address).toBe(m.node.address);
      expect((await viaStalled.get(id)).id).toBe(id);
      // Nobody answers: the error names every node tried.
      const dead2 = `127.0.0.1:${await freePort()}`;
      const none = new LoomApi([dead, dead2]);
      const err = await none.nodes().catch((e: LoomError) => e);
      none.close();
      expect(err).toMatchObject({ code: 'UNAVAILABLE' });
      expect((err as LoomError).message).toMatch(new RegExp(`^no loom node answers \\(cannot reach loom node at ${dead}: connection (refused|failed); cannot reach loom node at ${dead2}: connection (refused|failed)\\)$`));
    } finally {
      viaDead.close();
      viaStalled.close();
      await stopNode(m);
      await stalled.stop();
    }
  });
});

describe('--metrics-listen', () => {
  it('shows which etcd members answer; a member that stops answering reads 0 and the node keeps working through the other', async () => {
    const proxy = TcpProxy.fromUrl(testEtcdEndpoint());
    await proxy.start();
    const m = await startNode(uniqueRoot(), 'probing', { metricsListen: '127.0.0.1:0', etcdEndpoints: [testEtcdEndpoint(), proxy.url] });
    try {
      const up = async (endpoint: string) => {
        const text = await (await fetch(`http://127.0.0.1:${m.node.metricsPort}/metrics`)).text();
        return Number(new RegExp(`^loom_etcd_member_up\\{endpoint="${endpoint}"\\} (\\S+)$`, 'm').exec(text)?.[1]);
      };
      expect([await up(testEtcdEndpoint()), await up(proxy.url)]).toEqual([1, 1]);
      proxy.stall();
      await waitFor(async () => (await up(proxy.url)) === 0, { what: 'the stalled endpoint to read 0' });
      expect(await up(testEtcdEndpoint())).toBe(1);
      expect(m.logs.some((l) => l.includes(`etcd member ${proxy.url} does not answer`))).toBe(true);
      const [id] = await m.api.submit([spec(['true'])]);
      expect((await m.api.wait(id)).state).toBe(TaskState.COMPLETED);
      proxy.heal();
      await waitFor(async () => (await up(proxy.url)) === 1, { what: 'the endpoint to read 1 again' });
    } finally {
      await stopNode(m);
      await proxy.stop();
    }
  });

  it('serves the node\'s counters and gauges at GET /metrics, and nothing else', async () => {
    const m = await startNode(uniqueRoot(), 'metered', { slots: 3, metricsListen: '127.0.0.1:0' });
    try {
      expect(m.node.metricsPort).toBeGreaterThan(0);
      const [ok] = await m.api.submit([spec(['true'])]);
      const [bad] = await m.api.submit([spec(['sh', '-c', 'exit 2'])]);
      await m.api.wait(ok);
      await m.api.wait(bad);
      const res = await fetch(`http://127.0.0.1:${m.node.metricsPort}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      const value = (line: string) => Number(new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
      expect(value('loom_node_info{node="metered",version="0.1.0"}')).toBe(1);
      expect(value('loom_slots')).toBe(3);
      expect(value('loom_claims_total{via="queue"}') + value('loom_claims_total{via="submit"}')).toBe(2);
      expect(value('loom_task_results_total{state="completed"}')).toBe(1);
      expect(value('loom_task_results_total{state="failed"}')).toBe(1);
      expect(value('loom_lease_held')).toBe(1);
      expect(value('loom_fenced_total')).toBe(0);
      expect(value('process_resident_memory_bytes')).toBeGreaterThan(1e6);
      expect((await fetch(`http://127.0.0.1:${m.node.metricsPort}/`)).status).toBe(404);
      expect((await fetch(`http://127.0.0.1:${m.node.metricsPort}/metrics`, { method: 'POST' })).status).toBe(404);
    } finally {
      await stopNode(m);
    }
  });
});

describe('two nodes sharing a queue', () => {
  it('spreads work and requeues the tasks of a node whose lease lapses (fencing)', async () => {
    const root = uniqueRoot();
    const { TcpProxy } = await import('../support/tcp-proxy');
    const { testEtcdEndpoint } = await import('../support/etcd');
    const proxy = TcpProxy.fromUrl(testEtcdEndpoint());
    await proxy.start();
    const a = await startNode(root, 'a', { slots: 2, leaseTtlSeconds: 2, etcdEndpoints: [proxy.url] });
    const pidFile = sharedFile(sharedTmpDir('loom-pids-'), 'pids');
    let b: TestNode | undefined;
    try {
      const ids = await a.api.submit([
        spec(['sh', '-c', `echo $$ >> ${pidFile}; exec sleep 30`]),
        spec(['sh', '-c', `echo $$ >> ${pidFile}; exec sleep 30`]),
      ]);
      await waitFor(async () => (await Promise.all(ids.map((i) => a.api.get(i)))).every((t) => t.state === TaskState.RUNNING && t.node === 'a'), { what: 'both running on a' });
      await waitFor(() => fs.existsSync(pidFile) && fs.readFileSync(pidFile, 'utf8').trim().split('\n').length === 2, { what: 'pids written' });
      b = await startNode(root, 'b', { slots: 2 });
      const firstPids = fs.readFileSync(pidFile, 'utf8').trim().split('\n').map(Number);
      proxy.partition();
      // a fences itself (kills its copies) before its lease can expire; b requeues and runs them.
      await waitFor(async () => (await Promise.all(ids.map((i) => b!.api.get(i)))).every((t) => t.state === TaskState.RUNNING && t.node === 'b' && t.attempt === 2), { what: 'tasks running again on b', timeoutMs: 20_000 });
      for (const pid of firstPids) expect(() => process.kill(pid, 0)).toThrow();
      const t = await b.api.get(ids[0]);
      expect(t.history[0]).toMatchObject({ node: 'a', outcome: 'node lost' });
      expect(t.nodeLosses).toBe(1); // one of the --max-node-losses (3) it may cost before it fails
      expect(a.logs.some((l) => /FENCED/.test(l))).toBe(true);
      proxy.heal();
      await waitFor(() => a.logs.some((l) => /rejoined/.test(l)), { what: 'a rejoins', timeoutMs: 20_000 });
      for (const id of ids) await b.api.cancel(id);
    } finally {
      if (b) await stopNode(b);
      await stopNode(a);
      await proxy.stop();
      fs.rmSync(path.dirname(pidFile), { recursive: true, force: true });
    }
  });
});

describe('drain', () => {
  it('moves no new work to a drained node and requeues its tasks at the deadline', async () => {
    const root = uniqueRoot();
    const a = await startNode(root, 'da', { slots: 2 });
    let b: TestNode | undefined;
    try {
      const [long] = await a.api.submit([spec(['sleep', '30'])]);
      await waitFor(async () => (await a.api.get(long)).state === TaskState.RUNNING, { what: 'running on da' });
      b = await startNode(root, 'db', { slots: 2 });
      await a.api.drain('da', true, 300);
      await waitFor(async () => (await b!.api.nodes()).find((n) => n.name === 'da')?.draining === true, { what: 'da shows draining' });
      const ids = await b.api.submit(Array.from({ length: 6 }, () => spec(['true'])));
      for (const id of ids) expect((await b.api.wait(id)).node).toBe('db');
      await waitFor(async () => {
        const t = await b!.api.get(long);
        return t.state === TaskState.RUNNING && t.node === 'db';
      }, { what: 'the long task requeued at the deadline and running on db' });
      expect((await b.api.get(long)).history[0]).toMatchObject({ node: 'da', outcome: 'node da drained' });
      await a.api.drain('da', false);
      await waitFor(async () => (await b!.api.nodes()).find((n) => n.name === 'da')?.draining === false, { what: 'da resumed' });
      await expect(a.api.drain('nope', true)).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await b.api.cancel(long);
    } finally {
      if (b) await stopNode(b);
      await stopNode(a);
    }
  });
});
