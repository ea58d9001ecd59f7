/** The metrics a node shows at GET /metrics (--metrics-listen), from a snapshot of its counters. */
import { Metric } from './metrics-endpoint';

export interface NodeMetricsSnapshot {
  node: string;
  version: string;
  slots: number;
  urgentSlots: number;
  running: number;
  leaseHeld: boolean;
  draining: boolean;
  dockerUp: boolean;
  claimedFromQueue: number;
  claimedAtSubmit: number;
  lostClaims: number;
  claimTxns: number;
  /** Results recorded, by the state name they left the task in. */
  resultsByState: ReadonlyMap<string, number>;
  requeued: number;
  declaredDead: number;
  fenced: number;
  retentionDeletedTasks: number;
  /** Per etcd endpoint, what its last probe found (undefined: answers); empty with one endpoint (not probed). */
  etcdMembers: Record<string, string | undefined>;
  memory: { rss: number; heapUsed: number };
  /** etcd's space as this node's last look found it (etcd/space.ts); unset: not looked yet. */
  etcdSpace?: { quotaBytes: number; nospace: boolean; members: { endpoint: string; dbSize: number }[] };
}

const gauge = (name: string, help: string, value: number): Metric => ({ name, help, type: 'gauge', samples: [{ value }] });
const counter = (name: string, help: string, value: number): Metric => ({ name, help, type: 'counter', samples: [{ value }] });
const flag = (b: boolean) => (b ? 1 : 0);

export function nodeMetrics(s: NodeMetricsSnapshot): Metric[] {
  return [
    { name: 'loom_node_info', help: 'Always 1; labelled with the node name and loom version.', type: 'gauge', samples: [{ labels: { node: s.node, version: s.version }, value: 1 }] },
    gauge('loom_slots', 'Tasks this node runs at once (--slots).', s.slots),
    gauge('loom_urgent_slots', 'Extra slots only urgent tasks may take (--urgent-slots).', s.urgentSlots),
    gauge('loom_tasks_running', 'Tasks running on this node.', s.running),
    gauge('loom_lease_held', '1 while this node holds a live membership lease; 0 while fenced or rejoining.', flag(s.leaseHeld)),
    gauge('loom_draining', '1 while this node takes no new work (drained, stopping, or its data dir below --min-free-disk).', flag(s.draining)),
    gauge('loom_docker_up', "1 while this node's Docker engine answers.", flag(s.dockerUp)),
    {
      name: 'loom_claims_total',
      help: 'Tasks this node claimed: from the queue, or in the transaction that submitted them through this node.',
      type: 'counter',
      samples: [{ labels: { via: 'queue' }, value: s.claimedFromQueue }, { labels: { via: 'submit' }, value: s.claimedAtSubmit }],
    },
    counter('loom_claims_lost_total', 'Tasks in claim transactions of this node that another node had claimed first.', s.lostClaims),
    counter('loom_claim_transactions_total', 'Claim transactions this node sent.', s.claimTxns),
    {
      name: 'loom_task_results_total',
      help: 'Attempt results this node recorded, by the state they left the task in (queued: to be retried).',
      type: 'counter',
      samples: [...s.resultsByState].sort(([a], [b]) => (a < b ? -1 : 1)).map(([state, value]) => ({ labels: { state }, value })),
    },
    counter('loom_tasks_requeued_total', 'Tasks of lost nodes this node put back in the queue.', s.requeued),
    counter('loom_nodes_declared_dead_total', 'Silent nodes this node declared dead.', s.declaredDead),
    counter('loom_fenced_total', 'Times this node fenced itself (its lease could have expired).', s.fenced),
    counter('loom_retention_deleted_tasks_total', 'Finished tasks this node deleted after --retention.', s.retentionDeletedTasks),
    {
      name: 'loom_etcd_member_up',
      help: "1 while this node's last probe of the etcd member answered with a leader; requests skip members at 0 (no samples with a single endpoint: it is not probed).",
      type: 'gauge',
      samples: Object.keys(s.etcdMembers).sort().map((endpoint) => ({ labels: { endpoint }, value: flag(s.etcdMembers[endpoint] === undefined) })),
    },
    ...(s.etcdSpace
      ? [
          {
            name: 'loom_etcd_db_bytes',
            help: "Size of each etcd member's backend file (what etcd compares with its quota); submits stop at half of loom_etcd_quota_bytes.",
            type: 'gauge' as const,
            samples: [...s.etcdSpace.members].sort((a, b) => (a.endpoint < b.endpoint ? -1 : 1)).map((m) => ({ labels: { endpoint: m.endpoint }, value: m.dbSize })),
          },
          gauge('loom_etcd_quota_bytes', "etcd's space quota as this node takes it (--etcd-quota).", s.etcdSpace.quotaBytes),
          gauge('loom_etcd_nospace', "1 while etcd's NOSPACE alarm is raised (every write that puts anything is refused).", flag(s.etcdSpace.nospace)),
        ]
      : []),
    gauge('process_resident_memory_bytes', 'Resident memory of the node process.', s.memory.rss),
    gauge('nodejs_heap_used_bytes', 'V8 heap in use.', s.memory.heapUsed),
  ];
}
