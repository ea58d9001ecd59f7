/**
 * changeMembership's retries, with scripted etcd answers: what etcd defers
 * is sent again, a dropped proposal is looked up before it is sent again,
 * and anything else fails at once.
 */
import { changeMembership, JoinOptions } from '../../src/etcd/member-join';

function opts(logged: string[]): JoinOptions {
  return { name: 'n4', peerUrl: 'http://10.0.0.4:2380', peerListen: 'http://10.0.0.4:2380', peerUrls: [], log: (m) => logged.push(m), tlsHostname: '' };
}

/** A change that fails with the given messages, then succeeds. */
function scripted(failures: string[]): { change: () => Promise<void>; calls: () => number } {
  let n = 0;
  return {
    change: async () => {
      const f = failures[n++];
      if (f !== undefined) throw new Error(f);
    },
    calls: () => n,
  };
}

it('waits out one learner at a time and an unhealthy cluster, saying so once each', async () => {
  const logged: string[] = [];
  const s = scripted([
    '9 FAILED_PRECONDITION: etcdserver: too many learner members in cluster',
    '9 FAILED_PRECONDITION: etcdserver: too many learner members in cluster',
    '14 UNAVAILABLE: etcdserver: unhealthy cluster',
  ]);
  await changeMembership(opts(logged), 'add', s.change, async () => false);
  expect(s.calls()).toBe(4);
  expect(logged).toEqual([
    'another member is joining (etcd takes one learner at a time): the member add waits for its promotion',
    'etcd defers the member add until its members have been connected for a while; retrying',
  ]);
});

it('looks a dropped change up before sending it again', async () => {
  const logged: string[] = [];
  const dropped = '4 DEADLINE_EXCEEDED: Deadline exceeded after 6.001s';
  // Landed after all (the answer was lost): not sent again.
  const landed = scripted([dropped]);
  await changeMembership(opts(logged), 'add', landed.change, async () => true);
  expect(landed.calls()).toBe(1);
  // Not landed: sent again.
  const lost = scripted([dropped]);
  await changeMembership(opts(logged), 'add', lost.change, async () => false);
  expect(lost.calls()).toBe(2);
  expect(logged).toEqual(['etcd did not answer the member add (another membership change was pending: another node joining?); retrying']);
});

it('takes a refusal after a timed-out attempt as that attempt having landed, when it did', async () => {
  const logged: string[] = [];
  const s = scripted(['4 DEADLINE_EXCEEDED: Deadline exceeded after 6.001s', '9 FAILED_PRECONDITION: etcdserver: Peer URLs already exists']);
  let looked = 0;
  // Not there when the deadline passed; there when etcd refused the second add.
  await changeMembership(opts(logged), 'add', s.change, async () => ++looked > 1);
  expect(s.calls()).toBe(2);
  expect(looked).toBe(2);
});

it('fails at once on anything else', async () => {
  const s = scripted(['9 FAILED_PRECONDITION: etcdserver: Peer URLs already exists']);
  await expect(changeMembership(opts([]), 'add', s.change, async () => false)).rejects.toThrow('Peer URLs already exists');
  expect(s.calls()).toBe(1);
});
