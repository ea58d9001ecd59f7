/**
 * Operator control of a node (drain/resume), stored at /control/<node> so it
 * survives the node's restarts. Written by any node's API, obeyed by the
 * named node, which watches its own key.
 */
import { NodeControl } from '../gen/loom';
import { LoomError } from '../core/errors';
import { b, del, Kv, put } from '../etcd/client';
import { Keys } from './keys';
import { PrefixWatch } from '../etcd/prefix-watch';

export async function setNodeControl(kv: Kv, keys: Keys, node: string, control: NodeControl): Promise<void> {
  const op = control.drain ? put(keys.control(node), Buffer.from(NodeControl.encode(control).finish())) : del(keys.control(node));
  await kv.txn({ compare: [], success: [op] }, 'set node control');
}

function decodeControl(value: Buffer): NodeControl {
  try {
    return NodeControl.decode(value);
  } catch (err) {
    throw new LoomError('INTERNAL', `corrupt node control: ${(err as Error).message}`);
  }
}

/** Watches /control/<node>; calls `apply` with the current wishes on every change. */
export function watchNodeControl(kv: Kv, keys: Keys, node: string, apply: (c: NodeControl) => void, log?: (m: string) => void): PrefixWatch {
  const key = keys.control(node);
  let current: NodeControl = { drain: false, deadlineMs: 0 };
  const set = (c: NodeControl) => {
    if (c.drain !== current.drain || c.deadlineMs !== current.deadlineMs) {
      current = c;
      apply(c);
    }
  };
  return new PrefixWatch(kv, key, {
    reset: (kvs) => {
      const mine = kvs.find((x) => x.key.equals(b(key)));
      set(mine ? decodeControl(mine.value) : { drain: false, deadlineMs: 0 });
    },
    put: (x) => {
      if (x.key.equals(b(key))) set(decodeControl(x.value));
    },
    delete: (x) => {
      if (x.key.equals(b(key))) set({ drain: false, deadlineMs: 0 });
    },
  }, { log });
}
