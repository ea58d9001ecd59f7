/**
 * `loom node --metrics-listen host:port`: the node's counters and gauges in
 * the Prometheus text format (version 0.0.4) at GET /metrics, for a scraper.
 * Read-only, plaintext, no task data (names, commands, output): counts only.
 *
 * formatMetrics is pure (a list of samples in, text out); MetricsEndpoint is
 * the HTTP server around it, asking the node for fresh samples per scrape.
 */
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { LoomError } from '../core/errors';
import { parseHostPort } from '../core/config';

export interface Metric {
  name: string;
  help: string;
  type: 'counter' | 'gauge';
  samples: { labels?: Record<string, string>; value: number }[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** The exposition text of `metrics`: HELP and TYPE lines, then one line per sample. */
export function formatMetrics(metrics: Metric[]): string {
  const out: string[] = [];
  for (const m of metrics) {
    if (!NAME.test(m.name)) throw new Error(`bad metric name ${m.name}`);
    out.push(`# HELP ${m.name} ${m.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
    out.push(`# TYPE ${m.name} ${m.type}`);
    for (const s of m.samples) {
      const labels = Object.entries(s.labels ?? {});
      const text = labels.length ? `{${labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}` : '';
      out.push(`${m.name}${text} ${formatValue(s.value)}`);
    }
  }
  return out.join('\n') + '\n';
}

export class MetricsEndpoint {
  private server: http.Server | undefined;

  constructor(private readonly collect: () => Metric[]) {}

  /** Listens on host:port (port 0: any); resolves with the port. */
  async listen(address: string): Promise<number> {
    const { host, port } = parseHostPort(address, '--metrics-listen');
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics here\n');
        return;
      }
      let body: string;
      try {
        body = formatMetrics(this.collect());
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(body);
    });
    server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new LoomError('UNAVAILABLE', `--metrics-listen ${address}: ${err.code === 'EADDRINUSE' ? 'address in use' : err.message}`)),
      );
      server.listen(port, host.replace(/^\[|\]$/g, ''), () => resolve());
    });
    server.on('error', () => undefined);
    this.server = server;
    return (server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
