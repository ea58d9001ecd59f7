import { isTerminal, nextState, retryDelayMs, TaskEvent, TaskState, parseStateName, stateName } from '../../src/core/lifecycle';

const EVENTS: TaskEvent[] = ['claim', 'succeed', 'fail', 'cancel', 'node_lost', 'release'];
const STATES = [TaskState.QUEUED, TaskState.RUNNING, TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.LOST];
const ctx = { attempt: 1, retries: 0, restartOnNodeFailure: true };

describe('task lifecycle', () => {
  // Every (state, event) pair, with the expected outcome (undefined = refused).
  const expected: Record<number, Partial<Record<TaskEvent, TaskState>>> = {
    [TaskState.QUEUED]: { claim: TaskState.RUNNING, cancel: TaskState.CANCELLED },
    [TaskState.RUNNING]: {
      succeed: TaskState.COMPLETED,
      fail: TaskState.FAILED,
      cancel: TaskState.CANCELLED,
      node_lost: TaskState.QUEUED,
      release: TaskState.QUEUED,
    },
  };
  for (const state of STATES) {
    for (const event of EVENTS) {
      const want = expected[state]?.[event];
      it(`${stateName(state)} --${event}--> ${want === undefined ? 'refused' : stateName(want)}`, () => {
        expect(nextState(state, event, ctx)).toBe(want);
      });
    }
  }

  it('retries a failure while attempts remain', () => {
    expect(nextState(TaskState.RUNNING, 'fail', { ...ctx, attempt: 1, retries: 2 })).toBe(TaskState.QUEUED);
    expect(nextState(TaskState.RUNNING, 'fail', { ...ctx, attempt: 2, retries: 2 })).toBe(TaskState.QUEUED);
    expect(nextState(TaskState.RUNNING, 'fail', { ...ctx, attempt: 3, retries: 2 })).toBe(TaskState.FAILED);
  });

  it('computes retry backoff, fixed or exponential, capped', () => {
    expect(retryDelayMs(0, true, 3)).toBe(0);
    expect(retryDelayMs(500, false, 3)).toBe(500);
    expect([1, 2, 3].map((f) => retryDelayMs(500, true, f))).toEqual([500, 1000, 2000]);
    expect(retryDelayMs(1000, true, 40)).toBe(3_600_000);
  });

  it('marks a task LOST on node loss when it must not restart', () => {
    expect(nextState(TaskState.RUNNING, 'node_lost', { ...ctx, restartOnNodeFailure: false })).toBe(TaskState.LOST);
  });

  it('knows terminal states and state names', () => {
    expect(STATES.filter(isTerminal)).toEqual([TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.LOST]);
    expect(parseStateName('Running')).toBe(TaskState.RUNNING);
    expect(parseStateName('bogus')).toBeUndefined();
  });
});
