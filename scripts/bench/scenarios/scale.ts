/**
 * 6. Scale: N queued tasks on 3 nodes (3 embedded etcd members, default
 * slots). Every slot is first taken by a `sleep 3600` blocker so the N tasks
 * (`true`) stay queued while we measure: each node's RSS, the first page of
 * `loom list` (API call; the CLI process is timed beside it), etcd's db size.
 * Then the blockers are cancelled and, while the cluster drains the queue,
 * new high-priority tasks are submitted one at a time: their submit→running
 * is compared with the same cluster's idle figure. After a drain window the
 * tasks still queued are cancelled (all run with --no-budget); once every task
 * is final and the nodes' retention sweep has collected every record, the same
 * figures are taken again.
 */
import { TaskState } from '../../../src/gen/loom';
import { LoomApi } from '../../../src/client/client';
import { BenchCluster, LOOM_BIN } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { mainThreadSched, schedShares } from '../cpu';
import { dbSize, TaskCounter } from '../etcd-probe';
import { Target } from '../figures';
import { sleep, timedNode } from '../proc';
import { percentile } from '../stats';
import { spec, submitSpread, wallNow } from '../tasks';
import { sequentialLatency } from './latency';

const S = 'scale';
const MB = 1024 * 1024;
/** Tasks per submit call: well under the 10,000 limit (see the note). */
const SUBMIT_BATCH = 2000;
/** Longest wait for one task we submitted to end. */
const WAIT_MS = 120_000;
/** How long the queue drains on its own before the rest is cancelled (with a budget). */
const DRAIN_WINDOW_MS = 15_000;
/** The nodes' --retention here: finished tasks are collected during the run. */
const RETENTION = '10s';
/** Longest wait for garbage collection once every task is final. */
const GC_WAIT_MS = 90_000;
/** RSS has settled when no node's moved more than SETTLE_MB over the last SETTLE_SAMPLES (1 s apart)... */
const SETTLE_MB = 2;
const SETTLE_SAMPLES = 20;
/** ...or after this long, whichever comes first. */
const SETTLE_MAX_MS = 60_000;

/**
 * Waits until the nodes' RSS stops moving: V8 gives back the heap a burst
 * grew only once the process is quiet (its memory reducer starts 8 s after a
 * full GC, at a low allocation rate), so RSS taken while a node still digests
 * the burst is a transient, reported apart. Returns the seconds waited and
 * whether it settled within SETTLE_MAX_MS.
 */
async function rssSettled(c: BenchCluster): Promise<{ seconds: number; settled: boolean }> {
  const t0 = Date.now();
  const history: number[][] = c.nodes.map(() => []);
  for (;;) {
    c.rss().forEach((r, k) => history[k].push((r.nodeKb ?? NaN) / 1024));
    const still = history.every((h) => {
      const last = h.slice(-SETTLE_SAMPLES);
      return last.length === SETTLE_SAMPLES && Math.max(...last) - Math.min(...last) <= SETTLE_MB;
    });
    if (still) return { seconds: (Date.now() - t0) / 1000, settled: true };
    if (Date.now() - t0 >= SETTLE_MAX_MS) return { seconds: (Date.now() - t0) / 1000, settled: false };
    await sleep(1000);
  }
}

/** Round trips (ms) of `n` Get calls with an invalid id: refused by the node before any etcd call. */
async function refusedRoundTrips(api: LoomApi, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const err = await api.get('not-a-task-id').then(() => undefined, (e: { code?: string }) => e);
    out.push(performance.now() - t0);
    if (err?.code !== 'INVALID_ARGUMENT') throw new Error(`a Get with an invalid id was not refused at once: ${JSON.stringify(err)}`);
  }
  return out;
}

/** refusedRoundTrips to node 1, with its main thread's scheduler shares (on a CPU, waiting for one) over them. */
async function refusedWithSched(c: BenchCluster, n: number): Promise<{ rtts: number[]; onCpu: number; waiting: number }> {
  const a = mainThreadSched(c.nodes[0].pid);
  const rtts = await refusedRoundTrips(c.api(0), n);
  return { rtts, ...schedShares(a, mainThreadSched(c.nodes[0].pid)) };
}

