/**
 * DockerRunner against a real Docker engine: the private one
 * scripts/docker-up.sh starts (socket $LOOM_DOCKER_SOCK, default
 * /tmp/loom-docker/docker.sock) with the offline test image loom-busybox
 * (see test/support/docker.ts for when the engine tests skip or fail).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import Docker from 'dockerode';
import { resolveDockerEngine } from '../../src/core/docker-engine';
import { readFrames, STREAM_STDERR, STREAM_STDOUT } from '../../src/runner/log-file';
import { ContainerRequest, DockerRunner, LABEL_NODE, LABEL_TASK } from '../../src/runner/docker-runner';
import { Reaper } from '../../src/runner/reaper';
import { RunHandle } from '../../src/runner/types';
import { ContainerPolicy } from '../../src/core/container-policy';
import { DOCKER_SOCK, TEST_IMAGE, describeWithDocker } from '../support/docker';

const SOCK = DOCKER_SOCK;
const IMAGE = TEST_IMAGE;
const NODE = `test-node-${process.pid}`;

const d = describeWithDocker('docker-runner tests');

const dirs: string[] = [];
function tempDir(label: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `loom-docker-${label}-`));
  dirs.push(dir);
  return dir;
}

let seq = 0;
function request(over: Partial<ContainerRequest> & { argv: string[] }): ContainerRequest {
  const taskId = `task-${process.pid}-${++seq}`;
  return {
    env: {},
    cwd: '',
    logPath: path.join(tempDir('log'), 'attempt.log'),
    timeoutMs: 0,
    killGraceMs: 1000,
    tailBytes: 64 * 1024,
    image: IMAGE,
    pull: 'never',
    mounts: [],
    network: 'none',
    taskId,
    ...over,
  };
}

async function streams(file: string): Promise<{ stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  for await (const f of readFrames(file)) {
    if (f.stream === STREAM_STDOUT) stdout += f.data.toString('latin1');
    if (f.stream === STREAM_STDERR) stderr += f.data.toString('latin1');
  }
  return { stdout, stderr };
}

/** Resolves once the run has written something to its log. */
function firstOutput(h: RunHandle): Promise<void> {
  return new Promise((resolve) => {
    if (h.logBytes > 0) return resolve();
    const off = h.onProgress(() => {
      if (h.logBytes > 0) {
        off();
        resolve();
      }
    });
  });
}

