/**
 * 3. Failover: a node running 50 `sleep 30` tasks is SIGKILLed; how long
 * until every one of them is RUNNING again on a survivor (its new attempt's
 * startedAtMs minus the kill time), with the default lease TTL. Fresh
 * 3-node cluster (3 embedded etcd members) per repetition. Measured twice:
 * killing a node whose etcd member is a follower (the usual case), and
 * killing the node that hosts the etcd leader.
 */
import { defaultNodeConfig } from '../../../src/core/config';
import { Task, TaskState } from '../../../src/gen/loom';
import { repeat } from '../budget';
import { BenchCluster } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { isLeader } from '../etcd-probe';
import { sleep } from '../proc';
import { percentile } from '../stats';
import { spec, wallNow } from '../tasks';

const S = 'failover';

interface Rep {
  p50: number;
  max: number;
}

async function oneRep(ctx: BenchContext, tasks: number, killLeader: boolean, rep: number): Promise<Rep> {
  const c = await BenchCluster.start(
    { name: killLeader ? 'fol' : 'fof', nodes: 3, etcd: 'embedded', slots: tasks, args: ['--shutdown-grace', '1s', '--kill-grace', '1s'] },
    ctx.log,
  );
  try {
    const leaders = await Promise.all(c.nodes.map((n) => isLeader(n.etcdClientUrl!)));
    const victim = killLeader ? leaders.indexOf(true) : leaders.lastIndexOf(false);
    if (victim < 0) throw new Error(`no etcd ${killLeader ? 'leader' : 'follower'} found (${leaders})`);
    const survivor = c.api((victim + 1) % c.nodes.length);
    const victimName = c.nodes[victim].name;
    // One-task submits to a node with a free slot are claimed by that node in the submit transaction.
    const ids: string[] = [];
    for (let i = 0; i < tasks; i++) ids.push(...(await c.api(victim).submit([spec(['sleep', '30'])])));
    const placed = await Promise.all(ids.map((id) => survivor.get(id)));
    const elsewhere = placed.filter((t) => t.state !== TaskState.RUNNING || t.node !== victimName);
    if (elsewhere.length) throw new Error(`${elsewhere.length} of ${tasks} tasks are not running on ${victimName}`);

    const killAt = wallNow();
    c.signal(victim, 'SIGKILL');
    const back = new Map<string, Task>();
    const deadline = Date.now() + 90_000;
    while (back.size < ids.length) {
      if (Date.now() > deadline) throw new Error(`only ${back.size} of ${ids.length} tasks running again 90 s after the kill`);
      await sleep(50);
      try {
        const res = await survivor.list({ state: TaskState.RUNNING, pageSize: 1000 });
        for (const t of res.tasks) if (t.node !== victimName && ids.includes(t.id)) back.set(t.id, t);
      } catch {
        // the etcd cluster may be electing a leader
      }
    }
    const secs = [...back.values()].map((t) => (t.startedAtMs - killAt) / 1000);
    const r = { p50: percentile(secs, 50), max: Math.max(...secs) };
    ctx.log(`${S} ${killLeader ? 'leader' : 'follower'} rep ${rep + 1}: p50 ${r.p50.toFixed(2)} s, max ${r.max.toFixed(2)} s`);
    return r;
  } finally {
    // Nothing more to read from this cluster: SIGKILL (each reaper kills its node's tasks and etcd member).
    await c.stop({ kill: true });
  }
}

export const failover: Scenario = {
  name: S,
  title: 'Failover',
  async run(ctx: BenchContext) {
    const tasks = ctx.quick ? 10 : 50;
    const ttl = defaultNodeConfig(1).leaseTtlSeconds;
    const target = { op: '<=' as const, value: ttl + 1, text: `≤ lease TTL + 1 s = ${ttl + 1} s`, on: 'max' as const };
    for (const killLeader of [false, true]) {
      const reps = await repeat(ctx, S, killLeader ? 'leader killed' : 'follower killed', ctx.budget(ctx.quick ? 10 : 45), (rep) =>
        oneRep(ctx, tasks, killLeader, rep),
      );
      const who = killLeader ? 'node hosting the etcd leader killed' : 'node hosting an etcd follower killed';
      const tag = killLeader ? 'leader' : 'follower';
      const extra = { tasks, leaseTtlS: ttl, nodes: 3, etcdMembers: 3 };
      ctx.emit({ scenario: S, figure: `running_again_p50_${tag}`, label: `kill → running again, p50 (${who})`, unit: 's', values: reps.map((r) => r.p50), extra });
      ctx.emit({ scenario: S, figure: `running_again_max_${tag}`, label: `kill → every task running again, max (${who})`, unit: 's', values: reps.map((r) => r.max), extra, target });
    }
    ctx.note(S, `Per repetition a fresh cluster of 3 nodes (3 embedded etcd members, --slots ${tasks} each, default lease TTL ${ttl} s); ` +
      `${tasks} one-task submits of \`sleep 30\` to the victim, which claims each in the submit transaction (checked). ` +
      "The victim gets SIGKILL; a survivor's API is polled every 50 ms (List RUNNING) until every task runs on another node; " +
      "each task's time is its new startedAtMs minus the kill time. The target is judged on the worst repetition's max.");
    ctx.note(S, 'The victim is chosen by its etcd role (etcd_server_is_leader). When it hosted the etcd leader, the survivors first elect a ' +
      "new leader (election timeout 1 s), and a newly elected etcd leader restarts every lease's countdown at its full TTL plus the election " +
      "timeout (etcd's lessor Promote), so the dead node's lease cannot expire TTL + 1 s after the kill in that case.");
  },
};
