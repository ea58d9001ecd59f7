/**
 * Free TCP ports for the test suite, the chaos harness and the benchmarks.
 *
 * A port from bind(0) lies in the kernel's ephemeral range, which outgoing
 * connections use too: between the check and the moment etcd or a node binds
 * it, another process's connect() can take it ("address already in use" at a
 * chaos cluster's start, seen here). So ports are picked at random below that
 * range, where no connect() is ever given a port, checked by binding them,
 * and never handed out twice by one process. If the ephemeral range starts
 * too low to leave room, bind(0) it is.
 */
import * as fs from 'fs';
import * as net from 'net';

const handedOut = new Set<number>();
/** Lowest port picked at random. */
const LOW = 10_000;

function ephemeralLow(): number {
  try {
    const [low] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return Number.isInteger(low) ? low : 32768;
  } catch {
    return 32768;
  }
}

function bindable(port: number, host: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(undefined));
    srv.listen(port, host, () => {
      const got = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(got));
    });
  });
}

/** A TCP port nothing listens on at `host`, outside the ephemeral range when there is room. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const high = ephemeralLow() - 1;
  for (let tries = 0; high - LOW >= 1000 && tries < 200; tries++) {
    const port = LOW + Math.floor(Math.random() * (high - LOW + 1));
    if (handedOut.has(port)) continue;
    if ((await bindable(port, host)) === port) {
      handedOut.add(port);
      return port;
    }
  }
  for (;;) {
    const port = await bindable(0, host);
    if (port === undefined) throw new Error(`cannot bind a port on ${host}`);
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

/** n distinct free ports. */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(await freePort(host));
  return out;
}
