/** MetricsSampler: CPU utilisation only over a window long enough to mean something. */
import { MetricsSampler } from '../../src/node/machine';

const spin = (ms: number) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // busy: this process uses a CPU
  }
};

describe('MetricsSampler', () => {
  it('does not report a few busy clock ticks as the CPU figure (a node sampled right after its start-up)', () => {
    const sampler = new MetricsSampler();
    spin(40);
    const first = sampler.sample();
    expect(first.cpuUtilization).toBe(0);
    expect(first.memoryTotalBytes).toBeGreaterThan(0);
    expect(first.sampledAtMs).toBeGreaterThan(0);
  });

  it('measures once the window spans enough ticks', () => {
    const sampler = new MetricsSampler();
    // ~100 ticks of all CPUs together: 1 s of one CPU, half a second on two.
    const deadline = Date.now() + 5000;
    let s = sampler.sample();
    while (s.cpuUtilization === 0 && Date.now() < deadline) {
      spin(100);
      s = sampler.sample();
    }
    expect(s.cpuUtilization).toBeGreaterThan(0);
    expect(s.cpuUtilization).toBeLessThanOrEqual(1);
  });
});
