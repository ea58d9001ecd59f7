/** Task specs and submission helpers shared by the scenarios. */
import { TaskSpec } from '../../src/gen/loom';
import { BenchCluster } from './cluster';

export function spec(command: string[], priority?: number): TaskSpec {
  return TaskSpec.fromPartial({ command, priority });
}

/** Submits `n` copies of s in batches of `batch`, one lane per node, batches round-robin over the nodes. */
export async function submitSpread(c: BenchCluster, s: TaskSpec, n: number, batch: number): Promise<string[]> {
  const batches: number[] = [];
  for (let left = n; left > 0; left -= batch) batches.push(Math.min(batch, left));
  const ids: string[][] = new Array(batches.length);
  const lanes = c.nodes.map(async (_, lane) => {
    for (let b = lane; b < batches.length; b += c.nodes.length) {
      ids[b] = await c.api(lane).submit(Array.from({ length: batches[b] }, () => s));
    }
  });
  await Promise.all(lanes);
  return ids.flat();
}

/** Wall-clock now in fractional ms (same clock as the nodes' Date.now()). */
export function wallNow(): number {
  return performance.timeOrigin + performance.now();
}
