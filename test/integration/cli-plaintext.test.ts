/**
 * The CLI (the real executable) refuses to send a request in plaintext to a
 * node that is not on a loopback address, as a node refuses to listen there,
 * unless --insecure or LOOM_INSECURE=1. The node here listens on every
 * address (with --insecure), and is dialled at this machine's own
 * non-loopback address.
 */
import * as os from 'os';
import { uniqueRoot } from '../support/etcd';
import { startNode, stopNode, TestNode } from '../support/nodes';
import { cli } from '../support/cluster';

jest.setTimeout(60_000);

/** This machine's first non-loopback IPv4 address (the test needs one: it says so if there is none). */
function ownAddress(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('this machine has no non-loopback IPv4 address to dial the node at');
}

describe('the CLI and plaintext beyond loopback', () => {
  let n: TestNode;
  let remote: string;
  let local: string;
  // No TLS identity and no LOOM_INSECURE from the environment the tests run in.
  const plain = { LOOM_INSECURE: '', LOOM_TLS_CA: '', LOOM_TLS_CERT: '', LOOM_TLS_KEY: '', LOOM_NODE: '' };
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'wide', { listen: '0.0.0.0:0', insecure: true });
    const port = /:(\d+)$/.exec(n.node.address)![1];
    remote = `${ownAddress()}:${port}`;
    local = `127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await stopNode(n);
  });

  it('refuses, exit 2, naming the address and the two ways out', async () => {
    for (const args of [['-N', remote, 'nodes'], ['-N', `${local},${remote}`, 'nodes'], ['run', '-N', remote, 'true'], ['-N', remote, 'list']]) {
      const r = await cli(args, plain);
      expect([args, r.code, r.stdout]).toEqual([args, 2, '']);
      expect(r.stderr).toBe(
        `loom: refusing to send a request in plaintext to ${remote} (not a loopback address): set LOOM_TLS_CA, LOOM_TLS_CERT and LOOM_TLS_KEY ` +
          'for mutual TLS, or pass --insecure (LOOM_INSECURE=1) to accept that the command, its env and its output cross the network in clear\n',
      );
    }
  });

  it('sends with --insecure or LOOM_INSECURE=1, and to loopback without either', async () => {
    for (const [args, env] of [
      [['-N', remote, '--insecure', 'nodes'], plain],
      [['-N', remote, 'nodes'], { ...plain, LOOM_INSECURE: '1' }],
      [['-N', local, 'nodes'], plain],
    ] as const) {
      const r = await cli([...args], env);
      expect([args, r.code, r.stderr]).toEqual([args, 0, '']);
      expect(r.stdout).toMatch(/\bwide\b/);
    }
    const run = await cli(['run', '-N', remote, '--insecure', 'echo', 'sent'], plain);
    expect([run.code, run.stdout]).toEqual([0, 'sent\n']);
  });
});
