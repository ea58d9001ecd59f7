import { explainUnplaceable, fits, parseBytes, refusal, shortfall } from '../../src/core/fit';
import { cpuUtilization, detectCapacity, parseCfsQuota, parseCpuMax, parseMemoryLimit, parseMeminfo, parseProcStat, parseCpuList } from '../../src/core/capacity';
import { validateSpec } from '../../src/core/spec';
import { NodeInfo } from '../../src/gen/loom';

const GiB = 1024 ** 3;
const node = (name: string, labels: Record<string, string>, cpu: number, memGiB: number, docker = false) =>
  NodeInfo.fromPartial({ name, labels, capacity: { cpu, memoryBytes: memGiB * GiB, diskBytes: 100 * GiB }, docker });

describe('fit across dimensions', () => {
  const free = { cpu: 1.5, memoryBytes: 2 * GiB, diskBytes: 10 * GiB };
  it('fits only when every dimension fits', () => {
    expect(fits({ cpu: 1.5, memoryBytes: 2 * GiB, diskBytes: 10 * GiB }, free)).toBe(true);
    expect(shortfall({ cpu: 2, memoryBytes: 0, diskBytes: 0 }, free)).toMatch(/^cpu/);
    expect(shortfall({ cpu: 0, memoryBytes: 3 * GiB, diskBytes: 0 }, free)).toMatch(/^memory/);
    expect(shortfall({ cpu: 0, memoryBytes: 0, diskBytes: 11 * GiB }, free)).toMatch(/^disk/);
    expect(fits({ cpu: 0.1 + 0.2, memoryBytes: 0, diskBytes: 0 }, { ...free, cpu: 0.3 })).toBe(true);
  });

  it('parses sizes', () => {
    expect(parseBytes('256M')).toBe(256 * 1024 ** 2);
    expect(parseBytes('1.5G')).toBe(1.5 * GiB);
    expect(parseBytes('512Ki')).toBe(512 * 1024);
    expect(parseBytes('100')).toBe(100);
    expect(parseBytes('lots')).toBeUndefined();
  });
});

describe('constraints and placement', () => {
  const amd = node('a', { arch: 'x64', zone: 'eu' }, 2, 4);
  const big = node('b', { arch: 'x64', zone: 'us' }, 16, 64, true);
  it('matches k=v and k!=v, pins, containers and capacity', () => {
    const s = (x: object) => validateSpec({ command: ['true'], ...x });
    expect(refusal(s({ constraints: [{ key: 'zone', op: '=', value: 'eu' }] }), amd)).toBeUndefined();
    expect(refusal(s({ constraints: [{ key: 'zone', op: '=', value: 'eu' }] }), big)).toBe('needs zone=eu');
    expect(refusal(s({ constraints: [{ key: 'zone', op: '!=', value: 'eu' }] }), amd)).toBe('refuses zone=eu');
    expect(refusal(s({ pinNode: 'b' }), amd)).toBe('pinned to node b');
    expect(refusal(s({ container: { image: 'x', pull: '', mounts: [], network: '' } }), amd)).toBe('needs a Docker engine');
    expect(refusal(s({ resources: { cpu: 8, memoryBytes: 0, diskBytes: 0 } }), amd)).toMatch(/too big: cpu 8/);
    expect(refusal(s({ resources: { cpu: 8, memoryBytes: 0, diskBytes: 0 } }), big)).toBeUndefined();
  });

  it('explains why no node can run a task', () => {
    const s = (x: object) => validateSpec({ command: ['true'], ...x });
    expect(explainUnplaceable(s({ constraints: [{ key: 'arch', op: '=', value: 'arm64' }] }), [amd, big])).toBe('no node has arch=arm64');
    expect(explainUnplaceable(s({ resources: { cpu: 64, memoryBytes: 0, diskBytes: 0 } }), [amd, big])).toMatch(/no node can run it: a: too big: cpu 64/);
    expect(explainUnplaceable(s({ pinNode: 'zz' }), [amd, big])).toBe('node zz is not live');
    expect(explainUnplaceable(s({}), [amd, big])).toBeUndefined();
    expect(explainUnplaceable(s({}), [])).toBe('no live node takes work');
    const paused = { ...amd, draining: true, pausedReason: 'CPUs 97% busy (--max-load 90%; takes tasks again below 80%)' };
    expect(explainUnplaceable(s({}), [paused, { ...big, draining: true }])).toBe('no live node takes work (a: CPUs 97% busy (--max-load 90%; takes tasks again below 80%))');
    const image = { image: 'busybox', pull: 'never', mounts: [], network: '' };
    expect(explainUnplaceable(s({ container: image }), [amd, node('c', {}, 2, 4)])).toBe('no live node has a Docker engine');
    expect(explainUnplaceable(s({ container: image }), [amd, big])).toBeUndefined();
  });
});

