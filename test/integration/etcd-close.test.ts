/**
 * A closed etcd client lets its process exit, even with a watch open or a
 * cancel still in flight. etcd3's own close() does not: its watch manager
 * retries the failed stream every couple of seconds forever. A node that
 * stops, or a CLI that watched a task, must not hang on that. Each case runs
 * in a child process that has nothing else to do once the client is closed.
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { testEtcdEndpoint, uniqueRoot } from '../support/etcd';

const CLIENT = path.resolve(__dirname, '../../src/etcd/client.js');
const EXIT_WITHIN_MS = 15_000;
jest.setTimeout(EXIT_WITHIN_MS + 10_000);

function child(body: string): Promise<{ code: number | null; stderr: string; exitedInTime: boolean }> {
  const script = `
    const { connectEtcd, Kv } = require(${JSON.stringify(CLIENT)});
    (async () => {
      const kv = new Kv(connectEtcd({ endpoints: [${JSON.stringify(testEtcdEndpoint())}] }));
      ${body}
      process.stdout.write('closed\\n');
    })().catch((err) => { console.error(err); process.exit(3); });`;
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      resolve({ code: null, stderr, exitedInTime: false });
    }, EXIT_WITHIN_MS);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, exitedInTime: true });
    });
  });
}

it('exits after closing a client with a watch still open', async () => {
  const root = JSON.stringify(uniqueRoot());
  const r = await child(`
      const w = await kv.client.watch().prefix(${root}).create();
      await kv.client.put(${root} + '/k').value('v');
      kv.close();`);
  expect(r).toEqual({ code: 0, stderr: '', exitedInTime: true });
});

// With the cancel in flight the manager still lists the watcher: dropping it
// must not make the cancel's answer throw inside etcd3 (a node would crash).
it('exits after closing a client right after asking a watch to cancel', async () => {
  const root = JSON.stringify(uniqueRoot());
  const r = await child(`
      const w = await kv.client.watch().prefix(${root}).create();
      void w.cancel().catch(() => undefined);
      kv.close();`);
  expect(r).toEqual({ code: 0, stderr: '', exitedInTime: true });
});
