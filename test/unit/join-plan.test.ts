import { initialClusterAfterJoin, ListedMember, memberIdHex, planJoin, sameCluster } from '../../src/etcd/join-plan';
import { thrownBy } from '../support/errors';

const url = (n: number) => `http://10.0.0.${n}:2380`;
function member(n: number, opts: { name?: string; learner?: boolean } = {}): ListedMember {
  return { ID: String(4096 + n), name: opts.name ?? `n${n}`, peerURLs: [url(n)], clientURLs: [`http://10.0.0.${n}:2379`], isLearner: opts.learner };
}
const who = (name: string, n: number) => ({ name, peerUrl: url(n), clientUrls: ['http://10.0.0.1:2379'] });

describe('planJoin', () => {
  const three = [member(1), member(2), member(3)];

  it('adds a member the cluster does not have', () => {
    expect(planJoin(three, who('n4', 4))).toEqual({ kind: 'add' });
  });

  it('replaces a started member of the same name and URL (its data is lost)', () => {
    expect(planJoin(three, who('n3', 3))).toEqual({ kind: 'replace', member: three[2] });
  });

  it('starts a member added at its URL but never started', () => {
    const half = [...three, member(4, { name: '', learner: true })];
    expect(planJoin(half, who('n4', 4))).toEqual({ kind: 'resume', member: half[3] });
  });

  it('refuses its name at another URL, its URL under another name, and another half-done join', () => {
    const moved = thrownBy(() => planJoin(three, who('n3', 9)));
    expect(moved.code).toBe('INVALID_ARGUMENT');
    expect(moved.message).toContain(`the cluster's member "n3" has peer URL ${url(3)}, not ${url(9)}`);
    expect(moved.message).toContain('etcdctl member remove 1003');

    const impostor = thrownBy(() => planJoin(three, who('n9', 3)));
    expect(impostor.message).toContain(`peer URL ${url(3)} belongs to member "n3", not "n9"`);

    const other = thrownBy(() => planJoin([...three, member(5, { name: '' })], who('n4', 4)));
    expect(other.code).toBe('INVALID_STATE');
    expect(other.message).toContain(`member(s) at ${url(5)} were added but never started`);
    expect(other.message).toContain('loom members remove ID: 1005');
  });

  it('refuses an 8th voting member, pointing at --etcd; learners do not count', () => {
    const seven = [1, 2, 3, 4, 5, 6, 7].map((n) => member(n));
    const full = thrownBy(() => planJoin(seven, who('n8', 8)));
    expect(full.code).toBe('INVALID_ARGUMENT');
    expect(full.message).toContain('already has 7 voting etcd members');
    expect(full.message).toContain('--etcd http://10.0.0.1:2379');
    const sixAndLearner = [...seven.slice(0, 6), member(7, { learner: true })];
    expect(planJoin(sixAndLearner, who('n8', 8))).toEqual({ kind: 'add' });
  });
});

describe('initialClusterAfterJoin', () => {
  it('lists the started members and this one, by name, without its old entry or unstarted ones', () => {
    const members = [member(2), member(1), member(3), member(4, { name: '' })];
    expect(initialClusterAfterJoin(members, { name: 'n4', peerUrl: url(4) })).toEqual([
      { name: 'n1', url: url(1) },
      { name: 'n2', url: url(2) },
      { name: 'n3', url: url(3) },
      { name: 'n4', url: url(4) },
    ]);
    expect(initialClusterAfterJoin(members, { name: 'n3', peerUrl: url(3) }).map((m) => m.name)).toEqual(['n1', 'n2', 'n3']);
  });
});

describe('sameCluster', () => {
  const e = (n: number) => `n${n}=${url(n)}`;
  it('accepts the configured members, and members added or removed since', () => {
    expect(sameCluster(e(1), [e(1), e(2), e(3)], [e(1), e(2), e(3)])).toBe(true);
    expect(sameCluster(e(1), [e(1), e(2), e(3)], [e(1), e(2), e(3), e(4)])).toBe(true);
    expect(sameCluster(e(1), [e(1), e(2), e(3)], [e(1), e(3)])).toBe(true);
    expect(sameCluster(e(1), [e(1)], [e(1), e(2)])).toBe(true);
  });
  it('refuses a cluster without this member, or with none of the configured others', () => {
    expect(sameCluster(e(1), [e(1), e(2)], [e(2), e(3)])).toBe(false);
    expect(sameCluster(e(1), [e(1), e(2), e(3)], [e(1)])).toBe(false);
    expect(sameCluster(e(1), [e(1), e(2)], [e(1), e(5), e(6)])).toBe(false);
    expect(sameCluster(`n1=${url(9)}`, [`n1=${url(9)}`], [e(1)])).toBe(false);
  });
});

it('memberIdHex prints an int64 id the way etcdctl does', () => {
  expect(memberIdHex('9609715314508321598')).toBe('855c912a01e6533e');
  expect(memberIdHex('not a number')).toBe('not a number');
});
