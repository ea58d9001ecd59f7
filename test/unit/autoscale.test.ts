import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readAutoscalePolicy } from '../../src/bin/autoscale-file';
import { AutoscalePolicy, decideScale, parseAutoscalePolicy, ScaleMemory, wantedSize } from '../../src/core/autoscale';
import { LoomError } from '../../src/core/errors';
import { parseNodeArgs } from '../../src/bin/node-command';
import { workerArgs } from '../../src/runner/docker-scale';

const policy = (o: Record<string, unknown> = {}): AutoscalePolicy =>
  parseAutoscalePolicy({ min: 0, max: 4, slotsPerNode: 2, upCooldown: '10s', downCooldown: '60s', provider: { kind: 'exec', command: ['scale.sh'] }, ...o });
const fresh = (target: number): ScaleMemory => ({ target, lastUpMs: 0, lastDownMs: 0, wanted: [] });

describe('autoscale policy file', () => {
  it('reads durations, defaults, and the provider', () => {
    const p = policy({ group: 'gpu', labels: { gpu: '1' }, drainDeadline: '2m', interval: 2000 });
    expect(p).toMatchObject({ group: 'gpu', min: 0, max: 4, slotsPerNode: 2, targetQueuedPerSlot: 1, upCooldownMs: 10_000, downCooldownMs: 60_000, drainDeadlineMs: 120_000, intervalMs: 2000, labels: { gpu: '1' } });
    expect(parseAutoscalePolicy({ max: 2, provider: { kind: 'exec', command: './scale.sh' } })).toMatchObject({ group: 'workers', min: 0, provider: { command: ['./scale.sh'] } });
  });

  it('reads the docker and kubernetes providers with their defaults', () => {
    expect(policy({ provider: { kind: 'docker', image: 'loom:local', env: { TZ: 'UTC', N: 1 } } }).provider)
      .toEqual({ kind: 'docker', image: 'loom:local', engine: undefined, network: 'bridge', listen: '0.0.0.0:8080', args: [], env: { TZ: 'UTC', N: '1' }, binds: [] });
    expect(policy({ provider: { kind: 'kubernetes', deployment: 'loom-worker', apiServer: 'https://10.0.0.1:6443/' } }).provider).toEqual({
      kind: 'kubernetes', deployment: 'loom-worker', namespace: undefined, apiServer: 'https://10.0.0.1:6443',
      tokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token', caFile: '/var/run/secrets/kubernetes.io/serviceaccount/ca.crt',
    });
  });

  it('gives a docker worker the flags of a worker-only node of the group', () => {
    const p = policy({ provider: { kind: 'docker', image: 'loom', args: ['--lease-ttl=3'] } });
    if (p.provider.kind !== 'docker') throw new Error('docker expected');
    const req = { group: 'g', count: 1, remove: [], labels: { zone: 'a' }, etcdEndpoints: ['http://10.0.0.1:2379', 'http://10.0.0.2:2379'] };
    expect(workerArgs(p.provider, req, 'loom-g-1', 2)).toEqual(['node', '--name=loom-g-1', '--etcd=http://10.0.0.1:2379,http://10.0.0.2:2379', '--slots=2',
      '--listen=0.0.0.0:8080', '--advertise=loom-g-1:8080', '--data-dir=/data', '--label=autoscale=g', '--label=zone=a', '--lease-ttl=3']);
    // The host's network: reached where it listens, so no --advertise of a name.
    expect(workerArgs({ ...p.provider, network: 'host', listen: '127.0.0.1:0', etcd: ['http://e:2379'] }, req, 'w', 1)).toEqual(['node', '--name=w', '--etcd=http://e:2379', '--slots=1',
      '--listen=127.0.0.1:0', '--data-dir=/data', '--label=autoscale=g', '--label=zone=a', '--lease-ttl=3']);
    // What it gives `loom node` parses there (with --insecure or --tls-* from args: these addresses are not loopback).
    expect(parseNodeArgs([...workerArgs(p.provider, req, 'loom-g-1', 2).slice(1), '--insecure'], {})).toMatchObject({ name: 'loom-g-1', slots: 2, labels: { autoscale: 'g', zone: 'a' }, etcdEndpoints: req.etcdEndpoints });
  });

  it('refuses what it cannot use, by name, with INVALID_ARGUMENT', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ maxx: 3 }, /unknown field "maxx"/],
      [{ min: 5, max: 4 }, /min \(5\) is above max \(4\)/],
      [{ max: 0 }, /max must be a whole number from 1/],
      [{ upCooldown: 'soon' }, /upCooldown must be a duration/],
      [{ provider: { kind: 'nomad' } }, /kind "nomad" is not supported \(supported: exec, docker, kubernetes\)/],
      [{ provider: { kind: 'docker' } }, /provider.image is missing/],
      [{ provider: { kind: 'docker', image: 'loom', command: ['x'] } }, /kind docker has no field "command"/],
      [{ provider: { kind: 'docker', image: 'loom', binds: ['data:/data'] } }, /binds entry "data:\/data" must be/],
      [{ provider: { kind: 'docker', image: 'loom', listen: '8080' } }, /provider.listen "8080" is not valid/],
      [{ provider: { kind: 'docker', image: 'loom', env: { 'A-B': 1 } } }, /bad variable name "A-B"/],
      [{ provider: { kind: 'kubernetes' } }, /provider.deployment is missing/],
      [{ provider: { kind: 'kubernetes', deployment: 'Loom_Workers' } }, /provider.deployment "Loom_Workers" is not valid/],
      [{ provider: { kind: 'kubernetes', deployment: 'w', apiServer: 'k8s:443' } }, /provider.apiServer/],
      [{ provider: { kind: 'exec', command: [] } }, /provider.command must be a command/],
      [{ group: 'Bad Group' }, /group "Bad Group"/],
      [{ labels: { autoscale: 'x' } }, /bad label name "autoscale"/],
    ];
    for (const [o, why] of bad) {
      let err: unknown;
      try {
        policy(o);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(LoomError);
      expect((err as LoomError).code).toBe('INVALID_ARGUMENT');
      expect((err as LoomError).message).toMatch(why);
    }
  });
});

