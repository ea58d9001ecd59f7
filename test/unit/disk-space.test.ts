/** --min-free-disk: the flag, the floor it means on a filesystem, and the margin before work resumes. */
import * as fs from 'fs';
import * as os from 'os';
import { parseNodeArgs } from '../../src/bin/node-command';
import { floorBytes, isLowOnDisk, lowDiskReason, parseMinFreeDisk } from '../../src/core/disk-space';
import { LoomError } from '../../src/core/errors';
import { sampleDisk } from '../../src/node/disk-watch';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function failure(fn: () => unknown): LoomError {
  try {
    fn();
  } catch (e) {
    return e as LoomError;
  }
  throw new Error('expected an error');
}

describe('--min-free-disk', () => {
  it('takes a size, a percentage, both or 0, and defaults to the smaller of 1 GiB and 5%', () => {
    expect(parseMinFreeDisk('512M')).toEqual({ bytes: 512 * MiB, percent: 0 });
    expect(parseMinFreeDisk(' 5% ')).toEqual({ bytes: 0, percent: 5 });
    expect(parseMinFreeDisk('0.5%')).toEqual({ bytes: 0, percent: 0.5 });
    expect(parseMinFreeDisk('0')).toEqual({ bytes: 0, percent: 0 });
    expect(parseMinFreeDisk('5%, 2G')).toEqual({ bytes: 2 * GiB, percent: 5 });
    expect(parseNodeArgs([], {}).minFreeDisk).toEqual({ bytes: GiB, percent: 5 });
    // The smaller: 1 GiB on a big disk, 5% of a small one (a 64 MiB volume keeps 3.2 MiB).
    expect(floorBytes({ bytes: GiB, percent: 5 }, 200 * GiB)).toBe(GiB);
    expect(floorBytes({ bytes: GiB, percent: 5 }, 64 * MiB)).toBe(Math.ceil(3.2 * MiB));
    expect(lowDiskReason({ freeBytes: MiB, totalBytes: 64 * MiB }, { bytes: GiB, percent: 5 })).toBe(
      'data dir low on space: 1MiB free < --min-free-disk 3.2MiB (the smaller of 1GiB and 5% of 64MiB)',
    );
    expect(parseNodeArgs(['--min-free-disk', '10%'], {}).minFreeDisk).toEqual({ bytes: 0, percent: 10 });
  });

  it('refuses anything else with INVALID_ARGUMENT and an example', () => {
    for (const bad of ['lots', '-1G', '5%%', '1G5', '', '1G,2G', '5%,6%', '1G,', '1G,5%,2G']) {
      const e = failure(() => parseNodeArgs([`--min-free-disk=${bad}`], {}));
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toMatch(/invalid --min-free-disk .*\(examples: 1G, 512M, 5%, 1G,5% = the smaller of the two, 0 = off\)/);
    }
    expect(failure(() => parseMinFreeDisk('100%')).message).toBe('--min-free-disk 100%: a percentage must be below 100%');
  });

  it('turns low below the floor and back only a tenth above it', () => {
    const m = { bytes: 100 * MiB, percent: 0 };
    const at = (freeBytes: number, wasLow: boolean) => isLowOnDisk({ freeBytes, totalBytes: 10 * GiB }, m, wasLow);
    expect(at(100 * MiB, false)).toBe(false);
    expect(at(100 * MiB - 1, false)).toBe(true);
    // Low: stays low until 110 MiB are free, so a floor crossed by a few bytes of log does not flap.
    expect(at(105 * MiB, true)).toBe(true);
    expect(at(110 * MiB, true)).toBe(false);
    expect(isLowOnDisk({ freeBytes: 0, totalBytes: GiB }, { bytes: 0, percent: 0 }, false)).toBe(false);
  });

  it('measures a percentage against the filesystem and names both in the reason', () => {
    const m = { bytes: 0, percent: 5 };
    expect(floorBytes(m, 200 * GiB)).toBe(10 * GiB);
    expect(isLowOnDisk({ freeBytes: 9 * GiB, totalBytes: 200 * GiB }, m, false)).toBe(true);
    expect(lowDiskReason({ freeBytes: 9 * GiB, totalBytes: 200 * GiB }, m)).toBe(
      'data dir low on space: 9GiB free < --min-free-disk 10GiB (5% of 200GiB)',
    );
  });

  it('reads free space with statfs (bavail: what a non-root writer may use)', async () => {
    const s = await sampleDisk(os.tmpdir());
    const st = fs.statfsSync(os.tmpdir());
    expect(s.totalBytes).toBe(st.blocks * st.bsize);
    expect(s.freeBytes).toBeGreaterThan(0);
    expect(s.freeBytes).toBeLessThanOrEqual(st.bfree * st.bsize);
  });
});
