/**
 * 6. Scale: N queued tasks on 3 nodes (3 embedded etcd members, default
 * slots). Every slot is first taken by a `sleep 3600` blocker so the N tasks
 * (`true`) stay queued while we measure: each node's RSS, the first page of
 * `loom list` (API call; the CLI process is timed beside it), etcd's db size.
 * Then the blockers are cancelled and, while the cluster drains the queue,
 * new high-priority tasks are submitted one at a time: their submit→running
 * is compared with the same cluster's idle figure. Once every task has
 * completed the same figures are taken again.
 */
import { execFile } from 'child_process';
import { TaskState } from '../../../src/gen/loom';
import { BenchCluster, LOOM_BIN } from '../cluster';
import { BenchContext, Scenario } from '../context';
import { dbSize, TaskCounter, terminalTotal } from '../etcd-probe';
import { Target } from '../figures';
import { sleep } from '../proc';
import { percentile } from '../stats';
import { spec, submitSpread, wallNow } from '../tasks';
import { sequentialLatency } from './latency';

const S = 'scale';
const MB = 1024 * 1024;
/** Tasks per submit call: well under the 10,000 limit (see the note). */
const SUBMIT_BATCH = 2000;
/** Longest wait for one task we submitted to end. */
const WAIT_MS = 120_000;

function timeCli(api: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile(process.execPath, [LOOM_BIN, '-N', api, 'list'], { maxBuffer: 16 * MB }, (err) =>
      err ? reject(err) : resolve(performance.now() - t0),
    );
  });
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
      'Then the blockers are cancelled; while the queue drains, new tasks of priority 999 (urgent: at or above the nodes\' default --urgent-priority 900, ' +
      'so a node that receives one while its slots are busy starts it at once in its urgent slot) are submitted one at a time and their ' +
      "submit→running (record startedAtMs − client clock before submit) is compared with this cluster's idle submit→running p50 measured before the fill. " +
      'Repetitions here are repeated samples within one fill (one fill of the queue per run).');
    const c = await BenchCluster.start({ name: 'scale', nodes: 3, etcd: 'embedded', args: ['--shutdown-grace', '1s', '--kill-grace', '1s'] }, ctx.log);
    const emit = (figure: string, label: string, unit: string, values: number[], target?: Target, extra?: Record<string, unknown>) =>
      ctx.emit({ scenario: S, figure, label, unit, values, target, extra: { queuedTasks: n, ...extra } });
    try {
      const counter = new TaskCounter(c.etcd());
      const idle = await sequentialLatency(c.api(0), ctx.quick ? 20 : 50, 999);
      const idleP50 = percentile(idle.map((s) => s.runningMs), 50);
      emit('idle_submit_running_p50_ms', 'idle submit→running p50 of this cluster, before the fill (baseline)', 'ms', [idleP50]);
      const twiceIdle: Target = { op: '<=', value: 2 * idleP50, text: `≤ 2 × idle = ${(2 * idleP50).toFixed(2)} ms` };

      const measure = async (phase: 'queued' | 'completed', what: string) => {
        await sleep(2000);
        const rss: number[][] = c.nodes.map(() => []);
        for (let i = 0; i < samples; i++) {
          c.rss().forEach((r, k) => rss[k].push((r.nodeKb ?? NaN) / 1024));
          if (i < samples - 1) await sleep(500);
        }
        const etcdRss = c.rss().map((r) => (r.etcdKb ?? NaN) / 1024);
        c.nodes.forEach((node, k) => emit(`rss_${node.name}_mb_${phase}`, `RSS of node ${node.name}, ${what}`, 'MB', rss[k]));
        emit(`rss_max_node_mb_${phase}`, `largest node RSS, ${what}`, 'MB', rss[0].map((_, i) => Math.max(...rss.map((r) => r[i]))),
          { op: '<=', value: 150, text: '≤ 150 MB' }, { etcdMemberRssMb: etcdRss.map((x) => Math.round(x)) });
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
      const base = terminalTotal(await counter.counts());
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
      const completedAtStart = (await counter.counts()).completed;
      const drainT0 = Date.now();
      await Promise.all(blockers.map((id) => c.api(0).cancel(id)));
      const hot: number[] = [];
      const depth: number[] = [];
      const hotCount = Math.max(5, samples);
      for (let i = 0; i < hotCount; i++) {
        await sleep(300);
        depth.push((await counter.counts()).queued);
        const wall0 = wallNow();
        const [id] = await c.api(i % 3).submit([spec(['true'], 999)]);
        const task = await c.api(i % 3).wait(id, AbortSignal.timeout(WAIT_MS)).catch((err: Error) => {
          throw new Error(`priority-999 task ${id}: no result within ${WAIT_MS / 1000} s while draining (${err.message})`);
        });
        hot.push(task.startedAtMs - wall0);
      }
      emit('new_task_running_ms_draining', `submit→running of a new priority-999 task while the ${n} drain`, 'ms', hot, twiceIdle,
        { queuedAtSubmit: depth });
      const w = await counter.waitTerminalUntil(base, n + slots + hotCount, budget.deadline(10_000), 500);
      clearInterval(sampler);
      const drainS = (w.atMs - drainT0) / 1000;
      const drained = Math.max(0, w.counts.completed - completedAtStart - hotCount);
      emit('drain_tasks_per_s', `drain rate of the ${n} queued tasks (blockers cancelled → all completed)`, 'tasks/s', [drained / drainS], undefined,
        w.timedOut ? { partial: true, completedByBudget: drained } : undefined);
      emit('rss_max_node_mb_peak_draining', 'largest node RSS while draining (sampled every second)', 'MB', [Math.max(...peak)], undefined,
        { perNodeMb: peak.map((x) => Math.round(x)) });
      if (w.timedOut) {
        const rate = drained / drainS;
        const why = `the drain did not finish within the scenario's time budget (${budget.seconds} s): ${drained} of ${n} completed in ` +
          `${drainS.toFixed(0)} s at ${rate.toFixed(0)} tasks/s; all ${n} would take about ${about(n / Math.max(rate, 0.001))} (rerun with --no-budget)`;
        ctx.log(`${S}: ${why}`);
        for (const [figure, label] of [
          ['rss_max_node_mb_completed', `largest node RSS, after all ${n} completed`],
          ['list_first_page_ms_completed', `\`loom list\` first page, after all ${n} completed`],
          ['new_task_running_ms_completed', `submit→running of a new priority-999 task after all ${n} completed`],
          ['etcd_db_mb_completed', `etcd db size, after all ${n} completed`],
        ]) ctx.fail(S, figure, label, why);
        return;
      }
      ctx.log(`${S}: drained in ${drainS.toFixed(1)} s`);

      await measure('completed', `after all ${n} completed`);
      const after = await sequentialLatency(c.api(0), Math.max(20, samples), 999);
      emit('new_task_running_ms_completed', `submit→running of a new priority-999 task after all ${n} completed`, 'ms', after.map((x) => x.runningMs), twiceIdle);
      const records = await counter.records();
      const submitted = idle.length + slots + n + hotCount + after.length;
      emit('records_kept_completed', `task records still stored after completion (of ${submitted} submitted)`, 'records', [records]);
      ctx.note(S, records >= submitted
        ? `Garbage collection of finished tasks: not available in this build: all ${records} task records were still in etcd after completion, ` +
          'so the "after they are garbage-collected" figures could not be taken; the "after completion" figures stand in for them.'
        : `${submitted - records} of ${submitted} task records were gone after completion (some garbage collection ran); ` +
          'the "after completion" figures were taken at that moment, not after a full collection.');
    } finally {
      await c.stop();
    }
  },
};