function timeCli(api: string): Promise<number> {
  return timedNode([LOOM_BIN, '-N', api, 'list']);
}

function about(seconds: number): string {
  return seconds < 120 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
}

async function timed<T>(fn: () => Promise<T>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

export const scale: Scenario = {
  name: S,
  title: 'Scale',
  async run(ctx: BenchContext) {
    const n = ctx.quick ? 300 : 100_000;
    const budget = ctx.budget(ctx.quick ? 35 : 280);
    const samples = Math.max(3, ctx.reps);
    ctx.note(S, `3 nodes, 3 embedded etcd members, default slots. A \`sleep 3600\` blocker (priority 500) first takes every slot, then ${n} tasks \`true\` ` +
      `are submitted in batches of ${SUBMIT_BATCH}, one lane per node (two 10,000-task submits at once failed with an etcd deadline error ` +
      'while this benchmark was written, after queueing part of the batch), and stay queued while RSS (VmRSS of each node process; its etcd member is reported apart), ' +
      'the first page of List (and of `loom list` run as a process), and etcd\'s db size (etcd_mvcc_db_total_size_in_bytes) are measured. ' +
      `RSS is sampled once it has settled (no node's moved more than ${SETTLE_MB} MB over ${SETTLE_SAMPLES} s, at most ${SETTLE_MAX_MS / 1000} s): ` +
      'V8 gives back the heap a burst grew only when the process is quiet (its memory reducer starts 8 s after a full GC); ' +
      'the peak while cancelling and the RSS the moment the last record was collected are reported beside it. ' +
      'Then the blockers are cancelled; while the queue drains, new tasks of priority 999 (urgent: at or above the nodes\' default --urgent-priority 900, ' +
      'so a node that receives one while its slots are busy starts it at once in its urgent slot) are submitted one at a time to node 1 and their ' +
      "submit→running (record startedAtMs − client clock before submit) is compared with this cluster's idle submit→running p50 on node 1, measured before the fill. " +
      "(startedAtMs is the time the node decides to claim the task, just before the claim transaction.) How fast node 1 answers anything at that moment " +
      'is the round trip of a request it refuses at once without touching etcd (a Get with an invalid id), taken idle and again while draining; ' +
      "beside it, the kernel's account of node 1's main thread over those round trips (/proc/<pid>/task/<pid>/schedstat): the share of wall time it ran on a CPU " +
      'and the share it was runnable but waiting for one. A large waiting share says the machine\'s cores, not loom\'s queue, hold the request back. ' +
      'Repetitions here are repeated samples within one fill (one fill of the queue per run). ' +
      `The nodes run with --retention ${RETENTION}, so finished tasks are garbage-collected during the run; the "after" figures are taken once every task is final ` +
      'and no task record is left. etcd 3.4 keeps a deleted key in its index until the next compaction (embedded members compact every 5 min), ' +
      'so ranges right after the collection still walk the deleted keys; the db size does not shrink without a defragmentation.');
    const c = await BenchCluster.start({ name: 'scale', nodes: 3, etcd: 'embedded', args: ['--shutdown-grace', '1s', '--kill-grace', '1s', '--retention', RETENTION] }, ctx.log);
    const emit = (figure: string, label: string, unit: string, values: number[], target?: Target, extra?: Record<string, unknown>) =>
      ctx.emit({ scenario: S, figure, label, unit, values, target, extra: { queuedTasks: n, ...extra } });
    // Where node 1's main thread (its event loop) spent those round trips, by the kernel's account.
    const emitSched = (phase: string, when: string, r: { onCpu: number; waiting: number }) => {
      const who = `node ${c.nodes[0].name}'s main thread during those round trips, ${when}`;
      emit(`node1_thread_waiting_pct_${phase}`, `${who}: runnable but waiting for a CPU (share of wall time)`, '%', [100 * r.waiting]);
      emit(`node1_thread_oncpu_pct_${phase}`, `${who}: on a CPU (share of wall time)`, '%', [100 * r.onCpu]);
    };
    try {
      const counter = new TaskCounter(c.etcd());
      // submit() then wait(), as the priority-999 tasks while draining are timed.
      const idle = (await sequentialLatency(c.api(0), ctx.quick ? 20 : 50, 999, ['submit+wait'])).get('submit+wait')!;
      const idleP50 = percentile(idle.map((s) => s.runningMs), 50);
      emit('idle_submit_running_p50_ms', 'idle submit→running p50 of this cluster, before the fill (baseline)', 'ms', [idleP50]);
      // Node 1 answers the baseline and the priority-999 submits below.
      const idleRpc = await refusedWithSched(c, 50);
      emit('refused_rpc_ms_idle', `round trip of a request node ${c.nodes[0].name} refuses at once (no etcd), p50 of 50 in a row, idle, before the fill`,
        'ms', [percentile(idleRpc.rtts, 50)], undefined, { p99: Math.round(percentile(idleRpc.rtts, 99) * 100) / 100 });
      emitSched('idle', 'idle, before the fill', idleRpc);
      const twiceIdle: Target = { op: '<=', value: 2 * idleP50, text: `≤ 2 × idle = ${(2 * idleP50).toFixed(2)} ms` };

      const measure = async (phase: 'queued' | 'after_gc', what: string) => {
        const settle = await rssSettled(c);
        ctx.log(`${S}: node RSS ${settle.settled ? 'settled' : 'still moving'} after ${settle.seconds.toFixed(0)} s`);
        const rss: number[][] = c.nodes.map(() => []);
        for (let i = 0; i < samples; i++) {
          c.rss().forEach((r, k) => rss[k].push((r.nodeKb ?? NaN) / 1024));
          if (i < samples - 1) await sleep(500);
        }
        const etcdRss = c.rss().map((r) => (r.etcdKb ?? NaN) / 1024);
        c.nodes.forEach((node, k) => emit(`rss_${node.name}_mb_${phase}`, `RSS of node ${node.name}, ${what}`, 'MB', rss[k]));
        emit(`rss_max_node_mb_${phase}`, `largest node RSS, ${what}`, 'MB', rss[0].map((_, i) => Math.max(...rss.map((r) => r[i]))),
          { op: '<=', value: 150, text: '≤ 150 MB' },
          { etcdMemberRssMb: etcdRss.map((x) => Math.round(x)), settleSeconds: Math.round(settle.seconds), settled: settle.settled });
        const list: number[] = [];
        const listQueued: number[] = [];
        const cli: number[] = [];
        for (let i = 0; i < samples; i++) {
          list.push(await timed(() => c.api(i % 3).list({})));
          listQueued.push(await timed(() => c.api(i % 3).list({ state: TaskState.QUEUED })));
          cli.push(await timeCli(c.nodes[i % 3].api));
        }
        emit(`list_first_page_ms_${phase}`, `\`loom list\` first page (100 tasks) through LoomApi.list, ${what}`, 'ms', list, { op: '<=', value: 50, text: '≤ 50 ms' });
        emit(`list_queued_first_page_ms_${phase}`, `\`loom list --state queued\` first page through LoomApi.list, ${what}`, 'ms', listQueued);
        emit(`cli_list_ms_${phase}`, `\`loom list\` as a CLI process (node start-up included), ${what}`, 'ms', cli);
        const db: number[] = [];
        let inUse: number[] = [];
        for (let i = 0; i < samples; i++) {
          const sizes = await Promise.all(c.etcdUrls.map(dbSize));
          db.push(Math.max(...sizes.map((x) => x.totalBytes)) / MB);
          inUse = sizes.map((x) => Math.round((x.inUseBytes / MB) * 10) / 10);
        }
        emit(`etcd_db_mb_${phase}`, `etcd db size (largest member), ${what}`, 'MB', db, undefined, { inUseMbPerMember: inUse });
      };

      // Take every slot with a blocker so that the N tasks stay queued.
      const slots = await c.totalSlots();
      // Priority 500: above the N tasks (100), below --urgent-priority (900), so
      // blockers take the normal slots only and the urgent ones stay free.
      const blockers = await c.api(0).submit(Array.from({ length: slots }, () => spec(['sleep', '3600'], 500)));
      for (let t = Date.now(); (await counter.counts()).running < slots; await sleep(100)) {
        if (Date.now() - t > 30_000) throw new Error(`blockers not all running after 30 s: ${JSON.stringify(await counter.counts())}`);
      }
      const t0 = Date.now();
      await submitSpread(c, spec(['true']), n, SUBMIT_BATCH);
      const submitS = (Date.now() - t0) / 1000;
      emit('submit_tasks_per_s', `submit rate of ${n} tasks (batches of ${SUBMIT_BATCH}, one lane per node)`, 'tasks/s', [n / submitS]);
      const queued = (await counter.counts()).queued;
      if (queued < n) throw new Error(`only ${queued} of ${n} tasks queued`);
      ctx.log(`${S}: ${n} queued in ${submitS.toFixed(1)} s`);
      await measure('queued', `${n} queued`);

      // Release the slots; while the queue drains, submit new high-priority tasks one at a time.
      const peak = c.nodes.map(() => 0);
      const sampler = setInterval(() => c.rss().forEach((r, k) => (peak[k] = Math.max(peak[k], (r.nodeKb ?? 0) / 1024))), 1000);
      const drainT0 = Date.now();
      await Promise.all(blockers.map((id) => c.api(0).cancel(id)));
      const hot: number[] = [];
      const depth: number[] = [];
      const hotCount = Math.max(5, samples);
      for (let i = 0; i < hotCount; i++) {
        await sleep(300);
        depth.push((await counter.counts()).queued);
        const wall0 = wallNow();
        const [id] = await c.api(0).submit([spec(['true'], 999)]);
        const task = await c.api(0).wait(id, AbortSignal.timeout(WAIT_MS)).catch((err: Error) => {
          throw new Error(`priority-999 task ${id}: no result within ${WAIT_MS / 1000} s while draining (${err.message})`);
        });
        hot.push(task.startedAtMs - wall0);
      }
      emit('new_task_running_ms_draining', `submit→running of a new priority-999 task while the ${n} drain`, 'ms', hot, twiceIdle,
        { queuedAtSubmit: depth });
      // How long node 1 takes to answer anything at that moment: no submit can be taken faster.
      const drainRpc = await refusedWithSched(c, 50);
      emit('refused_rpc_ms_draining', `round trip of a request node ${c.nodes[0].name} refuses at once (no etcd), p50 of 50 in a row, while draining`,
        'ms', [percentile(drainRpc.rtts, 50)], undefined, { p99: Math.round(percentile(drainRpc.rtts, 99) * 100) / 100 });
      emitSched('draining', 'while draining', drainRpc);
      // Drain rate, from the queued count (finished records are collected as
      // the run goes, so completion counts would undercount).
      const queuedAfterHot = (await counter.counts()).queued;
      const unlimited = !Number.isFinite(budget.seconds);
      const windowEnd = unlimited ? Infinity : drainT0 + (ctx.quick ? 5_000 : DRAIN_WINDOW_MS);
      let last = await counter.counts();
      while (last.queued + last.running > 0 && Date.now() < windowEnd) {
        await sleep(500);
        last = await counter.counts();
      }
      const drainS = (Date.now() - drainT0) / 1000;
      const taken = n + hotCount - last.queued;
      emit('drain_tasks_per_s', `drain rate of the ${n} queued tasks (tasks taken from the queue per second, blockers cancelled → ` +
        `${last.queued === 0 ? 'queue empty' : `end of the ${Math.round(drainS)} s window`})`, 'tasks/s', [taken / drainS], undefined,
        { queuedAfterHotTasks: queuedAfterHot, queuedAtEnd: last.queued, seconds: Math.round(drainS) });

      // The rest reach a final state by cancel (running them all would take far
      // longer than the budget); with --no-budget they all run.
      let cancelled = 0;
      if (last.queued > 0) {
        const leftRun = last.queued / Math.max(taken / drainS, 0.001);
        ctx.log(`${S}: ${last.queued} still queued after ${drainS.toFixed(0)} s (running them would take about ${about(leftRun)}); cancelling them`);
        const c0 = Date.now();
        const res = await c.api(0).cancelQueued();
        cancelled = res.cancelled;
        const cancelS = (Date.now() - c0) / 1000;
        emit('cancel_tasks_per_s', `cancel rate: the ${last.queued} tasks still queued after the drain window, one CancelQueued call ` +
          '(`loom cancel --all-queued`) while the nodes go on draining', 'tasks/s', [cancelled / cancelS], undefined,
          { cancelled, changed: res.changed, seconds: Math.round(cancelS * 10) / 10 });
        ctx.note(S, `${taken} of the ${n} tasks ran in the ${Math.round(drainS)} s drain window; the ${cancelled} still queued were then cancelled ` +
          `so that every task reached a final state within the time budget (running them all would have taken about ${about(n / Math.max(taken / drainS, 0.001))}; ` +
          '`--no-budget` runs them all). The "after" figures below are taken once all of them are final and garbage-collected.');
      }
      for (let t = Date.now(); ; await sleep(500)) {
        last = await counter.counts();
        if (last.queued + last.running === 0) break;
        if (Date.now() - t > 120_000) throw new Error(`tasks still not final 120 s after the cancels: ${JSON.stringify(last)}`);
      }
      clearInterval(sampler);
      emit('rss_max_node_mb_peak_draining', 'largest node RSS while draining and cancelling (sampled every second)', 'MB', [Math.max(...peak)], undefined,
        { perNodeMb: peak.map((x) => Math.round(x)) });
      const finalWhat = `after all ${n} were final (${cancelled ? `${n - cancelled} ran, ${cancelled} cancelled` : 'all ran'}) and garbage-collected`;

      // Garbage collection: the nodes run with --retention RETENTION.
      const gc0 = Date.now();
      let records = await counter.records();
      const gcDeadline = unlimited ? Infinity : budget.deadline(GC_WAIT_MS);
      while (records > 0 && Date.now() < gcDeadline) {
        await sleep(500);
        records = await counter.records();
      }
      const gcS = (Date.now() - gc0) / 1000;
      if (records > 0) {
        const why = `garbage collection had not finished within the scenario's time budget (${budget.seconds} s): ${records} task records left ${gcS.toFixed(0)} s after the last task was final`;
        ctx.log(`${S}: ${why}`);
        for (const [figure, label] of [
          ['rss_max_node_mb_after_gc', `largest node RSS, ${finalWhat}`],
          ['list_first_page_ms_after_gc', `\`loom list\` first page, ${finalWhat}`],
          ['new_task_running_ms_after_gc', `submit→running of a new priority-999 task, ${finalWhat}`],
          ['etcd_db_mb_after_gc', `etcd db size, ${finalWhat}`],
        ]) ctx.fail(S, figure, label, why);
        return;
      }
      emit('gc_seconds', `last task final → every task record garbage-collected (retention ${RETENTION})`, 's', [gcS]);
      emit('rss_max_node_mb_at_gc', 'largest node RSS the moment the last record was collected (before the nodes went quiet)', 'MB',
        [Math.max(...c.rss().map((r) => (r.nodeKb ?? NaN) / 1024))]);
      ctx.log(`${S}: all final; records collected ${gcS.toFixed(1)} s later`);

      await measure('after_gc', finalWhat);
      const after = (await sequentialLatency(c.api(0), Math.max(20, samples), 999, ['submit+wait'])).get('submit+wait')!;
      emit('new_task_running_ms_after_gc', `submit→running of a new priority-999 task, ${finalWhat}`, 'ms', after.map((x) => x.runningMs), twiceIdle);
    } finally {
      await c.stop();
    }
  },
};
