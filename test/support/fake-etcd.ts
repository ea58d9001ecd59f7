/** Just enough of an etcd client for unit tests of the API: exact-key reads, transactions that succeed, no watches. */
import type { Etcd3 } from 'etcd3';

export function fakeEtcd(store: Map<string, Buffer>): Etcd3 {
  const header = { revision: '7', cluster_id: '1', member_id: '1', raft_term: '1' };
  return {
    kv: {
      range: async (req: { key: Buffer; range_end?: Buffer }) => {
        const value = req.range_end ? undefined : store.get(req.key.toString());
        const kvs = value ? [{ key: req.key, value, mod_revision: '5', create_revision: '5', version: '1', lease: '0' }] : [];
        return { header, kvs, more: false, count: String(kvs.length) };
      },
      txn: async (req: { success?: unknown[] }) => ({
        header,
        succeeded: true,
        responses: (req.success ?? []).map(() => ({ response_put: { header } })),
      }),
    },
    watch: () => {
      throw new Error('no watches in this test');
    },
  } as unknown as Etcd3;
}
