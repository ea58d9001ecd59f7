/** formatMetrics: the Prometheus text exposition format (0.0.4). */
import { formatMetrics } from '../../src/node/metrics-endpoint';

describe('formatMetrics', () => {
  it('writes HELP and TYPE, then one line per sample, labels quoted and escaped', () => {
    const text = formatMetrics([
      { name: 'loom_slots', help: 'Tasks run at once.', type: 'gauge', samples: [{ value: 4 }] },
      {
        name: 'loom_task_results_total', help: 'Results\nby state \\ kind', type: 'counter',
        samples: [{ labels: { state: 'completed' }, value: 12 }, { labels: { state: 'a"b\\c\nd' }, value: 1 }],
      },
      { name: 'x', help: 'special values', type: 'gauge', samples: [{ value: NaN }, { value: Infinity }, { value: -Infinity }] },
      { name: 'empty_total', help: 'no samples yet', type: 'counter', samples: [] },
    ]);
    expect(text).toBe(
      [
        '# HELP loom_slots Tasks run at once.',
        '# TYPE loom_slots gauge',
        'loom_slots 4',
        '# HELP loom_task_results_total Results\\nby state \\\\ kind',
        '# TYPE loom_task_results_total counter',
        'loom_task_results_total{state="completed"} 12',
        'loom_task_results_total{state="a\\"b\\\\c\\nd"} 1',
        '# HELP x special values',
        '# TYPE x gauge',
        'x NaN',
        'x +Inf',
        'x -Inf',
        '# HELP empty_total no samples yet',
        '# TYPE empty_total counter',
        '',
      ].join('\n'),
    );
  });

  it('refuses a name the format does not allow', () => {
    expect(() => formatMetrics([{ name: 'bad-name', help: '', type: 'gauge', samples: [] }])).toThrow(/bad metric name/);
  });
});