describe('wantedSize', () => {
  it('asks for the slots the tasks need (each slot busy and targetQueuedPerSlot waiting), minus the slots outside the group', () => {
    const p = policy();
    // 20 tasks / (1 + 1) = 10 slots; 2 outside the group; 8 / 2 per node = 4.
    expect(wantedSize(p, { queued: 18, running: 2, otherSlots: 2 })).toBe(4);
    expect(wantedSize(p, { queued: 4, running: 2, otherSlots: 2 })).toBe(1);
    expect(wantedSize(p, { queued: 0, running: 0, otherSlots: 2 })).toBe(0);
    // Within min and max.
    expect(wantedSize(p, { queued: 1000, running: 6, otherSlots: 2 })).toBe(4);
    expect(wantedSize(policy({ min: 1 }), { queued: 0, running: 0, otherSlots: 2 })).toBe(1);
  });
});

describe('decideScale', () => {
  const p = policy();
  const busy = { queued: 100, running: 2, otherSlots: 2 };
  const idle = { queued: 0, running: 0, otherSlots: 2 };

  it('scales up at once, then not again within the up cooldown', () => {
    const up = decideScale(p, { queued: 6, running: 2, otherSlots: 2 }, fresh(0), 100_000);
    expect(up.target).toBe(1);
    expect(up.reason).toMatch(/scale up 0 → 1/);
    const again = decideScale(p, busy, { ...up.memory, target: up.target }, 105_000);
    expect(again.target).toBe(1);
    expect(again.reason).toMatch(/cooldown/);
    expect(decideScale(p, busy, { ...again.memory, target: 1 }, 110_001).target).toBe(4);
  });

  it('scales down only after the largest size wanted over the down cooldown is smaller', () => {
    let m: ScaleMemory = { target: 4, lastUpMs: 0, lastDownMs: 0, wanted: [] };
    let t = 1_000_000;
    // Busy, then a lull of 50 s: still wanted 4 within the last 60 s.
    m = decideScale(p, busy, m, t).memory;
    for (let i = 0; i < 5; i++) {
      t += 10_000;
      const d = decideScale(p, idle, m, t);
      expect(d.target).toBe(4);
      m = d.memory;
    }
    t += 11_000;
    const down = decideScale(p, idle, m, t);
    expect(down.target).toBe(0);
    expect(down.reason).toMatch(/scale down 4 → 0/);
  });

  it('holds within the hysteresis', () => {
    const h = policy({ hysteresis: 1 });
    const m: ScaleMemory = { target: 2, lastUpMs: 0, lastDownMs: 0, wanted: [] };
    // 6 tasks: 3 slots, 2 of them outside the group: one node wanted, one fewer than now: within the hysteresis.
    expect(decideScale(h, { queued: 6, running: 0, otherSlots: 2 }, m, 10_000_000).target).toBe(2);
    expect(decideScale(h, idle, m, 10_000_000).target).toBe(0);
  });

  it('brings a stored size back within min and max', () => {
    expect(decideScale(policy({ min: 1, max: 2 }), idle, fresh(7), 1000)).toMatchObject({ target: 2 });
    expect(decideScale(policy({ min: 1, max: 2 }), idle, fresh(0), 1000)).toMatchObject({ target: 1 });
  });
});

describe('--autoscale FILE', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-autoscale-file-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads YAML, and names the file in every refusal', () => {
    const ok = path.join(dir, 'ok.yaml');
    fs.writeFileSync(ok, 'max: 3\nprovider: {kind: exec, command: [./scale.sh]}\n');
    expect(readAutoscalePolicy(ok, { HOME: '/root' })).toMatchObject({ max: 3, provider: { command: ['./scale.sh'], env: { HOME: '/root' } } });
    const bad = path.join(dir, 'bad.yaml');
    fs.writeFileSync(bad, 'max: [\n');
    expect(() => readAutoscalePolicy(bad, {})).toThrow(/--autoscale .*bad.yaml: not valid YAML/);
    fs.writeFileSync(bad, 'max: 3\n');
    expect(() => readAutoscalePolicy(bad, {})).toThrow(/bad.yaml: autoscale policy: provider is missing/);
    fs.writeFileSync(bad, 'max: 2\nprovider: {kind: docker, image: loom, engine: "ftp://x"}\n');
    expect(() => readAutoscalePolicy(bad, {})).toThrow(/bad.yaml: provider.engine="ftp:\/\/x": loom does not speak to Docker over ftp/);
    expect(() => readAutoscalePolicy(path.join(dir, 'none.yaml'), {})).toThrow(/none.yaml: cannot read it \(ENOENT\)/);
  });
});
