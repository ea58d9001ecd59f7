/**
 * Container tasks through a real node and a real Docker engine (the shared
 * one of test/support/docker.ts). The engine coming and going is played by a unix socket
 * proxy in front of the real engine's socket.
 */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import Docker from 'dockerode';
import { JobSpec, TaskSpec, TaskState } from '../../src/gen/loom';
import { rejectionOf } from '../support/errors';
import { uniqueRoot, waitFor } from '../support/etcd';
import { collectLogs, spec, startNode, stopNode, TestNode } from '../support/nodes';
import { cli } from '../support/cluster';
import { DOCKER_SOCK, TEST_IMAGE, describeWithDocker } from '../support/docker';

jest.setTimeout(120_000);
const SOCK = DOCKER_SOCK;
const IMAGE = TEST_IMAGE;

const d = describeWithDocker('container task tests');
const afterAllDocker: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const fn of afterAllDocker) await fn();
});

/** A unix socket that forwards to the engine's while open: an engine that can come and go. */
class EngineProxy {
  readonly path = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'loom-engine-')), 'docker.sock');
  private server: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();
  /** Drop the connection of any container create request (pings and the rest pass). */
  failCreates = false;

  async open(): Promise<void> {
    this.server = net.createServer((c) => {
      const u = net.connect(SOCK);
      for (const s of [c, u]) {
        this.conns.add(s);
        s.on('close', () => this.conns.delete(s));
        s.on('error', () => s.destroy());
      }
      c.on('data', (chunk: Buffer) => {
        if (this.failCreates && /^POST \S*\/containers\/create/m.test(chunk.toString('latin1'))) {
          c.destroy();
          u.destroy();
          return;
        }
        u.write(chunk);
      });
      c.on('end', () => u.end());
      u.pipe(c);
      c.on('close', () => u.destroy());
      u.on('close', () => c.destroy());
    });
    await new Promise<void>((r) => this.server!.listen(this.path, r));
  }

  /** The engine is gone: connections dropped, the socket file removed. */
  async close(): Promise<void> {
    for (const s of this.conns) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    this.server = undefined;
    fs.rmSync(this.path, { force: true });
  }
}

d('container tasks on a node', () => {
  let n: TestNode;
  const docker = new Docker({ socketPath: SOCK });
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'dock', { slots: 2, docker: { kind: "unix", socketPath: SOCK, source: "test" } });
  });
  afterAll(async () => {
    await stopNode(n);
  });

  it('advertises docker, runs a container task, returns its output and exit code', async () => {
    expect((await n.api.nodes())[0].docker).toBe(true);
    const [id] = await n.api.submit([spec(['sh', '-c', 'echo in-container; echo oops >&2; exit 4'], { container: { image: IMAGE, pull: 'never', mounts: [], network: '', user: '' } })]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.exitCode).toBe(4);
    expect(await collectLogs(n.api, id)).toEqual({ stdout: 'in-container\n', stderr: 'oops\n' });
  });

  it('runs it with no capabilities, no-new-privileges, a pids limit, and not as root', async () => {
    const [id] = await n.api.submit([spec(['sh', '-c', 'grep -E "^(CapEff|NoNewPrivs):" /proc/self/status; id -u; cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max'], {
      container: { image: IMAGE, pull: 'never', mounts: [], network: '', user: '' },
    })]);
    expect((await n.api.wait(id)).state).toBe(TaskState.COMPLETED);
    expect((await collectLogs(n.api, id)).stdout).toBe('CapEff:\t0000000000000000\nNoNewPrivs:\t1\n65534\n4096\n');
  });

  it('reports a container over its memory limit as OOM', async () => {
    const [id] = await n.api.submit([spec(['sh', '-c', 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}'], {
      container: { image: IMAGE, pull: 'never', mounts: [], network: '', user: '' },
      resources: { cpu: 0, memoryBytes: 16 * 1024 * 1024, diskBytes: 0 },
    })]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.oomKilled).toBe(true);
    expect(t.reason).toMatch(/out of memory/);
  });

  it('the attached CLI explains a container over its memory limit as it does a process task', async () => {
    const r = await cli(['-N', n.node.address, 'run', '--image', IMAGE, '--pull', 'never', '--memory', '16M',
      'sh', '-c', 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}']);
    expect(r.code).toBe(137);
    // The same line as for a process task the kernel OOM-killed (process-limits.test.ts).
    expect(r.stderr).toMatch(/^loom: task \S+ failed \(signal SIGKILL\): killed: out of memory \(over its memory limit\)\n$/);
  });

  it('a container returns a result through $LOOM_RESULT; a symlink to a node file is refused; the directory is removed', async () => {
    const box = { image: IMAGE, pull: 'never', mounts: [], network: '', user: '' };
    const [id, linked] = await n.api.submit([
      spec(['sh', '-c', 'printf "from-$(id -u)" > "$LOOM_RESULT"'], { container: box }),
      spec(['sh', '-c', 'ln -s /etc/passwd "$LOOM_RESULT"'], { container: box }),
    ]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.COMPLETED);
    expect(Buffer.from(t.result).toString()).toBe('from-65534');
    const l = await n.api.wait(linked);
    expect(l.result).toHaveLength(0);
    expect(l.reason).toMatch(/\$LOOM_RESULT is a symbolic link/);
    expect(fs.readdirSync(path.join(n.dataDir, 'logs')).filter((f) => f.endsWith('.result'))).toEqual([]);
  });

  it('cancel stops and removes the container', async () => {
    const [id] = await n.api.submit([spec(['sleep', '300'], { container: { image: IMAGE, pull: 'never', mounts: [], network: '', user: '' } })]);
    const labelled = async () => docker.listContainers({ all: true, filters: { label: [`loom.task=${id}`] } });
    await waitFor(async () => (await labelled()).length === 1, { what: 'container created' });
    await n.api.cancel(id);
    expect((await n.api.wait(id)).state).toBe(TaskState.CANCELLED);
    await waitFor(async () => (await labelled()).length === 0, { what: 'container removed' });
  });
});