describe('capacity detection parsing', () => {
  it('reads /proc/stat and computes utilisation', () => {
    const a = parseProcStat('cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n')!;
    const b = parseProcStat('cpu  150 0 150 900 0 0 0 0 0 0\n')!;
    expect(cpuUtilization(a, b)).toBeCloseTo(0.5);
    expect(parseProcStat('garbage')).toBeUndefined();
  });
  it('measures only the CPUs the node may run on: a busy CPU1 shows for a node pinned to it, not for one on CPU0', () => {
    // CPU0 idle throughout, CPU1 busy throughout; the aggregate line is half busy.
    const t0 = 'cpu  100 0 0 100 0 0 0 0\ncpu0 0 0 0 100 0 0 0 0\ncpu1 100 0 0 0 0 0 0 0\n';
    const t1 = 'cpu  200 0 0 200 0 0 0 0\ncpu0 0 0 0 200 0 0 0 0\ncpu1 200 0 0 0 0 0 0 0\n';
    const busy = (cpus?: number[]) => cpuUtilization(parseProcStat(t0, cpus)!, parseProcStat(t1, cpus)!);
    expect(busy()).toBeCloseTo(0.5);
    expect(busy([1])).toBeCloseTo(1);
    expect(busy([0])).toBeCloseTo(0);
    expect(busy([0, 1])).toBeCloseTo(0.5);
    // A CPU the file does not list: the aggregate line.
    expect(busy([7])).toBeCloseTo(0.5);
    expect(parseCpuList('Name:\tnode\nCpus_allowed_list:\t0-2,5\n')).toEqual([0, 1, 2, 5]);
    expect(parseCpuList('Cpus_allowed_list:\t3-1\n')).toBeUndefined();
    expect(parseCpuList('nothing')).toBeUndefined();
  });
  it('reads meminfo and cgroup limits (v1 and v2)', () => {
    expect(parseMeminfo('MemTotal:  2048 kB\nMemFree: 10 kB\nMemAvailable: 1024 kB\n')).toEqual({ totalBytes: 2048 * 1024, availableBytes: 1024 * 1024 });
    expect(parseMemoryLimit('max')).toBeUndefined();
    expect(parseMemoryLimit('9223372036854771712')).toBeUndefined();
    expect(parseMemoryLimit('536870912\n')).toBe(536870912);
    expect(parseCpuMax('max 100000')).toBeUndefined();
    expect(parseCpuMax('150000 100000')).toBe(1.5);
    expect(parseCfsQuota('-1', '100000')).toBeUndefined();
    expect(parseCfsQuota('50000', '100000')).toBe(0.5);
  });
  it('narrows the machine by cgroup limits; operator flags win', () => {
    expect(detectCapacity({ cpuCount: 8, memTotalBytes: 16 * GiB, cgroupCpus: 2, cgroupMemoryBytes: GiB, diskBytes: 5 })).toEqual({ cpu: 2, memoryBytes: GiB, diskBytes: 5 });
    expect(detectCapacity({ cpuCount: 8, memTotalBytes: 16 * GiB, diskBytes: 5, override: { cpu: 3 } }).cpu).toBe(3);
  });
});
