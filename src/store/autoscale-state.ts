/**
 * The autoscaler's keys (store/keys.ts): who evaluates a group's policy, and
 * what it remembers, so that exactly one node acts and a new one goes on
 * where the last stopped.
 *
 * Leadership is the key /autoscale/<group>/leader under the leader's node
 * lease: taken only while missing (one txn), gone when that lease ends, so
 * another node takes over within a lease TTL. The state is written only in a
 * txn that compares the leader key's value and lease with the writer's: a
 * node that lost the lead (its lease expired, another took it) cannot
 * overwrite its successor's state, and learns it has lost.
 */
import { ScaleMemory } from '../core/autoscale';
import { LoomError } from '../core/errors';
import type { AutoscaleGroup } from '../gen/loom';
import { ifLease, ifMissing, ifValue, Kv, prefixEnd, put, rangeOp } from '../etcd/client';
import { Keys } from './keys';

/** The group's state as stored: the memory of the policy, and what it last did. */
export interface ScaleState extends ScaleMemory {
  leader: string;
  /** Nodes of the group seen live at the last evaluation. */
  observed: string[];
  /** Nodes drained to be removed, until they are gone. */
  removing: string[];
  /** The size the provider last accepted (behind `target` while a call fails). */
  applied?: number;
  reason: string;
  atMs: number;
}

/** Takes the lead if nobody has it; true if this node (with this lease) holds it now. */
export async function takeScaleLead(kv: Kv, keys: Keys, group: string, node: string, lease: string): Promise<boolean> {
  const key = keys.autoscaleLeader(group);
  const res = await kv.txn({ compare: [ifMissing(key)], success: [put(key, node, lease)], failure: [rangeOp(key)] }, 'take the autoscale lead');
  if (res.succeeded) return true;
  const held = res.responses[0]?.response_range?.kvs[0];
  return !!held && held.value.toString() === node && String(held.lease) === lease;
}

export async function readScaleState(kv: Kv, keys: Keys, group: string): Promise<ScaleState | undefined> {
  const got = await kv.get(keys.autoscaleState(group), 'read the autoscale state');
  if (!got) return undefined;
  try {
    return JSON.parse(got.value.toString()) as ScaleState;
  } catch (err) {
    throw new LoomError('INTERNAL', `corrupt autoscale state for group ${group}: ${(err as Error).message}`);
  }
}

/** Writes the state if this node still leads (same value and lease on the leader key); false: it has lost the lead. */
export async function writeScaleState(kv: Kv, keys: Keys, group: string, node: string, lease: string, state: ScaleState): Promise<boolean> {
  const leader = keys.autoscaleLeader(group);
  const res = await kv.txn({ compare: [ifValue(leader, node), ifLease(leader, lease)], success: [put(keys.autoscaleState(group), JSON.stringify(state))] }, 'write the autoscale state');
  return res.succeeded;
}

/** Every group's stored state and its leader now (`loom nodes`): one range of /autoscale/. */
export async function listScaleGroups(kv: Kv, keys: Keys, signal?: AbortSignal): Promise<AutoscaleGroup[]> {
  const prefix = keys.autoscalePrefix;
  const res = await kv.range({ key: Buffer.from(prefix), range_end: Buffer.from(prefixEnd(prefix)) }, 'read the autoscale groups', signal);
  const byKey = new Map(res.kvs.map((e) => [e.key.toString(), e.value.toString()]));
  const groups: AutoscaleGroup[] = [];
  for (const [key, value] of byKey) {
    const group = key.slice(prefix.length).replace(/\/state$/, '');
    if (key !== keys.autoscaleState(group)) continue;
    let st: ScaleState;
    try {
      st = JSON.parse(value) as ScaleState;
    } catch {
      continue; // readScaleState reports a corrupt state to the leader; a listing shows what it can
    }
    groups.push({
      group, target: st.target, applied: st.applied ?? 0, hasApplied: st.applied !== undefined, leader: byKey.get(keys.autoscaleLeader(group)) ?? '',
      observed: st.observed ?? [], removing: st.removing ?? [], reason: st.reason ?? '', atMs: st.atMs ?? 0,
    });
  }
  return groups.sort((a, b) => (a.group < b.group ? -1 : 1));
}
