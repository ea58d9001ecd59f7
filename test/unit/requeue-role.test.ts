import { requeueRole } from '../../src/node/requeuer';

describe('requeue role', () => {
  it('gives a lost incarnation one first and one backup survivor, the same in every view', () => {
    const survivors = Array.from({ length: 30 }, (_, i) => `n${i}`);
    const firsts = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const turn = `gone${i}/${1000 + i}`;
      const roles = survivors.map((s) => requeueRole(s, survivors, turn));
      expect(roles.filter((r) => r === 'first')).toHaveLength(1);
      expect(roles.filter((r) => r === 'backup')).toHaveLength(1);
      const first = survivors[roles.indexOf('first')];
      firsts.set(first, (firsts.get(first) ?? 0) + 1);
    }
    expect(firsts.size).toBeGreaterThan(20); // spread over the survivors, not one node
  });

  it('lets both of two survivors act, and a lone survivor act at once', () => {
    expect(requeueRole('a', ['a'], 'x/1')).toBe('first');
    const roles = ['a', 'b'].map((s) => requeueRole(s, ['a', 'b'], 'x/1')).sort();
    expect(roles).toEqual(['backup', 'first']);
  });
});
