import { KillEscalation, StopSignal } from '../../src/runner/kill-escalation';

describe('KillEscalation', () => {
  let sent: StopSignal[];
  let k: KillEscalation;
  beforeEach(() => {
    jest.useFakeTimers();
    sent = [];
    k = new KillEscalation((s) => sent.push(s));
  });
  afterEach(() => jest.useRealTimers());

  it('sends SIGTERM at once and SIGKILL when the grace is over', () => {
    k.stop(1000);
    expect(sent).toEqual(['SIGTERM']);
    jest.advanceTimersByTime(999);
    expect(sent).toEqual(['SIGTERM']);
    jest.advanceTimersByTime(1);
    expect(sent).toEqual(['SIGTERM', 'SIGKILL']);
  });

  it('lets a later stop bring the SIGKILL forward but not push it back, with one SIGTERM', () => {
    k.stop(1000);
    k.stop(5000);
    jest.advanceTimersByTime(1000);
    expect(sent).toEqual(['SIGTERM', 'SIGKILL']);

    sent = [];
    const k2 = new KillEscalation((s) => sent.push(s));
    k2.stop(5000);
    jest.advanceTimersByTime(100);
    k2.stop(200);
    jest.advanceTimersByTime(200);
    expect(sent).toEqual(['SIGTERM', 'SIGKILL']);
  });

  it('kills at once for a grace of 0, without SIGTERM', () => {
    k.stop(0);
    expect(sent).toEqual(['SIGKILL']);
    jest.advanceTimersByTime(10_000);
    expect(sent).toEqual(['SIGKILL']);
  });

  it('sends nothing more once what it stops has exited', () => {
    k.stop(1000);
    k.settle();
    jest.advanceTimersByTime(5000);
    k.stop(0);
    expect(sent).toEqual(['SIGTERM']);
  });
});
