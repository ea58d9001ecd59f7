import { diagnoseEtcdLog } from '../../src/etcd/log';
import { uniqueRoot, waitFor } from '../support/etcd';

const ctx = {
  name: 'node2',
  etcdDir: '/data/node2/etcd',
  peerListen: 'http://127.0.0.2:2380',
  clientListen: 'http://127.0.0.2:2379',
};

describe('diagnoseEtcdLog', () => {
  it('maps a bind failure to the URL that was taken', () => {
    const lines = [
      '[info] configuring peer listeners',
      '[fatal] discovery failed: listen tcp 127.0.0.2:2380: bind: address already in use',
    ];
    expect(diagnoseEtcdLog(lines, ctx)).toMatch(
      /^etcd could not listen on http:\/\/127\.0\.0\.2:2380: address already in use/,
    );
  });

  it('explains a member whose data dir was lost', () => {
    const lines = ['[fatal] discovery failed: member 8e9e05c52164694d has already been bootstrapped'];
    expect(diagnoseEtcdLog(lines, ctx)).toContain(
      'etcd member "node2" (id 8e9e05c52164694d) has already been bootstrapped',
    );
  });

  it('explains a member that was removed from the cluster (it exits with code 0, saying so mid-log)', () => {
    const lines = [
      '[warn] server error: the member has been permanently removed from the cluster',
      '[warn] data-dir used by this member must be removed',
      '[info] stopped remote peer',
    ];
    const said = diagnoseEtcdLog(lines, ctx);
    expect(said).toContain('etcd member "node2" was removed from the cluster');
    expect(said).toContain('start this node again with --join');
  });

  it('explains a cluster ID mismatch and an unknown local name', () => {
    expect(diagnoseEtcdLog(['[warn] request cluster ID mismatch'], ctx)).toContain(
      'belongs to a different cluster than its peers',
    );
    const name = [
      '[fatal] discovery failed: couldn\'t find local name "x" in the initial cluster configuration',
    ];
    expect(diagnoseEtcdLog(name, ctx)).toBe(
      'etcd member name "x" is not in the initial cluster configuration',
    );
  });

  it('returns undefined for nothing it knows', () => {
    expect(diagnoseEtcdLog(['[info] all good'], ctx)).toBeUndefined();
  });
});

describe('test support', () => {
  it('uniqueRoot gives fresh /t-<8 hex> roots', () => {
    const a = uniqueRoot();
    expect(a).toMatch(/^\/t-[0-9a-f]{8}$/);
    expect(uniqueRoot()).not.toBe(a);
  });

  it('waitFor returns the first truthy value', async () => {
    let n = 0;
    await expect(waitFor(() => (++n >= 3 ? n : false), { intervalMs: 1 })).resolves.toBe(3);
  });

  it('waitFor names what it waited for and the last error on timeout', async () => {
    await expect(
      waitFor(
        async () => {
          throw new Error('still booting');
        },
        { timeoutMs: 50, intervalMs: 5, what: 'the moon' },
      ),
    ).rejects.toThrow(/timed out after 50 ms waiting for the moon; last error: Error: still booting/);
    await expect(waitFor(() => 0, { timeoutMs: 20, what: 'n' })).rejects.toThrow(/last value: 0/);
  });
});
