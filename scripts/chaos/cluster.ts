/**
 * The chaos cluster: 5 real `loom node` processes on free loopback ports.
 *   n1, n2, n3  each embed an etcd member (a 3-member etcd cluster); each
 *               member advertises (--peer-advertise, --client-advertise) a
 *               LinkProxy of the harness in front of its peer and client
 *               ports, which the partition-member fault uses to cut one
 *               member node (node and member) off from the others
 *   w1, w2      worker-only, `--etcd` with the three members' client URLs,
 *               each through a TCP proxy of the harness's own (one per member
 *               and worker) that the partition-node fault cuts or stalls
 * The harness's own etcd client goes through proxies too (harnessUrls), so
 * that it can skip a partitioned member.
 *
 * Each node's stdout/stderr go to <dir>/<name>/node.log. The harness only ever
 * signals processes it started itself: the node processes (by the pid of the
 * child it spawned) and etcd members it restarted after a member fault. The
 * pid of a node's embedded etcd member is read off the node's own log line
 * `etcd member "<name>" started (pid N)`.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { NODE_RUNTIME_FLAGS } from '../../src/bin/runtime-flags';
import { TcpProxy } from '../../test/support/tcp-proxy';
import { freePort } from '../../test/support/ports';
import { LinkProxy, Verdict } from './link-proxy';

export const LOOM_BIN = path.resolve(__dirname, '../../src/bin/loom.js');

export { freePort };

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface ClusterOptions {
  dir: string;
  slots: number;
  leaseTtlS: number;
  log: (msg: string) => void;
}

/** An etcd member the harness restarted itself (the node does not restart it). */
interface OwnMember {
  proc: ChildProcess;
  exited: Promise<void>;
}

