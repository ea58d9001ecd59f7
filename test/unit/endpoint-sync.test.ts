/** Which URLs a node's etcd clients follow, from etcd's member list (pure). */
import { givenAreMemberUrls, memberEndpoints } from '../../src/etcd/endpoint-sync';

const m = (ID: string, name: string, clientURLs: string[], isLearner = false) => ({ ID, name, clientURLs, isLearner });

describe('memberEndpoints', () => {
  const members = [
    m('1', 'a', ['http://10.0.0.1:2379']),
    m('2', 'b', ['http://10.0.0.2:2379', 'http://b.example:2379']),
    m('3', 'c', ['http://10.0.0.3:2379'], true),
    m('4', 'd', []),
  ];

  it('lists every voting member with a client URL; learners and unstarted members are left out', () => {
    expect(memberEndpoints(members)).toEqual(['http://10.0.0.1:2379', 'http://10.0.0.2:2379', 'http://b.example:2379']);
  });

  it('puts the local member first, at the URL this node reaches it at', () => {
    expect(memberEndpoints(members, { id: '2', url: 'http://127.0.0.1:2379' })).toEqual([
      'http://127.0.0.1:2379', 'http://10.0.0.1:2379',
    ]);
  });

  it('leaves the local member out while it is a learner, and gives nothing for an empty list', () => {
    expect(memberEndpoints(members, { id: '3', url: 'http://127.0.0.1:2379' })).toEqual([
      'http://10.0.0.1:2379', 'http://10.0.0.2:2379', 'http://b.example:2379',
    ]);
    expect(memberEndpoints([])).toEqual([]);
  });

  it('lists a URL two members advertise once', () => {
    expect(memberEndpoints([m('1', 'a', ['http://x:1']), m('2', 'b', ['http://x:1'])])).toEqual(['http://x:1']);
  });
});

describe('givenAreMemberUrls', () => {
  const members = [m('1', 'a', ['http://10.0.0.1:2379']), m('2', 'b', ['http://10.0.0.2:2379'])];

  it('is true when every --etcd URL is a member advertised client URL (a trailing slash aside)', () => {
    expect(givenAreMemberUrls(['http://10.0.0.2:2379/', 'http://10.0.0.1:2379'], members)).toBe(true);
  });

  it('is false for a proxy, a load balancer name, or nothing given', () => {
    expect(givenAreMemberUrls(['http://10.0.0.1:2379', 'http://127.0.0.1:32000'], members)).toBe(false);
    expect(givenAreMemberUrls(['http://etcd.example:2379'], members)).toBe(false);
    expect(givenAreMemberUrls([], members)).toBe(false);
  });
});