d('a Docker engine that comes and goes', () => {
  const container = { image: IMAGE, pull: 'never', mounts: [], network: '', user: '' };

  it('a node started before its engine takes container tasks once the engine answers', async () => {
    const proxy = new EngineProxy();
    const n = await startNode(uniqueRoot(), 'late', { slots: 2, docker: { kind: "unix", socketPath: proxy.path, source: "test" } }, { dockerProbeMs: 200 });
    afterAllDocker.push(async () => {
      await stopNode(n);
      await proxy.close();
    });
    expect(n.logs.join('\n')).toMatch(/no Docker engine answers at .*docker\.sock: container tasks go to other nodes/);
    expect((await n.api.nodes())[0].docker).toBe(false);
    const [id] = await n.api.submit([spec(['sh', '-c', 'echo engine-came-late'], { container })]);
    const waiting = await n.api.get(id);
    expect(waiting.state).toBe(TaskState.QUEUED);
    expect(waiting.reason).toMatch(/waiting: no live node has a Docker engine/);

    await proxy.open();
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.COMPLETED);
    expect(await collectLogs(n.api, id)).toEqual({ stdout: 'engine-came-late\n', stderr: '' });
    expect(n.logs.join('\n')).toMatch(/docker engine found at .*: taking container tasks/);
    expect((await n.api.nodes())[0].docker).toBe(true);
  });

  it('an engine that answers pings but drops every container create: each failure in a row holds container tasks longer, until a container runs', async () => {
    const proxy = new EngineProxy();
    await proxy.open();
    proxy.failCreates = true;
    const n = await startNode(uniqueRoot(), 'flaky', { slots: 2, docker: { kind: "unix", socketPath: proxy.path, source: "test" } }, { dockerProbeMs: 200 });
    afterAllDocker.push(async () => {
      await stopNode(n);
      await proxy.close();
    });
    const [id] = await n.api.submit([spec(['sh', '-c', 'echo finally'], { container })]);
    // Claimed, handed back unrun, claimed again once the engine is believed again: three times.
    await waitFor(async () => (await n.api.get(id)).history.length >= 3, { what: 'three hand-backs', timeoutMs: 20_000 });
    const log = () => n.logs.join('\n');
    expect(log()).toMatch(/2 container creations failed in a row: container tasks again no sooner than/);
    expect(log()).toMatch(/3 container creations failed in a row/);
    // Creates pass again: the task runs (once the hold is over) and the count starts over.
    proxy.failCreates = false;
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.COMPLETED);
    expect(t.history.every((a, i) => i === t.history.length - 1 || a.outcome === 'docker engine unavailable on node flaky')).toBe(true);
    proxy.failCreates = true;
    const seen = n.logs.length;
    const [again] = await n.api.submit([spec(['sh', '-c', 'echo never'], { container })]);
    await waitFor(async () => (await n.api.get(again)).history.length >= 1, { what: 'the next hand-back' });
    // Up to its first hand-back only: on a busy machine the poll above can see a
    // second one (the hold after one failure is 0 s), which rightly says "2 in a row".
    const lines = n.logs.slice(seen);
    const first = lines.findIndex((l) => l.includes(`task ${again}:`));
    expect(first).toBeGreaterThanOrEqual(0);
    const after = lines.slice(0, first + 1).join('\n');
    expect(after).toMatch(/docker engine unavailable on node flaky/);
    expect(after).not.toMatch(/failed in a row/); // a first failure again: no hold
    await n.api.cancel(again);
  });

  it('a container task whose engine is gone is handed back unrun, not failed, and the node stops taking them', async () => {
    const proxy = new EngineProxy();
    await proxy.open();
    // Pinged rarely: the claim, not a ping, is what finds the engine gone.
    const n = await startNode(uniqueRoot(), 'gone', { slots: 2, docker: { kind: "unix", socketPath: proxy.path, source: "test" } }, { dockerProbeMs: 600_000 });
    afterAllDocker.push(async () => {
      await stopNode(n);
      await proxy.close();
    });
    expect((await n.api.nodes())[0].docker).toBe(true);
    await proxy.close();

    const [id] = await n.api.submit([spec(['sh', '-c', 'echo never'], { container })]);
    const t = await waitFor(async () => {
      const x = await n.api.get(id);
      return x.state !== TaskState.RUNNING && x.history.length > 0 && x;
    }, { what: 'the claimed task to be handed back' });
    expect(t.state).toBe(TaskState.QUEUED);
    expect(t.history).toHaveLength(1);
    expect(t.history[0].outcome).toBe('docker engine unavailable on node gone');
    expect(t.reason).toMatch(/waiting: no live node has a Docker engine/);
    await waitFor(async () => (await n.api.nodes())[0].docker === false, { what: 'the node to stop advertising docker' });
    expect(n.logs.join('\n')).toMatch(/docker engine at .* unavailable \(docker engine unavailable on node gone: docker daemon unreachable/);
    // Still queued: the node does not claim it again.
    expect((await n.api.get(id)).state).toBe(TaskState.QUEUED);
    await n.api.cancel(id);
  });
});