export interface SavedMember {
  pid: number;
  argv: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export class ChaosNode {
  proc: ChildProcess | undefined;
  /** Log size when the current process was started (its lines come after). */
  private logOffset = 0;
  private exitedP: Promise<void> = Promise.resolve();
  paused = false;
  starts = 0;
  ownMember: OwnMember | undefined;

  constructor(
    readonly name: string,
    readonly role: 'member' | 'worker',
    readonly api: string,
    readonly dataDir: string,
    readonly args: string[],
    /** For members: their etcd client URL. */
    readonly clientUrl?: string,
    /** For workers: the proxies their etcd traffic goes through (one per member). */
    readonly etcdProxies: TcpProxy[] = [],
    /** For members: the proxies in front of their peer and client ports. */
    readonly linkProxies: LinkProxy[] = [],
  ) {}
  /** memberPid() of the current process, once its log has it. */
  private memberPidSeen: number | undefined;

  get logPath(): string {
    return path.join(this.dataDir, 'node.log');
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts the node with its arguments (plus `extra`, for this start only). */
  start(extra: string[] = []): void {
    if (this.running) throw new Error(`node ${this.name} is already running`);
    fs.mkdirSync(this.dataDir, { recursive: true });
    const fd = fs.openSync(this.logPath, 'a');
    this.logOffset = fs.fstatSync(fd).size;
    fs.writeSync(fd, `--- chaos harness ${new Date().toISOString()}: starting node ${this.name} (start #${this.starts + 1})\n`);
    this.logOffset = fs.fstatSync(fd).size;
    const proc = spawn(process.execPath, [...NODE_RUNTIME_FLAGS, LOOM_BIN, 'node', ...this.args, ...extra], { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    this.proc = proc;
    this.memberPidSeen = undefined;
    this.paused = false;
    this.starts++;
    this.exitedP = new Promise((r) => proc.once('exit', () => r()));
  }

  /** What the current process has logged so far. */
  output(): string {
    try {
      const buf = fs.readFileSync(this.logPath);
      return buf.subarray(this.logOffset).toString('utf8');
    } catch {
      return '';
    }
  }

  async waitUp(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const re = new RegExp(`node ${this.name} up: `);
    for (;;) {
      const out = this.output();
      if (re.test(out)) return;
      if (!this.running) throw new Error(`node ${this.name} exited while starting:\n${tail(out, 15)}`);
      if (Date.now() > deadline) throw new Error(`node ${this.name} not up after ${timeoutMs} ms:\n${tail(out, 15)}`);
      await sleep(100);
    }
  }

  signal(sig: NodeJS.Signals): void {
    const pid = this.pid;
    if (pid === undefined || !this.running) throw new Error(`node ${this.name} is not running`);
    process.kill(pid, sig);
    if (sig === 'SIGSTOP') this.paused = true;
    if (sig === 'SIGCONT') this.paused = false;
  }

  async waitExit(timeoutMs: number): Promise<boolean> {
    if (!this.running) return true;
    return Promise.race([this.exitedP.then(() => true), sleep(timeoutMs).then(() => false)]);
  }

  /** pid of the embedded etcd member the current process started (from its log). */
  memberPid(): number | undefined {
    if (this.ownMember) return this.ownMember.proc.pid;
    if (this.memberPidSeen !== undefined) return this.memberPidSeen;
    const re = new RegExp(`etcd member "${this.name}" started \\(pid (\\d+)\\)`, 'g');
    let pid: number | undefined;
    for (const m of this.output().matchAll(re)) pid = Number(m[1]);
    this.memberPidSeen = pid;
    return pid;
  }
}

export class ChaosCluster {
  readonly nodes: ChaosNode[] = [];
  /** The members' own client ports (no proxy). */
  readonly clientUrls: string[] = [];
  /** The harness's way to the members: one TcpProxy each (see isolate()). */
  readonly harnessProxies: TcpProxy[] = [];
  /** partition-member: the member node cut off from the rest, and how. */
  private isolated: { name: string; mode: 'drop' | 'reset' } | undefined;

  private constructor(readonly opts: ClusterOptions) {}

  static async create(opts: ClusterOptions): Promise<ChaosCluster> {
    const c = new ChaosCluster(opts);
    const members: { name: string; api: string; peer: number; client: number }[] = [];
    for (const name of ['n1', 'n2', 'n3']) {
      members.push({ name, api: `127.0.0.1:${await freePort()}`, peer: await freePort(), client: await freePort() });
    }
    c.clientUrls.push(...members.map((m) => `http://127.0.0.1:${m.client}`));
    // Ports handed out above but not yet bound (members start later).
    const reserved = new Set(members.flatMap((m) => [m.peer, m.client, Number(m.api.split(':')[1])]));
    const common = ['--slots', String(opts.slots), '--lease-ttl', String(opts.leaseTtlS), '--shutdown-grace', '2s', '--kill-grace', '1s'];
    const links = new Map<string, { peer: LinkProxy; client: LinkProxy }>();
    for (const m of members) {
      const make = (port: number) =>
        startFree(() => new LinkProxy({ host: '127.0.0.1', port }, m.name, (pid) => c.groupOf(pid), () => c.knownPids(), (from, to) => c.verdict(from, to)), reserved);
      links.set(m.name, { peer: await make(m.peer), client: await make(m.client) });
    }
    for (const m of members) {
      const dataDir = path.join(opts.dir, m.name);
      const own = links.get(m.name)!;
      const args = [
        '--name', m.name, '--listen', m.api, '--data-dir', dataDir,
        '--peer-listen', `http://127.0.0.1:${m.peer}`, '--client-listen', `http://127.0.0.1:${m.client}`,
        '--peer-advertise', own.peer.url, '--client-advertise', own.client.url,
        ...members.filter((o) => o !== m).flatMap((o) => ['--peer', `${o.name}=${links.get(o.name)!.peer.url}`]),
        ...common,
      ];
      c.nodes.push(new ChaosNode(m.name, 'member', m.api, dataDir, args, `http://127.0.0.1:${m.client}`, [], [own.peer, own.client]));
    }
    for (const u of c.clientUrls) c.harnessProxies.push(await startProxy(u, reserved));
    for (const name of ['w1', 'w2']) {
      const api = `127.0.0.1:${await freePort()}`;
      reserved.add(Number(api.split(':')[1]));
      const dataDir = path.join(opts.dir, name);
      const proxies: TcpProxy[] = [];
      for (const u of c.clientUrls) proxies.push(await startProxy(u, reserved));
      const args = ['--name', name, '--listen', api, '--data-dir', dataDir, '--etcd', proxies.map((p) => p.url).join(','), ...common];
      c.nodes.push(new ChaosNode(name, 'worker', api, dataDir, args, undefined, proxies));
    }
    return c;
  }

  node(name: string): ChaosNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name}`);
    return n;
  }

  get members(): ChaosNode[] {
    return this.nodes.filter((n) => n.role === 'member');
  }

  /** URLs of the harness's own proxies to the members, for its etcd client. */
  get harnessUrls(): string[] {
    return this.harnessProxies.map((p) => p.url);
  }

  /** The node a pid belongs to: its own process or the etcd member it runs. */
  groupOf(pid: number): string | undefined {
    return this.nodes.find((n) => n.pid === pid || n.memberPid() === pid)?.name;
  }

  knownPids(): number[] {
    return this.nodes.flatMap((n) => [n.running ? n.pid : undefined, n.role === 'member' ? n.memberPid() : undefined]).filter((p): p is number => p !== undefined);
  }

  /** LinkProxy policy: a link across the partition (exactly one end isolated) is cut. */
  verdict(from: string | undefined, to: string): Verdict {
    const iso = this.isolated;
    if (!iso || from === undefined || from === to) return 'pass';
    return (from === iso.name) !== (to === iso.name) ? iso.mode : 'pass';
  }

  /**
   * partition-member: cuts a member node (its node process and its etcd
   * member) off from every other node and member, both ways, while all keep
   * running: the members' peer and client proxies cut the links across the
   * partition ('drop': open connections pass nothing; 'reset': closed and
   * refused), and the workers' proxies to this member are cut the same way.
   * The harness's own proxy to it refuses connections, so the harness reads
   * from the majority without waiting out deadlines.
   */
  isolate(n: ChaosNode, mode: 'drop' | 'reset'): void {
    if (n.role !== 'member') throw new Error(`node ${n.name} embeds no etcd member`);
    const i = this.members.indexOf(n);
    this.isolated = { name: n.name, mode };
    for (const m of this.members) for (const p of m.linkProxies) p.apply();
    for (const w of this.nodes) {
      const p = w.etcdProxies[i];
      if (p && mode === 'drop') p.stall();
      else if (p) p.partition();
    }
    this.harnessProxies[i].partition();
  }

  /** Ends a partition-member. */
  rejoin(): void {
    if (!this.isolated) return;
    const i = this.members.findIndex((m) => m.name === this.isolated!.name);
    this.isolated = undefined;
    for (const m of this.members) for (const p of m.linkProxies) p.apply();
    for (const w of this.nodes) w.etcdProxies[i]?.heal();
    this.harnessProxies[i].heal();
  }

  async startAll(timeoutMs = 120_000): Promise<void> {
    for (const n of this.members) n.start();
    await Promise.all(this.members.map((n) => n.waitUp(timeoutMs)));
    for (const n of this.nodes) if (n.role === 'worker') n.start();
    await Promise.all(this.nodes.map((n) => n.waitUp(timeoutMs)));
  }

  /**
   * SIGKILLs a node's own process. Its reaper then kills its tasks and the
   * etcd member it started; a member the harness restarted itself is not
   * known to the reaper, so the harness stops it here, as the reaper would.
   */
  async killNode(n: ChaosNode): Promise<void> {
    if (n.running) n.signal('SIGKILL');
    await n.waitExit(10_000);
    if (n.ownMember) await this.stopOwnMember(n, 'SIGKILL');
  }

  /**
   * Cuts a worker off from etcd (partition-node): 'drop' keeps its
   * connections open and passes nothing either way (packets lost: requests
   * wait for their deadlines), 'reset' closes them and refuses new ones
   * (connection refused). The node process itself keeps running.
   */
  partition(n: ChaosNode, mode: 'drop' | 'reset'): void {
    if (n.etcdProxies.length === 0) throw new Error(`node ${n.name} does not reach etcd through the harness's proxies`);
    for (const p of n.etcdProxies) {
      if (mode === 'drop') p.stall();
      else p.partition();
    }
  }

  /** Lets a partitioned worker reach etcd again. */
  heal(n: ChaosNode): void {
    for (const p of n.etcdProxies) p.heal();
  }

  /** Restarts a node with the same arguments and data dir; waits until it is up. */
  async restartNode(n: ChaosNode, timeoutMs = 120_000, extra: string[] = []): Promise<void> {
    if (n.role === 'member') await this.waitMemberGone(n);
    n.start(extra);
    await n.waitUp(timeoutMs);
  }

  /** Waits until the node's previous etcd member has released its ports. */
  async waitMemberGone(n: ChaosNode): Promise<void> {
    // The dead node's reaper SIGTERMs the member, SIGKILLs it after 3 s.
    const pid = n.memberPid();
    const deadline = Date.now() + 15_000;
    while (pid !== undefined && isAlive(pid) && Date.now() < deadline) await sleep(100);
  }

  /** Reads the member's command line, environment and cwd, then SIGKILLs it. */
  killMember(n: ChaosNode): SavedMember {
    const pid = n.memberPid();
    if (pid === undefined || !isAlive(pid)) throw new Error(`node ${n.name} has no live etcd member`);
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
    if (!/etcd/.test(path.basename(argv[0] ?? ''))) throw new Error(`pid ${pid} is not etcd: ${argv.join(' ')}`);
    const env: NodeJS.ProcessEnv = {};
    for (const kv of fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0')) {
      const eq = kv.indexOf('=');
      if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    const cwd = fs.readlinkSync(`/proc/${pid}/cwd`);
    process.kill(pid, 'SIGKILL');
    if (n.ownMember) n.ownMember = undefined;
    return { pid, argv, env, cwd };
  }

  /** Starts a killed member again, the same way its node had started it. */
  async restartMember(n: ChaosNode, saved: SavedMember, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (isAlive(saved.pid) && Date.now() < deadline) await sleep(50);
    const fd = fs.openSync(path.join(n.dataDir, 'etcd.log'), 'a');
    fs.writeSync(fd, `--- chaos harness ${new Date().toISOString()}: restarting member ${n.name}: ${saved.argv.join(' ')}\n`);
    const proc = spawn(saved.argv[0], saved.argv.slice(1), { cwd: saved.cwd, env: saved.env, detached: true, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    proc.on('error', (err) => this.opts.log(`restarted member ${n.name}: ${err.message}`));
    n.ownMember = { proc, exited: new Promise((r) => proc.once('exit', () => r())) };
    const until = Date.now() + timeoutMs;
    while (!(await healthy(n.clientUrl!, 1000).catch(() => false))) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`restarted etcd member ${n.name} exited (${proc.exitCode ?? proc.signalCode})`);
      if (Date.now() > until) throw new Error(`restarted etcd member ${n.name} not healthy after ${timeoutMs} ms`);
      await sleep(200);
    }
  }

  private async stopOwnMember(n: ChaosNode, sig: NodeJS.Signals): Promise<void> {
    const m = n.ownMember;
    if (!m) return;
    n.ownMember = undefined;
    if (m.proc.exitCode === null && m.proc.signalCode === null) {
      m.proc.kill(sig);
      const ok = await Promise.race([m.exited.then(() => true), sleep(5000).then(() => false)]);
      if (!ok) m.proc.kill('SIGKILL');
      await Promise.race([m.exited, sleep(5000)]);
    }
  }

  /** SIGCONT anything paused, SIGTERM workers then members, SIGKILL stragglers. */
  async stopAll(graceMs = 15_000): Promise<void> {
    for (const n of this.nodes) if (n.paused && n.running) n.signal('SIGCONT');
    const stop = async (group: ChaosNode[]) => {
      for (const n of group) if (n.running) n.proc!.kill('SIGTERM');
      await Promise.all(
        group.map(async (n) => {
          if (!(await n.waitExit(graceMs)) && n.running) {
            this.opts.log(`node ${n.name} did not stop within ${graceMs} ms: SIGKILL`);
            n.proc!.kill('SIGKILL');
            await n.waitExit(5000);
          }
        }),
      );
    };
    for (const n of this.nodes) this.heal(n);
    this.rejoin();
    await stop(this.nodes.filter((n) => n.role === 'worker'));
    await stop(this.members);
    for (const n of this.members) await this.stopOwnMember(n, 'SIGTERM');
    for (const n of this.nodes) for (const p of [...n.etcdProxies, ...n.linkProxies]) await p.stop();
    for (const p of this.harnessProxies) await p.stop();
  }

  /** Last resort on a crash of the harness: SIGKILL everything we started. */
  killAllSync(): void {
    for (const n of this.nodes) {
      try {
        if (n.running) {
          if (n.paused) process.kill(n.pid!, 'SIGCONT');
          process.kill(n.pid!, 'SIGKILL');
        }
      } catch {
        // gone already
      }
      try {
        n.ownMember?.proc.kill('SIGKILL');
      } catch {
        // gone already
      }
    }
  }
}

/**
 * A proxy to `url` on a fresh loopback port that is not one of `reserved`:
 * a port freePort() handed out is free again until its owner binds it, and
 * the kernel may give it to the next bind(0).
 */
function startProxy(url: string, reserved: Set<number>): Promise<TcpProxy> {
  return startFree(() => TcpProxy.fromUrl(url), reserved);
}

async function startFree<P extends { port: number; start(): Promise<void>; stop(): Promise<void> }>(make: () => P, reserved: Set<number>): Promise<P> {
  const held: P[] = [];
  try {
    for (;;) {
      const p = make();
      await p.start();
      if (!reserved.has(p.port)) return p;
      held.push(p);
    }
  } finally {
    for (const p of held) await p.stop();
  }
}

export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

export function healthy(clientUrl: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(`${clientUrl}/health`, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => {
        try {
          const h = (JSON.parse(body) as { health?: unknown }).health;
          resolve(h === true || h === 'true');
        } catch {
          resolve(false);
        }
      });
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** Runs the loom CLI (short commands only: drain, resume, probes). */
export function loomCli(args: string[], timeoutMs = 15_000): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [LOOM_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code, sig) => {
      clearTimeout(timer);
      resolve({ code: code ?? (sig ? -1 : -1), out: out.trim() });
    });
    p.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, out: err.message });
    });
  });
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
