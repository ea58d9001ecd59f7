/**
 * The node's HTTP listeners beside the gRPC API: --metrics-listen (Prometheus
 * text, plaintext, counts only) and --http-listen (the HTTP/JSON API, over the
 * node's TLS set-up). Either may be off (empty address).
 */
import type { HttpApi, HttpApiOptions } from './http-api';
import { Metric, MetricsEndpoint } from './metrics-endpoint';
import { EventHub } from './event-hub';
import { Kv } from '../etcd/client';
import { Keys } from '../store/keys';
import { NodeDirectory } from '../store/node-directory';
import { countQueued, StatusFeed } from '../store/status-feed';
import { ClusterSampler, QueueSample } from './cluster-sampler';

export interface HttpEndpointsOptions {
  metricsListen: string;
  httpListen: string;
  metrics: () => Metric[];
  api: Omit<HttpApiOptions, 'events' | 'sampler'>;
  /** What the HTTP API's event stream is made of: task changes from etcd, the live nodes. */
  kv: Kv;
  keys: Keys;
  directory: NodeDirectory;
  log: (msg: string) => void;
}

/** The cluster's queue in /metrics, as of the sampler's last look (absent before its first). */
function clusterMetrics(s: QueueSample | undefined): Metric[] {
  if (!s) return [];
  return [
    { name: 'loom_queue_depth', help: 'Tasks queued in the whole cluster (counted every 10 s by this node).', type: 'gauge', samples: [{ value: s.queued }] },
    { name: 'loom_slots_free', help: 'Free slots on the live nodes that take work, as they last published.', type: 'gauge', samples: [{ value: s.slotsFree }] },
  ];
}

const hostOf = (address: string) => address.replace(/:\d+$/, '');

export class HttpEndpoints {
  private metrics: MetricsEndpoint | undefined;
  private http: HttpApi | undefined;
  private sampler: ClusterSampler | undefined;
  /** Their ports once listening (0 when off). */
  metricsPort = 0;
  httpPort = 0;

  constructor(private readonly o: HttpEndpointsOptions) {}

  async start(): Promise<void> {
    const { kv, keys, directory, log } = this.o;
    if (this.o.metricsListen || this.o.httpListen) {
      this.sampler = new ClusterSampler({ countQueued: () => countQueued(kv, keys), nodes: () => directory.all(), log });
      this.sampler.start();
    }
    if (this.o.metricsListen) {
      const sampler = this.sampler!;
      this.metrics = new MetricsEndpoint(() => [...this.o.metrics(), ...clusterMetrics(sampler.latest())]);
      this.metricsPort = await this.metrics.listen(this.o.metricsListen);
    }
    if (this.o.httpListen) {
      // Loaded only when asked for: fastify costs a node that serves no HTTP API its start-up time.
      const { HttpApi } = await import('./http-api');
      const events = new EventHub({ feed: (f) => new StatusFeed(kv, keys, f, log), nodes: () => directory.all(), onNodesChange: (f) => directory.onChange(f), log });
      this.http = new HttpApi({ ...this.o.api, events, sampler: this.sampler });
      this.httpPort = await this.http.listen(this.o.httpListen);
    }
  }

  /** For the node's "up" line: where they listen. */
  describe(): string {
    const scheme = this.o.api.tls ? 'https' : 'http';
    return (this.metrics ? `, metrics http://${hostOf(this.o.metricsListen)}:${this.metricsPort}/metrics` : '') +
      (this.http ? `, http api ${scheme}://${hostOf(this.o.httpListen)}:${this.httpPort}/api/v1` : '');
  }

  async close(): Promise<void> {
    this.sampler?.stop();
    await Promise.all([this.metrics?.close(), this.http?.close()]);
  }
}
