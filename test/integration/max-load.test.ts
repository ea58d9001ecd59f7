/**
 * --max-load on a real node: with the machine's CPUs made busy by processes
 * outside loom, the node publishes why it holds back, takes no new task, and
 * the task says why it waits; once they stop, it takes the task. The burners
 * are plain busy loops, killed by PID whatever happens.
 */
import { ChildProcess, spawn } from 'child_process';
import * as os from 'os';
import { TaskState } from '../../src/gen/loom';
import { uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(120_000);

describe('--max-load', () => {
  let n: TestNode;
  let burners: ChildProcess[] = [];
  const stopBurners = () => {
    for (const b of burners) if (b.exitCode === null && b.signalCode === null) b.kill('SIGKILL');
    burners = [];
  };
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'hot', { slots: 2, maxLoad: 0.6 });
  });
  afterAll(async () => {
    stopBurners();
    await stopNode(n);
  });

  it('holds back while the CPUs are busy with other work, and says why', async () => {
    burners = Array.from({ length: os.cpus().length + 1 }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
    const held = await waitFor(async () => {
      const me = (await n.api.nodes()).find((x) => x.name === 'hot');
      return me?.draining && /^CPUs \d+% busy \(--max-load 60%; takes tasks again below 50%\)$/.test(me.pausedReason) ? me : undefined;
    }, { what: 'the node to hold back', timeoutMs: 60_000 });
    expect(held.draining).toBe(true);
    expect(n.logs.some((l) => /^not taking new tasks: CPUs \d+% busy/.test(l))).toBe(true);

    const [id] = await n.api.submit([spec(['true'])]);
    await waitFor(async () => /^waiting: no live node takes work \(hot: CPUs \d+% busy/.test((await n.api.get(id)).reason), { what: 'the reason it waits' });
    expect((await n.api.get(id)).state).toBe(TaskState.QUEUED);

    stopBurners();
    expect((await n.api.wait(id)).state).toBe(TaskState.COMPLETED);
    expect(n.logs.some((l) => l === 'CPUs below --max-load again: taking new tasks')).toBe(true);
    await waitFor(async () => (await n.api.nodes()).find((x) => x.name === 'hot')?.pausedReason === '', { what: 'the pause gone from its record' });
  });
});