afterAll(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('DockerRunner without an engine', () => {
  const runner = new DockerRunner({ socketPath: '/nonexistent/loom-docker.sock', nodeName: NODE });

  test('ping is false and a run fails naming the socket', async () => {
    expect(await runner.ping()).toBe(false);
    const r = await runner.startContainer(request({ argv: ['true'] })).done;
    expect(r.error).toMatch(/^docker daemon unreachable at \/nonexistent\/loom-docker\.sock: /);
    expect(r.errorExitCode).toBe(125);
    expect(r.exitCode).toBeUndefined();
  });

  test('ping without a socket answers false without loading the Docker client', () => {
    // A fresh process: this test file itself has loaded dockerode.
    const file = path.join(os.tmpdir(), `loom-not-a-socket-${process.pid}`);
    fs.writeFileSync(file, '');
    const script = `
      const { DockerRunner } = require(${JSON.stringify(require.resolve('../../src/runner/docker-runner'))});
      const ping = (socketPath) => new DockerRunner({ socketPath, nodeName: 'x' }).ping();
      Promise.all([ping('/nonexistent/loom-docker.sock'), ping(${JSON.stringify(file)})]).then((pings) => {
        const loaded = Object.keys(require.cache).some((k) => k.includes('/node_modules/dockerode/'));
        process.stdout.write(JSON.stringify({ pings, loaded }));
      });`;
    try {
      const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)).toEqual({ pings: [false, false], loaded: false });
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  test('a plain RunRequest (no image) is refused', async () => {
    const { image: _image, ...plain } = request({ argv: ['true'] });
    const r = await runner.start(plain).done;
    expect(r.error).toMatch(/needs an image/);
  });
});

d('DockerRunner with a real engine', () => {
  jest.setTimeout(30_000);
  const docker = new Docker({ socketPath: SOCK });
  // Test dirs live in the system temp dir: the policy allows mounting it (and never the engine's socket).
  const runner = new DockerRunner({
    socketPath: SOCK, nodeName: NODE,
    policy: { allowedMounts: [{ path: os.tmpdir(), readOnly: false }], hostNetwork: false, root: false, refusedPaths: [SOCK] },
  });

  async function containersOf(taskId: string): Promise<Docker.ContainerInfo[]> {
    return docker.listContainers({ all: true, filters: { label: [`${LABEL_TASK}=${taskId}`] } });
  }

  afterAll(async () => {
    const left = await docker.listContainers({ all: true, filters: { label: [`${LABEL_NODE}=${NODE}`] } });
    await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  });

  test('ping', async () => {
    expect(await runner.ping()).toBe(true);
  });

  test('output, exit code, log file; the container is removed', async () => {
    const req = request({ argv: ['sh', '-c', 'echo hi; echo err >&2; exit 4'] });
    const h = runner.startContainer(req);
    const r = await h.done;
    expect(r.error).toBeUndefined();
    expect(r.exitCode).toBe(4);
    expect(r.signal).toBeUndefined();
    expect(r.oomKilled).toBeUndefined();
    expect(r.timedOut).toBe(false);
    expect(r.stdoutTail.toString()).toBe('hi\n');
    expect(r.stderrTail.toString()).toBe('err\n');
    expect(await streams(req.logPath)).toEqual({ stdout: 'hi\n', stderr: 'err\n' });
    expect(h.logBytes).toBe(fs.statSync(req.logPath).size);
    expect(await containersOf(req.taskId)).toEqual([]);
  });

  test('an engine named by DOCKER_HOST=tcp://host:port (a TCP relay to the socket stands in for dockerd -H tcp://)', async () => {
    const relay = net.createServer((c) => {
      const engine = net.connect(SOCK);
      c.pipe(engine).pipe(c);
      c.on('error', () => engine.destroy());
      engine.on('error', () => c.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
    try {
      const port = (relay.address() as net.AddressInfo).port;
      const engine = resolveDockerEngine(undefined, { DOCKER_HOST: `tcp://127.0.0.1:${port}` });
      const overTcp = new DockerRunner({ engine, nodeName: NODE });
      expect(overTcp.address).toBe(`tcp://127.0.0.1:${port}`);
      expect(await overTcp.ping()).toBe(true);
      const r = await overTcp.startContainer(request({ argv: ['echo', 'over tcp'] })).done;
      expect(r.error).toBeUndefined();
      expect(r.stdoutTail.toString()).toBe('over tcp\n');
    } finally {
      relay.close();
    }
  });

  test('env and cwd; network none by default (only lo)', async () => {
    const req = request({
      argv: ['sh', '-c', 'echo "$FOO"; pwd; ls /sys/class/net'],
      env: { FOO: 'bar baz' },
      cwd: '/tmp',
      network: '',
    });
    const r = await runner.startContainer(req).done;
    expect(r.exitCode).toBe(0);
    expect(r.stdoutTail.toString()).toBe('bar baz\n/tmp\nlo\n');
  });

  test('bind mounts, read-only and read-write', async () => {
    const ro = tempDir('ro');
    const rw = tempDir('rw');
    fs.writeFileSync(path.join(ro, 'in.txt'), 'from host\n');
    // The container runs as 65534 (the image's user is root): it needs the modes a foreign user would.
    fs.chmodSync(ro, 0o755);
    fs.chmodSync(rw, 0o777);
    const req = request({
      argv: ['sh', '-c', 'cat /in/in.txt; echo x > /in/new 2>/dev/null && echo ro-writable; echo out > /out/new.txt'],
      mounts: [
        { host: ro, container: '/in', readOnly: true },
        { host: rw, container: '/out', readOnly: false },
      ],
    });
    const r = await runner.startContainer(req).done;
    expect(r.exitCode).toBe(0);
    expect(r.stdoutTail.toString()).toBe('from host\n');
    expect(fs.readFileSync(path.join(rw, 'new.txt'), 'utf8')).toBe('out\n');
  });

  test('over its memory limit: oomKilled', async () => {
    // The shell itself holds 100 MB of command substitution: the cgroup (16 MiB, no swap) OOM-kills it.
    const req = request({
      argv: ['sh', '-c', 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}'],
      memoryBytes: 16 * 1024 * 1024,
    });
    const r = await runner.startContainer(req).done;
    expect(r.error).toBeUndefined();
    expect(r.oomKilled).toBe(true);
    expect(r.exitCode).toBe(137);
    expect(r.signal).toBeUndefined(); // not killed by us
    expect(await containersOf(req.taskId)).toEqual([]);
  });

  test('stop: SIGTERM ignored by init, SIGKILL after the grace; container removed; idempotent', async () => {
    const req = request({ argv: ['sh', '-c', 'echo up; exec sleep 30'] });
    const h = runner.startContainer(req);
    await firstOutput(h);
    expect(await containersOf(req.taskId)).toHaveLength(1);
    const t0 = Date.now();
    h.stop('cancel', 500);
    h.stop('shutdown', 5000); // a later stop never delays the kill, nor changes the reason
    const r = await h.done;
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(r.stoppedFor).toBe('cancel');
    expect(r.signal).toBe('SIGKILL');
    expect(r.exitCode).toBeUndefined();
    expect(r.stdoutTail.toString()).toBe('up\n');
    expect(await containersOf(req.taskId)).toEqual([]);
    h.stop('cancel', 0); // after the end: a no-op
  });

  test('timeout: SIGTERM reaches a task that handles it', async () => {
    const req = request({
      argv: ['sh', '-c', 'trap "echo term; exit 143" TERM; echo up; sleep 30 & wait'],
      timeoutMs: 1500,
      killGraceMs: 10_000,
    });
    const r = await runner.startContainer(req).done;
    expect(r.timedOut).toBe(true);
    expect(r.signal).toBe('SIGTERM');
    expect(r.stdoutTail.toString()).toBe('up\nterm\n');
    expect(r.finishedAtMs - r.startedAtMs).toBeLessThan(8000);
  });

  test('stop before the container runs: never started, nothing left', async () => {
    const req = request({ argv: ['sh', '-c', 'echo should-not-run'] });
    const h = runner.startContainer(req);
    h.stop('cancel', 1000);
    const r = await h.done;
    expect(r.stoppedFor).toBe('cancel');
    expect(r.error).toMatch(/before the container started/);
    expect(r.stdoutTail.length).toBe(0);
    expect(await containersOf(req.taskId)).toEqual([]);
  });

  test('20 MB of output: every byte framed into the log, exact tail', async () => {
    const req = request({ argv: ['sh', '-c', 'yes 0123456789abcdef | head -c 20000000'], tailBytes: 1000 });
    const r = await runner.startContainer(req).done;
    expect(r.exitCode).toBe(0);
    expect(r.stdoutTruncated).toBe(true);
    const expected = '0123456789abcdef\n'.repeat(Math.ceil(20_000_000 / 17)).slice(0, 20_000_000);
    expect(r.stdoutTail.toString()).toBe(expected.slice(-1000));
    let bytes = 0;
    for await (const f of readFrames(req.logPath)) {
      expect(f.stream).toBe(STREAM_STDOUT);
      bytes += f.data.length;
    }
    expect(bytes).toBe(20_000_000);
  });

  test('with a reaper: a missed heartbeat kills the container (fencing)', async () => {
    const reaper = Reaper.start();
    try {
      const fenced = new Promise<number>((resolve) => reaper.onFenced(resolve));
      const withReaper = new DockerRunner({ socketPath: SOCK, nodeName: NODE, reaper });
      const req = request({ argv: ['sh', '-c', 'echo up; exec sleep 30'] });
      const h = withReaper.startContainer(req);
      const deadline = Date.now() + 10_000;
      while (h.pid === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(h.pid).toBeGreaterThan(1);
      reaper.heartbeat(100); // and no other: the node "froze"
      expect(await fenced).toBe(1);
      const r = await h.done;
      expect(r.exitCode).toBe(137); // killed, but not by the runner
      expect(await containersOf(req.taskId)).toEqual([]);
    } finally {
      await reaper.close();
    }
  });

  test('command not found: 127', async () => {
    const r = await runner.startContainer(request({ argv: ['no-such-command'] })).done;
    expect(r.error).toBe('command not found: no-such-command');
    expect(r.errorExitCode).toBe(127);
  });

  test("pull 'never' with a missing image: a clear error", async () => {
    const req = request({ argv: ['true'], image: 'loom-no-such-image:v0', pull: 'never' });
    const r = await runner.startContainer(req).done;
    expect(r.error).toBe("image loom-no-such-image:v0 is not present on this node and pull is 'never'");
    expect(r.errorExitCode).toBe(125);
    expect(await containersOf(req.taskId)).toEqual([]);
  });

  test("pull 'missing' from an unreachable registry: cannot pull", async () => {
    const req = request({ argv: ['true'], image: '127.0.0.1:1/loom/nope:v0', pull: 'missing' });
    const r = await runner.startContainer(req).done;
    expect(r.error).toMatch(/^cannot pull 127\.0\.0\.1:1\/loom\/nope:v0: ./);
  });

  test('reapOrphans removes only this node\'s containers of unknown tasks', async () => {
    const make = (node: string, task: string) =>
      docker.createContainer({
        Image: IMAGE,
        Cmd: ['sleep', '30'],
        Labels: { [LABEL_NODE]: node, [LABEL_TASK]: task },
        HostConfig: { NetworkMode: 'none' },
      });
    const orphan = await make(NODE, `orphan-${process.pid}`);
    await orphan.start();
    const known = await make(NODE, `known-${process.pid}`);
    const other = await make(`${NODE}-other`, `orphan-${process.pid}`);
    try {
      expect(await runner.reapOrphans(new Set([`known-${process.pid}`]))).toBe(1);
      const ids = (await docker.listContainers({ all: true })).map((c) => c.Id);
      expect(ids).not.toContain(orphan.id);
      expect(ids).toContain(known.id);
      expect(ids).toContain(other.id);
      expect(await runner.reapOrphans(new Set([`known-${process.pid}`]))).toBe(0);
    } finally {
      await known.remove({ force: true }).catch(() => undefined);
      await other.remove({ force: true }).catch(() => undefined);
    }
  });
});

d('DockerRunner: restricted defaults and the container policy, on a real engine', () => {
  jest.setTimeout(30_000);
  const policy = (over: Partial<ContainerPolicy> = {}): ContainerPolicy => ({
    allowedMounts: [], hostNetwork: false, root: false, refusedPaths: [SOCK], ...over,
  });
  const runnerWith = (p: ContainerPolicy, pidsLimit?: number) => new DockerRunner({ socketPath: SOCK, nodeName: NODE, policy: p, pidsLimit });
  const statusLines = 'grep -E "^(CapEff|CapPrm|NoNewPrivs):" /proc/self/status; id -u';

  test('no capabilities, no-new-privileges, the image\'s root becomes 65534', async () => {
    const r = await runnerWith(policy()).startContainer(request({ argv: ['sh', '-c', statusLines] })).done;
    expect(r.error).toBeUndefined();
    expect(r.stdoutTail.toString()).toBe('CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n65534\n');
  });

  test('--allow-container-root: the image\'s root stays root, still without capabilities', async () => {
    const r = await runnerWith(policy({ root: true })).startContainer(request({ argv: ['sh', '-c', statusLines] })).done;
    expect(r.stdoutTail.toString()).toBe('CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n0\n');
  });

  test('the spec\'s user; user 0 refused unless the node allows root', async () => {
    const as1234 = await runnerWith(policy()).startContainer(request({ argv: ['sh', '-c', 'id -u; id -g'], user: '1234:2345' })).done;
    expect(as1234.stdoutTail.toString()).toBe('1234\n2345\n');
    const root = request({ argv: ['id', '-u'], user: '0' });
    const refused = await runnerWith(policy()).startContainer(root).done;
    expect(refused.error).toMatch(/^refused by node .*: user 0 \(root\) needs a node started with --allow-container-root$/);
    expect(refused.errorExitCode).toBe(125);
    expect(await new Docker({ socketPath: SOCK }).listContainers({ all: true, filters: { label: [`${LABEL_TASK}=${root.taskId}`] } })).toEqual([]);
    const allowed = await runnerWith(policy({ root: true })).startContainer(request({ argv: ['id', '-u'], user: '0' })).done;
    expect(allowed.stdoutTail.toString()).toBe('0\n');
  });

  test('the pids limit applies: a shell cannot fork past it', async () => {
    const forks = 'i=0; while [ $i -lt 100 ]; do sleep 30 & i=$((i+1)); done; echo started $i';
    const limited = await runnerWith(policy(), 32).startContainer(request({ argv: ['sh', '-c', forks] })).done;
    expect(limited.stdoutTail.toString()).not.toContain('started 100');
    expect(limited.stderrTail.toString()).toMatch(/can't fork/);
    const roomy = await runnerWith(policy()).startContainer(request({ argv: ['sh', '-c', forks] })).done;
    expect(roomy.stdoutTail.toString()).toBe('started 100\n');
  });

  test('mounts: only under --allow-mount, read-only where it says :ro, never through a symlink out of it', async () => {
    const allowed = tempDir('allowed');
    const ro = tempDir('ro-only');
    fs.writeFileSync(path.join(allowed, 'in.txt'), 'ok\n');
    fs.chmodSync(allowed, 0o755); // readable by 65534, the container's user
    fs.symlinkSync('/', path.join(allowed, 'escape'));
    fs.symlinkSync(tempDir('elsewhere'), path.join(allowed, 'sideways'));
    const p = policy({ allowedMounts: [{ path: allowed, readOnly: false }, { path: ro, readOnly: true }] });
    const run = (host: string, readOnly: boolean) =>
      runnerWith(p).startContainer(request({ argv: ['cat', '/m/in.txt'], mounts: [{ host, container: '/m', readOnly }] })).done;

    expect((await run(allowed, true)).stdoutTail.toString()).toBe('ok\n');
    expect((await run(path.join(allowed, 'escape'), true)).error).toMatch(/resolves to \/\): the host's root directory "\/" is never mounted/);
    expect((await run(path.join(allowed, 'sideways'), true)).error).toMatch(/resolves to .*elsewhere.*is not under an --allow-mount path/);
    expect((await run(tempDir('other'), true)).error).toMatch(/is not under an --allow-mount path/);
    expect((await run(ro, false)).error).toMatch(/may only be mounted read-only/);
    const roRun = await run(ro, true); // allowed: it ran (and found the directory empty)
    expect(roRun.error).toBeUndefined();
    expect(roRun.stderrTail.toString()).toMatch(/^cat: can't open/);
  });

  test('network host: only for an admin\'s task or with --allow-host-network', async () => {
    const net = (p: ContainerPolicy, byAdmin: boolean) =>
      runnerWith(p).startContainer(request({ argv: ['true'], network: 'host', byAdmin })).done;
    expect((await net(policy(), false)).error).toMatch(/network host needs an admin/);
    expect((await net(policy(), true)).exitCode).toBe(0);
    expect((await net(policy({ hostNetwork: true }), false)).exitCode).toBe(0);
  });
});
