/** Kv.pages: a key range read page by page against a real etcd. */
import { connectEtcd, Kv, prefixEnd } from '../../src/etcd/client';
import { testEtcdEndpoint, uniqueRoot } from '../support/etcd';

let kv: Kv;
beforeAll(() => {
  kv = new Kv(connectEtcd({ endpoints: [testEtcdEndpoint()] }));
});
afterAll(() => kv.close());

async function fill(root: string, n: number): Promise<string[]> {
  const keys = Array.from({ length: n }, (_, i) => `${root}/${String(i).padStart(3, '0')}`);
  for (const k of keys) await kv.client.put(k).value('v');
  return keys;
}

it('reads every key of the range once, in order, in pages of at most limit', async () => {
  const root = uniqueRoot();
  const keys = await fill(root, 25);
  await kv.client.put(`${root}0-after`).value('outside');
  const sizes: number[] = [];
  const seen: string[] = [];
  for await (const page of kv.pages({ key: `${root}/`, end: prefixEnd(`${root}/`), limit: 7, keysOnly: true }, 'test')) {
    sizes.push(page.length);
    seen.push(...page.map((k) => k.key.toString()));
  }
  expect(sizes).toEqual([7, 7, 7, 4]);
  expect(seen).toEqual(keys);
});

it('yields nothing for an empty range, and one page when the range fits', async () => {
  const root = uniqueRoot();
  const pages: number[] = [];
  for await (const page of kv.pages({ key: `${root}/`, end: prefixEnd(`${root}/`), limit: 5 }, 'test')) pages.push(page.length);
  expect(pages).toEqual([]);
  await fill(root, 5);
  for await (const page of kv.pages({ key: `${root}/`, end: prefixEnd(`${root}/`), limit: 5 }, 'test')) pages.push(page.length);
  expect(pages).toEqual([5]);
});

it('stops between pages once its signal aborts', async () => {
  const root = uniqueRoot();
  await fill(root, 12);
  const ac = new AbortController();
  const sizes: number[] = [];
  for await (const page of kv.pages({ key: `${root}/`, end: prefixEnd(`${root}/`), limit: 4 }, 'test', ac.signal)) {
    sizes.push(page.length);
    ac.abort();
  }
  expect(sizes).toEqual([4]);
});