d('container policy: refused at submit, never claimed by a node that does not allow it', () => {
  let plain: TestNode; // no --allow-mount
  let allowing: TestNode; // --allow-mount <shared>:ro
  let shared: string;
  beforeAll(async () => {
    shared = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-shared-'));
    fs.chmodSync(shared, 0o755); // the container runs as 65534
    fs.writeFileSync(path.join(shared, 'in.txt'), 'shared data\n');
    const root = uniqueRoot();
    plain = await startNode(root, 'plain', { slots: 2, docker: { kind: 'unix', socketPath: SOCK, source: 'test' } });
    allowing = await startNode(root, 'allowing', { slots: 2, docker: { kind: 'unix', socketPath: SOCK, source: 'test' }, allowMounts: [{ path: shared, readOnly: true }] });
    await waitFor(async () => (await plain.api.nodes()).filter((n) => n.docker && n.containerPolicy).length === 2, { what: 'both nodes published' });
  });
  afterAll(async () => {
    await stopNode(plain);
    await stopNode(allowing);
    fs.rmSync(shared, { recursive: true, force: true });
  });
  // Built here, not with spec(): the client-side validation would stop some of these before the node sees them.
  const withMount = (host: string, readOnly = true) =>
    TaskSpec.fromPartial({ command: ['cat', '/data/in.txt'], container: { image: IMAGE, pull: 'never', mounts: [{ host, container: '/data', readOnly }] } });

  it('always-refused mounts are INVALID_ARGUMENT: "/", the Docker socket, a node\'s data dir', async () => {
    for (const [host, why] of [
      ['/', /"\/" is never mounted/],
      ['/var/run', /Docker socket \/var\/run\/docker.sock/],
      [SOCK, new RegExp(`expose ${SOCK}`)],
      [allowing.dataDir, new RegExp(`expose ${allowing.dataDir}, node allowing's data dir`)],
      [path.join(plain.dataDir, 'logs'), new RegExp(`expose ${plain.dataDir}, node plain's data dir`)],
    ] as const) {
      const err = await rejectionOf(plain.api.submit([withMount(host)]));
      expect([host, err.code]).toEqual([host, 'INVALID_ARGUMENT']);
      expect(err.message).toMatch(why);
    }
  });

  it('a mount no live node allows is PERMISSION_DENIED, with each node\'s reason', async () => {
    const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-elsewhere-'));
    const err = await rejectionOf(plain.api.submit([withMount(elsewhere)]));
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.message).toMatch(/^no live node allows this container \(.*plain: mount refused: .* is not under an --allow-mount path/);
    const rw = await rejectionOf(plain.api.submit([withMount(shared, false)]));
    expect(rw.code).toBe('PERMISSION_DENIED');
    expect(rw.message).toMatch(/allowing: mount refused: .* may only be mounted read-only/);
  });

  it('a job is checked at submit like a task (its tasks count as no admin\'s)', async () => {
    const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-elsewhere-'));
    const job = (template: TaskSpec, overrides: Record<number, TaskSpec> = {}) =>
      JobSpec.fromPartial({ name: `policy-${Date.now()}`, count: 2, template, overrides });
    const denied = await rejectionOf(plain.api.submitJob(job(withMount(elsewhere))));
    expect([denied.code, denied.message]).toEqual(['PERMISSION_DENIED', expect.stringMatching(/^no live node allows this container/)]);
    const override = await rejectionOf(plain.api.submitJob(job(withMount(shared), { 1: withMount(elsewhere) })));
    expect(override.code).toBe('PERMISSION_DENIED');
    expect((await rejectionOf(plain.api.submitJob(job(withMount('/'))))).code).toBe('INVALID_ARGUMENT');
  });

  it('submitted to the node that does not allow the mount, it runs on the one that does', async () => {
    for (let i = 0; i < 3; i++) {
      const [id] = await plain.api.submit([withMount(shared)]);
      const t = await plain.api.wait(id);
      expect([t.state, t.node, t.reason]).toEqual([TaskState.COMPLETED, 'allowing', t.reason]);
      expect(t.history.map((a) => a.node)).toEqual(['allowing']);
      expect((await collectLogs(plain.api, id)).stdout).toBe('shared data\n');
    }
  });
});
