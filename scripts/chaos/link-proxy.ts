/**
 * A loopback TCP proxy in front of one etcd member's peer or client port that
 * knows which process each connection comes from, so that the harness can cut
 * the links between one member node (its node process and its etcd member)
 * and the rest of the cluster while both sides keep running: a network
 * partition, on a host where every connection comes from 127.0.0.1.
 *
 * The sender is found the way `ss -p` finds it: the client end of the
 * connection is the line of /proc/net/tcp whose local port is the remote port
 * the proxy sees; its inode is held by exactly one process, which has a
 * /proc/<pid>/fd link "socket:[inode]". Connections are long-lived (gRPC
 * channels, raft streams), so this runs rarely.
 *
 * Each connection gets a verdict from the harness's policy: 'pass', 'drop'
 * (kept open, nothing passes either way: lost packets) or 'reset' (closed;
 * new ones are closed at once: connection refused). apply() re-judges every
 * open connection after the policy changed.
 */
import * as fs from 'fs';
import * as net from 'net';

export type Verdict = 'pass' | 'drop' | 'reset';

/** Which side a connection from `from` (a group name, or undefined: unknown sender) to this proxy's member is on. */
export type LinkPolicy = (from: string | undefined, to: string) => Verdict;

interface Link {
  client: net.Socket;
  upstream: net.Socket | undefined;
  from: string | undefined;
  verdict: Verdict;
}

export class LinkProxy {
  private server: net.Server | undefined;
  private readonly links = new Set<Link>();
  port = 0;

  constructor(
    private readonly target: { host: string; port: number },
    /** The member this proxy stands in front of. */
    readonly to: string,
    /** The group (node name) of a pid: the node process or its etcd member. */
    private readonly groupOf: (pid: number) => string | undefined,
    /** pids that may hold the sender's socket (node processes and etcd members). */
    private readonly candidates: () => number[],
    private readonly policy: LinkPolicy,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = net.createServer((client) => this.accept(client));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server!.address() as net.AddressInfo).port;
  }

  private accept(client: net.Socket): void {
    client.pause();
    client.on('error', () => client.destroy());
    const from = this.identify(client.remotePort ?? 0);
    const link: Link = { client, upstream: undefined, from, verdict: this.policy(from, this.to) };
    if (link.verdict === 'reset') {
      client.destroy();
      return;
    }
    const upstream = net.connect(this.target.port, this.target.host);
    link.upstream = upstream;
    upstream.on('error', () => upstream.destroy());
    this.links.add(link);
    const forward = (src: net.Socket, dst: net.Socket) =>
      src.on('data', (chunk) => {
        if (!dst.write(chunk)) {
          src.pause();
          dst.once('drain', () => link.verdict === 'pass' && src.resume());
        }
      });
    forward(client, upstream);
    forward(upstream, client);
    const close = () => {
      this.links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', close);
    upstream.on('close', close);
    if (link.verdict === 'pass') client.resume();
    else upstream.pause();
  }

  /** Re-judges every open connection (after the policy changed). */
  apply(): void {
    for (const link of [...this.links]) {
      const v = this.policy(link.from, this.to);
      if (v === link.verdict) continue;
      link.verdict = v;
      if (v === 'reset') {
        link.client.destroy();
        link.upstream?.destroy();
      } else if (v === 'drop') {
        link.client.pause();
        link.upstream?.pause();
      } else {
        link.client.resume();
        link.upstream?.resume();
      }
    }
  }

  async stop(): Promise<void> {
    for (const link of this.links) {
      link.client.destroy();
      link.upstream?.destroy();
    }
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }

  /** The group of the process whose socket has local port `port` and this proxy as its peer. */
  private identify(port: number): string | undefined {
    const inode = clientInode(port, this.port);
    if (inode === undefined) return undefined;
    const link = `socket:[${inode}]`;
    for (const pid of this.candidates()) {
      let fds: string[];
      try {
        fds = fs.readdirSync(`/proc/${pid}/fd`);
      } catch {
        continue;
      }
      for (const fd of fds) {
        try {
          if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === link) return this.groupOf(pid);
        } catch {
          // closed meanwhile
        }
      }
    }
    return undefined;
  }
}

/** Inode of the loopback socket 127.0.0.1:localPort → 127.0.0.1:remotePort, from /proc/net/tcp. */
export function clientInode(localPort: number, remotePort: number, table = readTcpTable()): string | undefined {
  const local = `0100007F:${hex4(localPort)}`;
  const remote = `0100007F:${hex4(remotePort)}`;
  for (const line of table.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[1] === local && f[2] === remote) return f[9];
  }
  return undefined;
}

function hex4(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0');
}

function readTcpTable(): string {
  try {
    return fs.readFileSync('/proc/net/tcp', 'latin1');
  } catch {
    return '';
  }
}
