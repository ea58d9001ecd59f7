import { urgentRefusal } from '../../src/core/urgency';
import { parseNodeArgs } from '../../src/bin/node-command';

describe('who may submit urgent priorities (urgentRefusal)', () => {
  const policy = { urgentPriority: 900, submitters: new Set(['pager']) };

  it('lets anyone submit below the urgent threshold', () => {
    expect(urgentRefusal([0, 100, 899], { name: 'alice', admin: false }, policy)).toBeUndefined();
  });

  it('refuses the threshold itself and above to others, naming the limit and who may', () => {
    const err = urgentRefusal([900], { name: 'alice', admin: false }, policy)!;
    expect(err.code).toBe('PERMISSION_DENIED');
    expect(err.message).toBe(
      'alice may not submit priority 900: priorities from 900 (--urgent-priority) are urgent, for admins (--admin) and identities ' +
        'the node names with --urgent-submitter only; use a priority below 900',
    );
    expect(urgentRefusal([5, 100, 999], { name: 'alice', admin: false }, policy)?.message).toMatch(/^task 2: alice may not submit priority 999:/);
  });

  it('lets admins and --urgent-submitter identities submit them', () => {
    expect(urgentRefusal([999], { name: 'ops', admin: true }, policy)).toBeUndefined();
    expect(urgentRefusal([950], { name: 'pager', admin: false }, policy)).toBeUndefined();
  });

  it('follows --urgent-priority', () => {
    expect(urgentRefusal([500], { name: 'alice', admin: false }, { ...policy, urgentPriority: 500 })?.code).toBe('PERMISSION_DENIED');
  });

  it('reads --urgent-submitter (repeatable, comma-separated) and checks the identities', () => {
    expect(parseNodeArgs(['--urgent-submitter', 'pager,oncall', '--urgent-submitter', 'ci'], {}).urgentSubmitters).toEqual(['pager', 'oncall', 'ci']);
    expect(parseNodeArgs([], {}).urgentSubmitters).toEqual([]);
    expect(() => parseNodeArgs(['--urgent-submitter', 'bad name'], {})).toThrow(/--urgent-submitter identity/);
  });
});
