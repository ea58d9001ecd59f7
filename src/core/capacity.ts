/**
 * Parsing of what the machine reports about itself (/proc, cgroups) into
 * capacity and metrics. Pure: the node reads the files, this reads text.
 */
import { Resources } from '../gen/loom';

export interface CpuTimes {
  idle: number;
  total: number;
}

function cpuTimesOf(line: string): CpuTimes | undefined {
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  if (v.length < 4 || v.some((x) => !Number.isFinite(x))) return undefined;
  const idle = v[3] + (v[4] ?? 0); // idle + iowait
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // excludes guest (counted in user)
  return { idle, total };
}

/**
 * CPU times from /proc/stat: the aggregate "cpu" line, or with `cpus` (the
 * CPUs this process may run on, see parseCpuList) the sum of those CPUs'
 * lines, so a node pinned to some CPUs (taskset, a cpuset) measures the
 * ones its tasks share, not the whole machine.
 */
export function parseProcStat(text: string, cpus?: readonly number[]): CpuTimes | undefined {
  const lines = text.split('\n');
  if (cpus && cpus.length > 0) {
    const wanted = new Set(cpus.map((c) => `cpu${c}`));
    const sum = { idle: 0, total: 0 };
    let found = 0;
    for (const l of lines) {
      const name = /^cpu\d+\s/.exec(l)?.[0].trim();
      if (!name || !wanted.has(name)) continue;
      const t = cpuTimesOf(l);
      if (!t) return undefined;
      sum.idle += t.idle;
      sum.total += t.total;
      found++;
    }
    if (found === wanted.size) return sum;
  }
  const line = lines.find((l) => /^cpu\s/.test(l));
  return line ? cpuTimesOf(line) : undefined;
}

/** The CPUs of a "Cpus_allowed_list: 0-3,6" line of /proc/self/status; undefined if absent or malformed. */
export function parseCpuList(statusText: string): number[] | undefined {
  const m = /^Cpus_allowed_list:\s*(\S+)\s*$/m.exec(statusText);
  if (!m) return undefined;
  const out: number[] = [];
  for (const part of m[1].split(',')) {
    const r = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!r) return undefined;
    const lo = Number(r[1]);
    const hi = r[2] === undefined ? lo : Number(r[2]);
    if (hi < lo || hi - lo > 4096) return undefined;
    for (let c = lo; c <= hi; c++) out.push(c);
  }
  return out;
}

/** Busy fraction (0..1) between two samples. */
export function cpuUtilization(prev: CpuTimes, cur: CpuTimes): number {
  const total = cur.total - prev.total;
  if (total <= 0) return 0;
  return Math.min(1, Math.max(0, 1 - (cur.idle - prev.idle) / total));
}

export function parseMeminfo(text: string): { totalBytes: number; availableBytes: number } | undefined {
  const get = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s*kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const totalBytes = get('MemTotal');
  if (totalBytes === undefined) return undefined;
  return { totalBytes, availableBytes: get('MemAvailable') ?? get('MemFree') ?? 0 };
}

/** cgroup v2 memory.max or v1 memory.limit_in_bytes; undefined = no limit. */
export function parseMemoryLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === '' || t === 'max') return undefined;
  const n = Number(t);
  // v1 reports "no limit" as a huge page-aligned number.
  if (!Number.isFinite(n) || n <= 0 || n >= 2 ** 60) return undefined;
  return n;
}

/** cgroup v2 cpu.max ("max 100000" | "200000 100000") -> cores; undefined = no limit. */
export function parseCpuMax(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === 'max' || quota === undefined) return undefined;
  const q = Number(quota);
  const p = Number(period ?? 100000);
  return q > 0 && p > 0 ? q / p : undefined;
}

/** cgroup v1 cfs quota/period -> cores; undefined = no limit. */
export function parseCfsQuota(quota: string | undefined, period: string | undefined): number | undefined {
  if (quota === undefined || period === undefined) return undefined;
  const q = Number(quota.trim());
  const p = Number(period.trim());
  return q > 0 && p > 0 ? q / p : undefined;
}

export interface CapacityInputs {
  cpuCount: number;
  memTotalBytes: number;
  cgroupCpus?: number;
  cgroupMemoryBytes?: number;
  diskBytes: number;
  /** Operator overrides (--cpu, --memory, --disk). */
  override?: Partial<Resources>;
}

/** What the node offers: the machine, narrowed by cgroup limits, or the operator's figures. */
export function detectCapacity(i: CapacityInputs): Resources {
  const cpu = i.override?.cpu || Math.min(i.cpuCount, i.cgroupCpus ?? Infinity);
  const memoryBytes = i.override?.memoryBytes || Math.min(i.memTotalBytes, i.cgroupMemoryBytes ?? Infinity);
  const diskBytes = i.override?.diskBytes || i.diskBytes;
  return { cpu, memoryBytes, diskBytes };
}
