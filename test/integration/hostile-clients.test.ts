/**
 * Bad input against a live node over real gRPC: malformed bytes, unknown
 * enum values, oversized requests, thousands of log streams opened and
 * dropped, clients that vanish mid-stream. After each, the node still
 * answers, and every refusal carries loom's stable code.
 */
import { fork } from 'child_process';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { LoomClient, TaskSpec, TaskState } from '../../src/gen/loom';
import { API_LIMITS } from '../../src/node/api-server';
import { uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(120_000);

const identity = (b: Buffer): Buffer => b;

/** A unary call with raw request bytes; resolves to the error (or null). */
function rawUnary(address: string, method: string, body: Buffer): Promise<grpc.ServiceError | null> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1 });
  return new Promise((resolve) => {
    client.makeUnaryRequest(`/loom.v1.Loom/${method}`, identity, identity, body, (err) => {
      client.close();
      resolve(err ?? null);
    });
  });
}

function loomCode(err: grpc.ServiceError | null): string | undefined {
  return err?.metadata?.get('loom-code')[0]?.toString();
}

describe('a node under hostile clients', () => {
  let n: TestNode;
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'hostile', { slots: 2 });
  });
  afterAll(() => stopNode(n));

  async function stillAnswers(): Promise<void> {
    const [id] = await n.api.submit([spec(['true'])]);
    expect((await n.api.wait(id)).state).toBe(TaskState.COMPLETED);
  }

  it('answers garbage bytes with INVALID_ARGUMENT on every method', async () => {
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0xff, 0x01]);
    for (const method of ['Submit', 'Get', 'List', 'Cancel', 'Wait', 'Nodes', 'Drain', 'SubmitJob', 'GetJob', 'ListJobs', 'CancelJob']) {
      const err = await rawUnary(n.node.address, method, garbage);
      expect(err?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(loomCode(err)).toBe('INVALID_ARGUMENT');
      expect(err?.details).toMatch(/malformed request/);
    }
    await stillAnswers();
  });

  it('rejects an unknown enum value with a clear message', async () => {
    // ListRequest { state = 99 }: field 1, varint.
    const err = await rawUnary(n.node.address, 'List', Buffer.from([0x08, 99]));
    expect(loomCode(err)).toBe('INVALID_ARGUMENT');
    expect(err?.details).toMatch(/state/i);
    await stillAnswers();
  });

  it('refuses oversized requests and argv/env over the limits, naming the limit', async () => {
    const big = Buffer.alloc(20 * 1024 * 1024, 0x41);
    const err = await rawUnary(n.node.address, 'Submit', big);
    expect(err?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // Built raw: the client library would refuse these before sending.
    const raw = (command: string[], env: Record<string, string> = {}) => ({ name: '', command, env, cwd: '', timeoutMs: 0, retries: 0 }) as TaskSpec;
    await expect(n.api.submit([raw(['true'], { HUGE: 'x'.repeat(200_000) })])).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/env .*limit/),
    });
    await expect(n.api.submit([raw(['echo', ...Array.from({ length: 5000 }, () => 'y'.repeat(100))])])).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringMatching(/limit/),
    });
    await stillAnswers();
  });

  it(`survives ${API_LIMITS.logStreamsPerNode} concurrent log streams opened and dropped, and refuses one more`, async () => {
    const [id] = await n.api.submit([spec(['sh', '-c', 'echo ready; exec sleep 60'])]);
    await waitFor(async () => (await n.api.get(id)).state === TaskState.RUNNING, { what: 'task running' });
    // Spread over a few connections, as many clients would, in a process of
    // their own (see log-stream-flood.ts).
    const flood = fork(path.join(__dirname, '../support/log-stream-flood.js'), [n.node.address, id, String(API_LIMITS.logStreamsPerNode)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const next = <T>(key: string): Promise<T> =>
      new Promise((resolve, reject) => {
        const onMessage = (m: Record<string, unknown>) => {
          if (!(key in m)) return;
          flood.off('message', onMessage);
          resolve(m as T);
        };
        flood.on('message', onMessage);
        flood.once('exit', (code) => reject(new Error(`log-stream-flood exited (${code}) before '${key}'`)));
      });
    const connect = () => new LoomClient(n.node.address, grpc.credentials.createInsecure());
    const fresh = connect();
    try {
      const opened = next<{ errors: string[] }>('open');
      const extraReply = next<{ extra: { code: number; details: string } }>('extra');
      expect((await opened).errors).toEqual([]);
      // The node is full: one more is refused with the limit in the message.
      const { extra } = await extraReply;
      expect(extra.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(extra.details).toMatch(new RegExp(`limit ${API_LIMITS.logStreamsPerNode}`));
      // Drop them all: half cancelled, the other half by closing their client mid-stream.
      const dropped = next('dropped');
      flood.send({ drop: true });
      await dropped;
      // Every slot comes back: a fresh stream is served again.
      await waitFor(async () => {
        const got = await new Promise<boolean>((resolve) => {
          const call = fresh.logs({ id, follow: true, attempt: 0 });
          call.on('data', () => {
            call.cancel();
            resolve(true);
          });
          call.on('error', (e: grpc.ServiceError) => resolve(e.code === grpc.status.CANCELLED));
        });
        return got;
      }, { what: 'a log stream is served after the others were dropped', timeoutMs: 30_000 });
      // The burst did not starve the node's heartbeats.
      expect(n.logs.filter((l) => /FENCED/.test(l))).toEqual([]);
      await n.api.cancel(id);
      expect((await n.api.wait(id)).state).toBe(TaskState.CANCELLED);
      await stillAnswers();
    } finally {
      fresh.close();
      flood.kill('SIGKILL');
    }
  });
});
