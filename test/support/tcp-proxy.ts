/**
 * A TCP proxy on loopback that a test can cut and restore, to simulate a
 * partition between a client and etcd (new connections are refused and
 * existing ones destroyed while cut), or stall (connections stay open and
 * nothing passes).
 */
import * as net from 'net';

export class TcpProxy {
  private server: net.Server | undefined;
  private sockets = new Set<net.Socket>();
  private cut = false;
  private stalled = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  static fromUrl(url: string): TcpProxy {
    const u = new URL(url);
    return new TcpProxy({ host: u.hostname, port: Number(u.port) });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = net.createServer((client) => {
      if (this.cut) {
        client.destroy();
        return;
      }
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      const forward = (from: net.Socket, to: net.Socket) =>
        from.on('data', (chunk) => {
          if (!to.write(chunk)) {
            from.pause();
            to.once('drain', () => this.stalled || from.resume());
          }
        });
      forward(client, upstream);
      forward(upstream, client);
      if (this.stalled) for (const s of [client, upstream]) s.pause();
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server!.address() as net.AddressInfo).port;
  }

  /** Drop every connection and refuse new ones. */
  partition(): void {
    this.cut = true;
    for (const s of this.sockets) s.destroy();
  }

  /**
   * Keep every connection open but pass nothing either way (an etcd that has
   * lost quorum: requests wait for their deadlines). heal() lets data flow again.
   */
  stall(): void {
    this.stalled = true;
    for (const s of this.sockets) s.pause();
  }

  heal(): void {
    this.cut = false;
    this.stalled = false;
    for (const s of this.sockets) s.resume();
  }

  async stop(): Promise<void> {
    this.partition();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }
}
