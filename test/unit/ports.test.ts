/** The test/chaos/bench port picker: free, distinct, below the ephemeral range (test/support/ports.ts). */
import * as fs from 'fs';
import * as net from 'net';
import { freePort, freePorts } from '../support/ports';

const ephemeralLow = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);

it('hands out distinct ports below the ephemeral range that can be bound', async () => {
  const ports = [...(await freePorts(20)), await freePort()];
  expect(new Set(ports).size).toBe(ports.length);
  for (const p of ports) {
    if (ephemeralLow > 11_000) expect(p).toBeLessThan(ephemeralLow);
    const srv = net.createServer();
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(p, '127.0.0.1', () => resolve());
    });
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
