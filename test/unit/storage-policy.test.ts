/** When submits stop and what the maintaining node does, from what etcd reported (core/storage.ts). */
import { maintenancePlan, storageFull, storageRefusal, StorageState } from '../../src/core/storage';

const MiB = 1024 * 1024;
const state = (sizes: [number, number][], nospace = false): StorageState => ({
  quotaBytes: 100 * MiB,
  nospace,
  members: sizes.map(([dbSize, inUse], i) => ({ endpoint: `m${i}`, dbSize: dbSize * MiB, dbSizeInUse: inUse * MiB })),
});

test('submits stop once the largest member would pass half the quota, and under the alarm', () => {
  expect(storageRefusal(state([[49, 49], [10, 10]]))).toBeUndefined();
  expect(storageRefusal(state([[10, 10], [51, 51]]))).toMatch(/etcd member m1 would hold 51\.0 MiB of its 100\.0 MiB quota; submits stop at 50%/);
  expect(storageRefusal(state([[1, 1]], true))).toMatch(/NOSPACE alarm/);
  const err = storageFull('why');
  expect([err.code, err.exitCode, err.message]).toEqual(['RESOURCE_EXHAUSTED', 6, 'cluster storage full: why']);
});

test('compaction from 40%, defragmentation only of members at the limit with a quarter free, disarm once all are under it', () => {
  expect(maintenancePlan(state([[39, 39]]))).toEqual({ compact: false, defrag: [], disarm: false });
  expect(maintenancePlan(state([[41, 20]]))).toEqual({ compact: true, defrag: [], disarm: false });
  // m0 at the limit with 40% free; m1 at the limit but nearly full of live data.
  expect(maintenancePlan(state([[60, 36], [60, 55]]))).toEqual({ compact: true, defrag: ['m0'], disarm: false });
  expect(maintenancePlan(state([[100, 10]], true))).toEqual({ compact: true, defrag: ['m0'], disarm: false });
  expect(maintenancePlan(state([[10, 10]], true))).toEqual({ compact: true, defrag: [], disarm: true });
  // No member answered: nothing is known, nothing is disarmed.
  expect(maintenancePlan(state([], true)).disarm).toBe(false);
});
