/** Reads the machine's capacity and metrics (/proc, cgroups, statfs). */
import * as fs from 'fs';
import * as os from 'os';
import { NodeMetrics, Resources } from '../gen/loom';
import {
  CpuTimes, cpuUtilization, detectCapacity, parseCpuList, parseCfsQuota, parseCpuMax, parseMemoryLimit, parseMeminfo, parseProcStat,
} from '../core/capacity';

function read(path: string): string | undefined {
  try {
    return fs.readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The cgroup (v2 unified, else v1 memory/cpu) this process is in, as paths. */
function cgroupFiles(): { memory?: string; cpuMax?: string; cfsQuota?: string; cfsPeriod?: string } {
  const self = read('/proc/self/cgroup') ?? '';
  const v2 = /^0::(.*)$/m.exec(self)?.[1];
  const v1mem = /^\d+:memory:(.*)$/m.exec(self)?.[1];
  const v1cpu = /^\d+:(?:[^:]*,)?cpu(?:,[^:]*)?:(.*)$/m.exec(self)?.[1];
  if (fs.existsSync('/sys/fs/cgroup/cgroup.controllers') && v2 !== undefined) {
    return { memory: `/sys/fs/cgroup${v2}/memory.max`, cpuMax: `/sys/fs/cgroup${v2}/cpu.max` };
  }
  return {
    memory: v1mem !== undefined ? `/sys/fs/cgroup/memory${v1mem}/memory.limit_in_bytes` : undefined,
    cfsQuota: v1cpu !== undefined ? `/sys/fs/cgroup/cpu${v1cpu}/cpu.cfs_quota_us` : undefined,
    cfsPeriod: v1cpu !== undefined ? `/sys/fs/cgroup/cpu${v1cpu}/cpu.cfs_period_us` : undefined,
  };
}

export function machineCapacity(dataDir: string, override: Partial<Resources>): Resources {
  const files = cgroupFiles();
  const mem = parseMeminfo(read('/proc/meminfo') ?? '');
  let diskBytes = 0;
  try {
    const st = fs.statfsSync(dataDir);
    diskBytes = st.bavail * st.bsize;
  } catch {
    // unknown: 0 means tasks requesting disk will not fit unless --disk is given
  }
  return detectCapacity({
    cpuCount: os.availableParallelism?.() ?? os.cpus().length,
    memTotalBytes: mem?.totalBytes ?? os.totalmem(),
    cgroupCpus: files.cpuMax ? parseCpuMax(read(files.cpuMax)) : parseCfsQuota(files.cfsQuota && read(files.cfsQuota), files.cfsPeriod && read(files.cfsPeriod)),
    cgroupMemoryBytes: files.memory ? parseMemoryLimit(read(files.memory)) : undefined,
    diskBytes,
    override,
  });
}

/** Samples CPU utilisation between calls, plus memory and load. */
/** Clock ticks (all CPUs together) a CPU utilisation figure needs: 1 s of one CPU at USER_HZ 100. */
const MIN_CPU_WINDOW_TICKS = 100;

export class MetricsSampler {
  /** The CPUs this node may run on (its tasks inherit them): what its CPU figure measures. */
  private readonly cpus = parseCpuList(read('/proc/self/status') ?? '');
  private prev: CpuTimes | undefined = parseProcStat(read('/proc/stat') ?? '', this.cpus);
  private last: NodeMetrics = { cpuUtilization: 0, memoryTotalBytes: 0, memoryAvailableBytes: 0, load1: 0, sampledAtMs: 0 };

  sample(): NodeMetrics {
    const cur = parseProcStat(read('/proc/stat') ?? '', this.cpus);
    const mem = parseMeminfo(read('/proc/meminfo') ?? '');
    // A window of a few clock ticks says little (a node sampled right after
    // its own busy start-up read 100 %): keep the last figure and measure
    // over a longer window next time.
    let util = this.last.cpuUtilization;
    if (cur && this.prev && cur.total - this.prev.total >= MIN_CPU_WINDOW_TICKS) {
      util = cpuUtilization(this.prev, cur);
      this.prev = cur;
    } else if (cur && !this.prev) {
      this.prev = cur;
    }
    this.last = {
      cpuUtilization: Math.round(util * 1000) / 1000,
      memoryTotalBytes: mem?.totalBytes ?? os.totalmem(),
      memoryAvailableBytes: mem?.availableBytes ?? os.freemem(),
      load1: Math.round(os.loadavg()[0] * 100) / 100,
      sampledAtMs: Date.now(),
    };
    return this.last;
  }

  get latest(): NodeMetrics {
    return this.last;
  }
}

/** Labels every node carries. */
export function automaticLabels(name: string): Record<string, string> {
  return { arch: os.arch(), os: os.platform(), hostname: os.hostname(), node: name };
}
