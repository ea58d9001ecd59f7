/**
 * One seeded run of the simulated cluster (see node.ts for what it models
 * and leaves out): N nodes, a batch-submitted array of short tasks, and
 * seeded faults (node deaths with restarts, lost claim replies, slow etcd).
 * The same options and seed give the same run, event for event.
 */
import { Clock } from './clock';
import { Rng } from '../chaos/rng';
import { SimLog } from './checker';
import { Net, SimNode, StealOrders } from './node';
import { Plant, SimStore } from './store';
import { DEFAULT_STEAL_POLICY } from '../../src/core/steal-policy';

export interface SimOptions {
  seed: number;
  nodes: number;
  slots: number;
  tasks: number;
  /** Node deaths during the run (each node restarts 1-3 s later). */
  deaths: number;
  /** Chance that a claim's reply is lost. */
  lostReplies: number;
  /** Slow-etcd periods (200 ms with transactions 10x slower). */
  slowPeriods: number;
  plant: Plant;
  /** Thieves take turns in each task's order (thiefRank); false: all at once, with jitter. */
  thiefOrder: boolean;
  /** Turns stretch while claims commit slowly (core/steal-policy.ts turnScale); false: fixed turns. */
  turnScale: boolean;
  /** StealPolicy.thiefStepMs and turnGuardMs of every node. */
  thiefStepMs: number;
  turnGuardMs: number;
  ttlMs: number;
  /** Virtual time after which the run stops (what is left undone is reported). */
  limitMs: number;
}

export const SIM_DEFAULTS: SimOptions = {
  seed: 1,
  nodes: 10,
  slots: 2,
  tasks: 5000,
  deaths: 3,
  lostReplies: 0.01,
  slowPeriods: 3,
  plant: 'none',
  thiefOrder: true,
  turnScale: true,
  thiefStepMs: DEFAULT_STEAL_POLICY.thiefStepMs,
  turnGuardMs: DEFAULT_STEAL_POLICY.turnGuardMs,
  ttlMs: 5000,
  limitMs: 3_600_000,
};

export interface SimResult {
  options: SimOptions;
  violations: string[];
  results: number;
  virtualMs: number;
  wallMs: number;
  tasksPerVirtualSecond: number;
  lostClaimsPerTask: number;
  claimTxnsPerTask: number;
  startsPerTask: number;
  kills: number;
}

const SUBMIT_BATCH = 500;
const SUBMIT_EVERY_MS = 20;

export function runSimulation(partial: Partial<SimOptions> = {}): SimResult {
  const o: SimOptions = { ...SIM_DEFAULTS, ...partial };
  const wall = Date.now();
  const clock = new Clock();
  const store = new SimStore(clock, o.plant);
  const log = new SimLog();
  const net = new Net(new Rng(o.seed, 1));
  const plan = new Rng(o.seed, 2);
  const faults = new Rng(o.seed, 3);

  const ids = Array.from({ length: o.tasks }, (_, i) => `t${String(i).padStart(8, '0')}`);
  const duration = new Map(ids.map((id) => [id, plan.chance(0.03) ? plan.int(100, 500) : plan.int(1, 20)]));
  const nodes: SimNode[] = [];
  const orders = new StealOrders();
  const live = () => nodes.filter((n) => n.listed).map((n) => n.name);
  const policy = { ...DEFAULT_STEAL_POLICY, thiefStepMs: o.thiefStepMs, turnGuardMs: o.turnGuardMs };
  for (let i = 0; i < o.nodes; i++) {
    nodes.push(new SimNode(`n${i + 1}`, o.slots, clock, store, net, live, (id) => duration.get(id)!, log, orders, policy, o.thiefOrder, o.turnScale));
  }
  for (const n of nodes) n.join();
  for (let i = 0; i * SUBMIT_BATCH < ids.length; i++) {
    const batch = ids.slice(i * SUBMIT_BATCH, (i + 1) * SUBMIT_BATCH).map((id) => ({ id, priority: 100 }));
    clock.after(i * SUBMIT_EVERY_MS, () => store.submit(batch));
  }

  // Faults over the time the work would take with every slot busy.
  const spanMs = Math.max(1000, (o.tasks * 12) / (o.nodes * o.slots));
  for (let k = 0; k < o.deaths; k++) {
    clock.after(faults.int(50, Math.floor(spanMs * 0.7)), () => {
      const up = nodes.filter((n) => n.alive);
      if (up.length <= 1) return;
      const victim = faults.pick(up);
      victim.die(o.ttlMs);
      if (o.plant === 'requeue-live-lease') {
        const busy = nodes.filter((n) => n.alive && n.busy > 0);
        if (busy.length > 0) store.wronglyExpire(faults.pick(busy).lease);
      }
      clock.after(faults.int(1000, 3000), () => victim.join());
    });
  }
  for (let k = 0; k < o.slowPeriods; k++) {
    clock.after(faults.int(0, Math.floor(spanMs)), () => {
      net.slow = 10;
      clock.after(200, () => (net.slow = 1));
    });
  }
  net.lostReply = o.lostReplies;

  clock.runUntil(() => log.results >= o.tasks, o.limitMs);
  log.finish(ids);
  const claimTxns = nodes.reduce((s, n) => s + n.claimTxns, 0);
  const lost = nodes.reduce((s, n) => s + n.lostClaims, 0);
  return {
    options: o,
    violations: log.violations,
    results: log.results,
    virtualMs: clock.now,
    wallMs: Date.now() - wall,
    tasksPerVirtualSecond: log.results / (clock.now / 1000),
    lostClaimsPerTask: lost / o.tasks,
    claimTxnsPerTask: claimTxns / o.tasks,
    startsPerTask: log.starts / o.tasks,
    kills: log.kills,
  };
}
