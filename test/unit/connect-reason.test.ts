import { connectReason, probeProblem } from '../../src/core/connect-reason';

describe('connectReason', () => {
  it('names the system error of a failed connection', () => {
    expect(connectReason('No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:2379')).toBe('connection refused');
    expect(connectReason('getaddrinfo ENOTFOUND etcd.example')).toBe('unknown host');
    expect(connectReason('connect EHOSTUNREACH 10.0.0.9:2379')).toBe('host unreachable');
    expect(connectReason('No connection established. Last error: null (2026-11-30T16:00:00.000Z)')).toBe('connection failed');
  });
});

describe('probeProblem', () => {
  it('a deadline names the probe deadline', () => {
    expect(probeProblem(new Error('4 DEADLINE_EXCEEDED: Deadline exceeded after 2.001s'), 2000)).toBe('no answer within 2 s');
  });
  it('anything else: the connection reason, without the gRPC status prefix, first line only', () => {
    expect(probeProblem(new Error('14 UNAVAILABLE: connect ECONNREFUSED 127.0.0.1:2379\nstack'), 2000)).toBe('connection refused');
    expect(probeProblem('etcdserver: rpc not supported for learner', 2000)).toBe('etcdserver: rpc not supported for learner');
  });
});
