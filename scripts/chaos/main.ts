/**
 * `npm run chaos`: the loom chaos harness.
 *
 * Starts 5 `loom node` processes (n1-n3 embedding etcd members, w1-w2
 * worker-only), submits N short tasks that log their start and end to a file
 * outside loom, injects faults on a seeded schedule (SIGKILL+restart a node,
 * SIGSTOP/SIGCONT a node's own process for 2x its lease TTL, SIGKILL+restart
 * an etcd member, drain+resume a node), waits until every task is terminal,
 * then checks the store, the log and the process sampler's observations (see
 * checker.ts for the rules) and prints a summary. Exit status: 0 no
 * violations, 1 violations, 2 the harness itself failed (e.g. the cluster did
 * not start), 130 interrupted.
 *
 *   npm run chaos -- --quick                  500 tasks, 5 faults, < 3 min (CI)
 *   npm run chaos                             5,000 tasks, faults every ~8 s until done
 *   npm run chaos -- --seed 1234 --tasks 200 --faults 3
 *   npm run chaos -- --self-test              the checker must catch planted violations
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import yargs from 'yargs';
import { Etcd3 } from 'etcd3';
import { LoomApi } from '../../src/client/client';
import { check, readStore, SubmittedTask } from './checker';
import { ChaosCluster, LOOM_BIN, sleep } from './cluster';
import { ALL_FAULT_KINDS, FAULT_KINDS, FaultInjector, FaultKind, FaultRecord, FaultSchedule, probeDrain } from './faults';
import { jsonReport, RunInfo, textReport } from './report';
import { randomSeed, Rng } from './rng';
import { ConcurrentSighting, LiveTaskProcess, Observation, ProcessSampler } from './sampler';
import { selfTest } from './selftest';
import { parseLog, PlannedTask, planTasks, processTag, taskSpec } from './tasks';

interface Options {
  tasks: number;
  seed: number;
  faults?: number;
  faultIntervalMs: number;
  durationMinMs: number;
  durationMaxMs: number;
  slots: number;
  leaseTtlS: number;
  drain: boolean;
  kinds: FaultKind[];
  flaky: number;
  fail: number;
  long: number;
  longMinMs: number;
  longMaxMs: number;
  timeoutS?: number;
  json: boolean;
  keep: boolean;
  quick: boolean;
}

function parseArgs(argv: string[]): Options & { selfTest: boolean; recheck?: string } {
  const a = yargs(argv)
    .scriptName('npm run chaos --')
    .usage('$0 [options]\n\nChaos test of a 5-node loom cluster; see scripts/chaos/main.ts.')
    .option('tasks', { type: 'number', describe: 'tasks to submit (default 5000; --quick 500)' })
    .option('seed', { type: 'number', describe: 'seed of the task plan and fault schedule (default: random, printed)' })
    .option('faults', { type: 'number', describe: 'number of faults (default: until all tasks are done; --quick 5)' })
    .option('fault-interval', { type: 'number', describe: 'mean gap between faults in ms (default 8000; --quick 2500)' })
    .option('duration-min-ms', { type: 'number', describe: 'shortest task (default 50; --quick 100)' })
    .option('duration-max-ms', { type: 'number', describe: 'longest task (default 1500; --quick 2000)' })
    .option('slots', { type: 'number', default: 3, describe: 'slots per node' })
    .option('lease-ttl', { type: 'number', describe: 'node lease TTL in seconds (default 5; --quick 4)' })
    .option('drain', { type: 'boolean', default: true, describe: 'include drain/resume faults (skipped if `loom node drain` is missing); --no-drain to leave them out' })
    .option('kinds', { type: 'string', describe: `comma-separated fault kinds (default: ${FAULT_KINDS.join(',')}; also etcd-outage: every etcd member down for 10 s; wipe-member: a member node's etcd data deleted, back with --join; replace-member: a member node lost for good, its member removed, a new machine joins)` })
    .option('long', { type: 'number', default: 0.05, describe: 'fraction of long tasks (--long-min-ms..--long-max-ms): they outlive a paused node\'s fence deadline' })
    .option('long-min-ms', { type: 'number', default: 3000 })
    .option('long-max-ms', { type: 'number', default: 8000 })
    .option('flaky', { type: 'number', default: 0.04, describe: 'fraction of tasks that fail their first attempt (retries 2)' })
    .option('fail', { type: 'number', default: 0.02, describe: 'fraction of tasks that always fail (retries 1)' })
    .option('timeout', { type: 'number', describe: 'seconds to wait for all tasks after submit (default: from the workload)' })
    .option('quick', { type: 'boolean', default: false, describe: 'CI run: 500 tasks, 5 faults, under 3 minutes' })
    .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON on stdout (progress and summary go to stderr)' })
    .option('keep', { type: 'boolean', default: false, describe: 'keep the run directory even when the run passes' })
    .option('recheck', { type: 'string', describe: 'run the checker again on a kept run directory (no cluster)' })
    .option('self-test', { type: 'boolean', default: false, describe: 'check the checker: feed it planted violations, expect it to report them' })
    .strict()
    .help()
    .version(false)
    .parseSync();
  const q = a.quick;
  const kinds = (a.kinds ? a.kinds.split(',').map((k) => k.trim()) : FAULT_KINDS) as FaultKind[];
  for (const k of kinds) if (!ALL_FAULT_KINDS.includes(k)) throw new Error(`unknown fault kind "${k}" (known: ${ALL_FAULT_KINDS.join(', ')})`);
  const o = {
    tasks: a.tasks ?? (q ? 500 : 5000),
    seed: a.seed ?? randomSeed(),
    faults: a.faults ?? (q ? 5 : undefined),
    faultIntervalMs: a['fault-interval'] ?? (q ? 2500 : 8000),
    durationMinMs: a['duration-min-ms'] ?? (q ? 100 : 50),
    durationMaxMs: a['duration-max-ms'] ?? (q ? 2000 : 1500),
    slots: a.slots,
    leaseTtlS: a['lease-ttl'] ?? (q ? 4 : 5),
    drain: a.drain,
    kinds: a.drain ? kinds : kinds.filter((k) => k !== 'drain-node'),
    flaky: a.flaky,
    fail: a.fail,
    long: a.long,
    longMinMs: a['long-min-ms'],
    longMaxMs: a['long-max-ms'],
    timeoutS: a.timeout ?? (q ? 120 : undefined),
    json: a.json,
    keep: a.keep,
    quick: q,
    selfTest: a['self-test'],
    recheck: a.recheck,
  };
  if (!Number.isInteger(o.tasks) || o.tasks < 1) throw new Error('--tasks must be a positive integer');
  if (!Number.isInteger(o.seed)) throw new Error('--seed must be an integer');
  if (o.durationMinMs < 0 || o.durationMaxMs < o.durationMinMs) throw new Error('need 0 <= --duration-min-ms <= --duration-max-ms');
  if (o.longMinMs < 0 || o.longMaxMs < o.longMinMs) throw new Error('need 0 <= --long-min-ms <= --long-max-ms');
  if (o.leaseTtlS < 2) throw new Error('--lease-ttl must be at least 2');
  return o;
}

function replayCommand(o: Options): string {
  const parts = [
    'npm run chaos --', '--seed', String(o.seed), '--tasks', String(o.tasks),
    ...(o.faults !== undefined ? ['--faults', String(o.faults)] : []),
    '--fault-interval', String(o.faultIntervalMs), '--duration-min-ms', String(o.durationMinMs),
    '--duration-max-ms', String(o.durationMaxMs), '--slots', String(o.slots), '--lease-ttl', String(o.leaseTtlS),
    ...(o.drain ? [] : ['--no-drain']),
    ...(o.kinds.join(',') !== (o.drain ? FAULT_KINDS : FAULT_KINDS.filter((k) => k !== 'drain-node')).join(',') ? ['--kinds', o.kinds.join(',')] : []),
    ...(o.flaky !== 0.04 ? ['--flaky', String(o.flaky)] : []),
    ...(o.fail !== 0.02 ? ['--fail', String(o.fail)] : []),
    ...(o.long !== 0.05 ? ['--long', String(o.long)] : []),
    ...(o.longMinMs !== 3000 ? ['--long-min-ms', String(o.longMinMs)] : []),
    ...(o.longMaxMs !== 8000 ? ['--long-max-ms', String(o.longMaxMs)] : []),
  ];
  return parts.join(' ');
}

async function countStatus(client: Etcd3): Promise<{ terminal: number; queued: number; running: number }> {
  const count = async (prefix: string) => Number(await client.getAll().prefix(prefix).count());
  const [c, f, x, l, q, r] = await Promise.all(
    ['completed', 'failed', 'cancelled', 'lost', 'queued', 'running'].map((s) => count(`/task/status/${s}/`)),
  );
  return { terminal: c + f + x + l, queued: q, running: r };
}

async function run(o: Options): Promise<number> {
  const t0 = Date.now();
  const err = (msg: string) => process.stderr.write(`[chaos +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
  const say = o.json ? err : (msg: string) => process.stdout.write(`[chaos +${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
  say(`seed ${o.seed}`);
  const replay = replayCommand(o);
  say(`replay with: ${replay}`);
  if (!fs.existsSync(LOOM_BIN)) {
    err(`${LOOM_BIN} is missing: build first (npm run build)`);
    return 2;
  }

  const runTag = `${o.seed}-${crypto.randomBytes(3).toString('hex')}`;
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), `loom-chaos-${o.seed}-`));
  const logPath = path.join(runDir, 'tasks.log');
  fs.writeFileSync(logPath, '');
  // Tasks run under uids of their own (--run-as pool): they may pass through
  // the run dir to append to tasks.log, and nothing else.
  fs.chmodSync(runDir, 0o711);
  fs.chmodSync(logPath, 0o622);
  const notes: string[] = [];
  const plan = planTasks(new Rng(o.seed, 1), {
    count: o.tasks, minMs: o.durationMinMs, maxMs: o.durationMaxMs, flaky: o.flaky, fail: o.fail,
    long: o.long, longMinMs: o.longMinMs, longMaxMs: o.longMaxMs,
  });

  let drainAvailable = false;
  if (o.kinds.includes('drain-node')) {
    drainAvailable = await probeDrain();
    if (!drainAvailable) {
      const note = '`loom node drain` is not available in this build: drain/resume faults are skipped';
      notes.push(note);
      say(`note: ${note}`);
    }
  }
  const kinds = drainAvailable ? o.kinds : o.kinds.filter((k) => k !== 'drain-node');
  if (kinds.length === 0 && (o.faults ?? 1) > 0) notes.push('no fault kinds enabled: no faults injected');

  const cluster = await ChaosCluster.create({ dir: runDir, slots: o.slots, leaseTtlS: o.leaseTtlS, log: err });
  let interrupted = false;
  const onSignal = () => {
    if (interrupted) return;
    interrupted = true;
    err('interrupted: killing the cluster');
    cluster.killAllSync();
    process.stderr.write(`seed ${o.seed}; run dir kept: ${runDir}\n`);
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const sampler = new ProcessSampler(processTag(runTag));
  let client: Etcd3 | undefined;
  const apis: LoomApi[] = [];
  try {
    say(`starting 5 nodes in ${runDir} (${o.slots} slots each, lease TTL ${o.leaseTtlS} s)`);
    await cluster.startAll();
    say(`cluster up: ${cluster.nodes.map((n) => `${n.name}(pid ${n.pid})`).join(' ')}; etcd ${cluster.clientUrls.join(',')}`);
    client = new Etcd3({ hosts: cluster.harnessUrls, dialTimeout: 3000 });
    const etcd = client;
    const nodeLease = async (name: string) => {
      const res = await etcd.kv.range({ key: Buffer.from(`/node/${name}`) }, { deadline: Date.now() + 3000 });
      return res.kvs[0] ? String(res.kvs[0].lease) : undefined;
    };
    sampler.start();

    // ---- submit ----
    const tasks: SubmittedTask[] = [];
    const BATCH = 250;
    for (const n of cluster.nodes) apis.push(new LoomApi(n.api, { deadlineMs: 60_000 }));
    for (let i = 0, b = 0; i < plan.length; i += BATCH, b++) {
      const chunk = plan.slice(i, i + BATCH);
      const ids = await apis[b % apis.length].submit(chunk.map((p) => taskSpec(p, logPath, runTag)));
      ids.forEach((id, j) => tasks.push({ id, plan: chunk[j] }));
    }
    const submittedAtMs = Date.now();
    say(`submitted ${tasks.length} tasks (${plan.filter((p) => p.kind === 'flaky').length} flaky, ${plan.filter((p) => p.kind === 'fail').length} failing)`);
    fs.writeFileSync(path.join(runDir, 'tasks.json'), JSON.stringify(tasks.map((t) => ({ id: t.id, ...t.plan }))));

    // ---- wait for completion while injecting faults ----
    // Slot-time of the workload, with ~25 ms per task for starting it and recording it (what
    // dominates a run of 1-20 ms tasks: 30,000 of them timed out with the durations alone).
    const totalWorkMs = plan.reduce((s, p) => s + p.durationMs + 25, 0) / (cluster.nodes.length * o.slots);
    const timeoutMs = (o.timeoutS ?? Math.max(120, 60 + (3 * totalWorkMs) / 1000)) * 1000;
    let allDone = false;
    let timedOut = false;
    let last = { terminal: 0, queued: 0, running: 0 };
    let lastProgress = 0;
    const faults: FaultRecord[] = [];
    let faultsOver = false;
    // Nothing queued, the same few tasks RUNNING and no progress for this long
    // once the faults are over: they are stuck (the checker says which).
    const stallMs = Math.max(30_000, 2 * o.longMaxMs + 4 * o.leaseTtlS * 1000);
    let stalled = false;
    let lastChange = { at: Date.now(), terminal: -1 };
    const poller = (async () => {
      while (!allDone && !timedOut) {
        try {
          last = await countStatus(etcd);
          if (last.terminal >= tasks.length && last.queued === 0 && last.running === 0) allDone = true;
          if (last.terminal !== lastChange.terminal || last.queued > 0 || !faultsOver) lastChange = { at: Date.now(), terminal: last.terminal };
        } catch {
          // a member may be down: try again
        }
        if (Date.now() - lastProgress > 10_000) {
          lastProgress = Date.now();
          say(`progress: ${last.terminal}/${tasks.length} terminal, ${last.queued} queued, ${last.running} running; ${faults.length} fault(s) so far`);
        }
        if (!allDone && Date.now() - lastChange.at > stallMs) {
          stalled = true;
          timedOut = true;
          say(`no progress for ${Math.round(stallMs / 1000)} s with ${last.running} task(s) RUNNING and nothing queued: giving up`);
        }
        if (!allDone && Date.now() - submittedAtMs > timeoutMs) timedOut = true;
        if (!allDone && !timedOut) await sleep(500);
      }
    })();

    const watchClaims = async (name: string, onPut: () => void) => {
      const w = await etcd.watch().prefix(`/task/status/running/${name}/`).create();
      w.on('put', () => onPut());
      w.on('error', () => undefined);
      return () => w.cancel();
    };
    const injector = new FaultInjector({
      cluster, nodeLease, watchClaims, drainAvailable, leaseTtlMs: o.leaseTtlS * 1000, log: err,
      afterResume: () => sampler.burst(400),
    });
    const schedule = new FaultSchedule(new Rng(o.seed, 2), {
      kinds: kinds.length ? kinds : FAULT_KINDS,
      nodes: cluster.nodes.map((n) => n.name),
      members: cluster.members.map((n) => n.name),
      workers: cluster.nodes.filter((n) => n.role === 'worker').map((n) => n.name),
      leaseTtlMs: o.leaseTtlS * 1000,
      intervalMs: o.faultIntervalMs,
      coverFirst: true,
    });
    const maxFaults = kinds.length === 0 ? 0 : o.faults ?? Infinity;
    while (faults.length < maxFaults && !allDone && !timedOut) {
      const f = schedule.next();
      const wakeAt = Date.now() + f.gapMs;
      while (Date.now() < wakeAt && !allDone && !timedOut) await sleep(Math.min(200, wakeAt - Date.now()));
      if (allDone || timedOut) break;
      say(`fault #${f.seq}: ${f.kind} ${f.target} (hold ${f.holdMs} ms${f.deadlineMs !== undefined ? `, deadline ${f.deadlineMs} ms` : ''})`);
      const rec = await injector.inject(f);
      faults.push(rec);
      say(`fault #${f.seq}: ${rec.status}: ${rec.note}`);
    }
    if (faults.length < maxFaults && maxFaults !== Infinity) {
      notes.push(`only ${faults.length} of ${maxFaults} faults were injected: ${timedOut ? 'timed out' : 'all tasks finished first'}`);
    }
    faultsOver = true;
    await poller;
    const doneAtMs = Date.now();
    if (stalled) notes.push(`stalled: ${last.running} task(s) RUNNING with no progress for ${Math.round(stallMs / 1000)} s`);
    else if (timedOut) say(`timed out after ${Math.round(timeoutMs / 1000)} s: ${last.terminal}/${tasks.length} terminal`);
    else say(`all ${tasks.length} tasks terminal after ${((doneAtMs - submittedAtMs) / 1000).toFixed(1)} s; ${faults.length} fault(s)`);

    // Let anything late (a stray process, a late write) show itself.
    await sleep(3000);
    let kvs;
    let snapshotAtMs = Date.now();
    for (let tries = 1; ; tries++) {
      try {
        snapshotAtMs = Date.now();
        kvs = await readStore(cluster.clientUrls);
        break;
      } catch (e) {
        if (tries >= 5) throw e;
        await sleep(1000);
      }
    }
    fs.writeFileSync(
      path.join(runDir, 'store.json'),
      JSON.stringify(kvs.map((kv) => ({ key: kv.key, lease: kv.lease, value: kv.value.toString('base64') }))),
    );
    sampler.scan();
    sampler.stop();
    etcd.close();
    client = undefined;
    for (const api of apis) api.close();
    say('stopping the cluster');
    await cluster.stopAll();
    await sleep(1000);
    const leftovers = sampler.scan();
    fs.writeFileSync(
      path.join(runDir, 'sampler.json'),
      JSON.stringify({ observations: sampler.observations(), concurrent: sampler.concurrent, leftovers, snapshotAtMs }),
    );

    const log = parseLog(fs.readFileSync(logPath, 'utf8'));
    const result = check({
      kvs,
      log,
      tasks,
      observations: sampler.observations(),
      concurrent: sampler.concurrent,
      leftovers,
      faults,
      leaseTtlMs: o.leaseTtlS * 1000,
      snapshotAtMs,
    });
    const info: RunInfo = {
      seed: o.seed,
      replay,
      runDir,
      nodes: '5 nodes: n1,n2,n3 embed etcd members; w1,w2 worker-only (--etcd, through the harness\'s proxies)',
      slots: o.slots,
      leaseTtlS: o.leaseTtlS,
      plan,
      faults,
      notes,
      startedAtMs: t0,
      submittedAtMs,
      doneAtMs,
      finishedAtMs: Date.now(),
      allTerminal: allDone,
      longMinMs: o.longMinMs,
      plannedFaults: maxFaults === Infinity ? 'until all tasks are done' : String(maxFaults),
      samplerScans: sampler.scans,
      samplerMaxGapMs: sampler.maxGapMs,
    };
    const json = jsonReport(info, result);
    fs.writeFileSync(path.join(runDir, 'report.json'), JSON.stringify(json, null, 2));
    const text = textReport(info, result);
    if (o.json) {
      process.stderr.write(text + '\n');
      process.stdout.write(JSON.stringify(json, null, 2) + '\n');
    } else {
      process.stdout.write(text + '\n');
    }
    const failed = result.violations.length > 0;
    // The etcd members' data (WALs are preallocated, ~200 MB a run) is not
    // needed for diagnosis: store.json holds every key.
    for (const n of cluster.members) fs.rmSync(path.join(n.dataDir, 'etcd'), { recursive: true, force: true });
    if (failed || o.keep) {
      say(`run dir kept: ${runDir} (node logs: <dir>/<node>/node.log, tasks.log, store.json, report.json)`);
    } else {
      fs.rmSync(runDir, { recursive: true, force: true });
    }
    say(`${failed ? 'FAILED' : 'PASSED'}: ${result.violations.length} violation(s); seed ${o.seed}`);
    return failed ? 1 : 0;
  } catch (e) {
    err(`harness error: ${(e as Error).stack ?? e}`);
    cluster.killAllSync();
    process.stderr.write(`seed ${o.seed}; run dir kept: ${runDir}\n`);
    return 2;
  } finally {
    sampler.stop();
    client?.close();
    for (const api of apis) api.close();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

/** Re-runs the checker on a kept run dir (store.json, tasks.log, tasks.json, sampler.json, report.json). */
function recheck(dir: string): number {
  const read = (f: string) => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  const store = read('store.json') as { key: string; value: string; lease: string }[];
  const plan = read('tasks.json') as (PlannedTask & { id: string })[];
  const sampled = read('sampler.json') as {
    observations: Observation[]; concurrent: ConcurrentSighting[]; leftovers: LiveTaskProcess[]; snapshotAtMs?: number;
  };
  const old = read('report.json') as {
    seed: number; replay: string; leaseTtlS: number; slots: number; longMinMs?: number; faults: { list: FaultRecord[] }; notes: string[];
  };
  const result = check({
    kvs: store.map((k) => ({ key: k.key, lease: k.lease, value: Buffer.from(k.value, 'base64') })),
    log: parseLog(fs.readFileSync(path.join(dir, 'tasks.log'), 'utf8')),
    tasks: plan.map(({ id, ...p }) => ({ id, plan: p })),
    observations: sampled.observations,
    concurrent: sampled.concurrent,
    leftovers: sampled.leftovers,
    faults: old.faults.list,
    leaseTtlMs: old.leaseTtlS * 1000,
    snapshotAtMs: sampled.snapshotAtMs,
  });
  const t = old.faults.list.length ? old.faults.list[0].startMs : 0;
  process.stdout.write(
    textReport(
      {
        seed: old.seed, replay: old.replay, runDir: dir, nodes: '(recheck)', slots: old.slots, leaseTtlS: old.leaseTtlS,
        plan: plan.map(({ id: _id, ...p }) => p), faults: old.faults.list, notes: old.notes, startedAtMs: t, submittedAtMs: t,
        doneAtMs: t, finishedAtMs: t, allTerminal: true, samplerScans: 0, samplerMaxGapMs: 0, plannedFaults: '(recheck)', longMinMs: old.longMinMs ?? 3000,
      },
      result,
    ) + '\n',
  );
  return result.violations.length ? 1 : 0;
}

async function main(): Promise<void> {
  let o: ReturnType<typeof parseArgs>;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`chaos: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const code = o.selfTest ? selfTest() : o.recheck ? recheck(o.recheck) : await run(o);
  process.exit(code);
}

void main();
