/** Wait for the next change of one key after a known revision. */
import { IKeyValue } from 'etcd3';
import { LoomError } from '../core/errors';
import { etcdError, Kv } from './client';

/**
 * Resolves with the key's next version after `afterRevision` (undefined if
 * it was deleted). Rejects with CANCELLED when `signal` aborts.
 */
export async function nextChange(kv: Kv, key: string, afterRevision: string, signal?: AbortSignal): Promise<IKeyValue | undefined> {
  if (signal?.aborted) throw new LoomError('CANCELLED', 'wait cancelled');
  let watcher;
  try {
    watcher = await kv.client.watch().key(key).startRevision(String(BigInt(afterRevision) + 1n)).create();
  } catch (err) {
    throw etcdError(err, 'watch');
  }
  const w = watcher;
  try {
    return await new Promise<IKeyValue | undefined>((resolve, reject) => {
      const onAbort = () => reject(new LoomError('CANCELLED', 'wait cancelled'));
      signal?.addEventListener('abort', onAbort, { once: true });
      w.on('put', (kv) => resolve(kv));
      w.on('delete', () => resolve(undefined));
      w.on('error', (err) => reject(etcdError(err, 'watch')));
    });
  } finally {
    void w.cancel().catch(() => undefined);
  }
}
