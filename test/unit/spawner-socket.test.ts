/**
 * The spawner's unix socket against strangers: raw connections that never
 * send the 42-byte header (or only part of it) are closed after the header
 * deadline, at most MAX_UNIDENTIFIED (+2 per request in flight) are held at
 * once, and the real helper's connections still get through while they are
 * there. Real loom-spawner binary, real sockets.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { Readable } from 'stream';
import { MAX_UNIDENTIFIED, Spawner } from '../../src/runner/spawner';
import { waitFor } from '../support/etcd';

jest.setTimeout(30_000);

const HEADER_TIMEOUT_MS = 500;

/** A raw client that sends `send` (if anything) and then nothing; `closed` settles when the server closes it. */
function stranger(socketPath: string, send = ''): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    socket.once('error', () => undefined);
    socket.once('connect', () => {
      if (send) socket.write(send);
      resolve({ socket, closed });
    });
    socket.once('error', reject);
  });
}

/** Starts `sh -c script` through the helper; resolves with its stdout and exit code. */
function runThrough(spawner: Spawner, script: string): Promise<{ stdout: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let code: number | null | undefined;
    let outDone = false;
    const finish = () => code !== undefined && outDone && resolve({ stdout, code });
    spawner.spawn({ argv: ['sh', '-c', script], env: { PATH: process.env.PATH ?? '/usr/bin:/bin' }, cwd: '' }, {
      started: () => undefined,
      failed: (why) => reject(new Error(`not started by the helper: ${why}`)),
      late: () => reject(new Error('late')),
      stream: (id: 1 | 2, s: Readable) => {
        if (id === 2) return void s.resume();
        s.setEncoding('utf8');
        s.on('data', (d: string) => (stdout += d));
        s.once('end', () => {
          outDone = true;
          finish();
        });
      },
      exited: (c) => {
        code = c;
        finish();
      },
      lost: (why) => reject(new Error(why)),
    });
  });
}

describe('the spawner socket', () => {
  let dir: string;
  let spawner: Spawner;
  const log: string[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-spawner-sock-'));
    const s = await Spawner.start({ socketPath: path.join(dir, 's.sock'), log: (m) => log.push(m), headerTimeoutMs: HEADER_TIMEOUT_MS });
    if (!s) throw new Error(`loom-spawner did not start: ${log.join('; ')}`);
    spawner = s;
  });
  afterAll(async () => {
    await spawner?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('closes connections that send no header, or half of one, after the deadline', async () => {
    const silent = await stranger(path.join(dir, 's.sock'));
    const partial = await stranger(path.join(dir, 's.sock'), 'x'.repeat(20));
    const t0 = Date.now();
    await Promise.all([silent.closed, partial.closed]);
    const waited = Date.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(HEADER_TIMEOUT_MS - 100);
    expect(waited).toBeLessThan(HEADER_TIMEOUT_MS + 2000);
    expect(spawner.unidentifiedCount).toBe(0);
    expect(log.filter((l) => l.includes('connection(s) to'))).toEqual([
      expect.stringMatching(/^spawner: closed 1 connection\(s\) to .*s\.sock \(no header within 500 ms\); only loom-spawner should connect there$/),
    ]);
  });

  it('holds a bounded number of them, and the helper still starts tasks among them', async () => {
    const before = spawner.droppedTotal;
    const many = 400;
    const clients = await Promise.all(Array.from({ length: many }, () => stranger(path.join(dir, 's.sock'))));
    // All accepted (a client's connect can complete before the node accepts it,
    // so wait for every one to be either held or closed), yet the node holds
    // no more than the cap: the oldest were closed.
    await waitFor(() => spawner.droppedTotal - before + spawner.unidentifiedCount === many, { what: 'the node to accept every connection' });
    expect(spawner.unidentifiedCount).toBeLessThanOrEqual(MAX_UNIDENTIFIED);
    expect(spawner.droppedTotal - before).toBeGreaterThanOrEqual(many - MAX_UNIDENTIFIED);
    // The helper's two connections get in past a full house of strangers.
    expect(await runThrough(spawner, 'echo started by the helper')).toEqual({ stdout: 'started by the helper\n', code: 0 });
    // And every stranger is gone by the deadline.
    await Promise.all(clients.map((c) => c.closed));
    expect(spawner.unidentifiedCount).toBe(0);
    expect(spawner.droppedTotal - before).toBe(many);
    expect(spawner.usable).toBe(true);
  });
});
