/**
 * Where the autoscaler's decisions go. `exec`: the operator's command, run
 * (no shell) with the group's new size as its last argument, for any
 * platform: `scale.sh 5`. Its environment says more:
 *
 *   LOOM_AUTOSCALE_GROUP   the group (its nodes carry the label autoscale=<group>)
 *   LOOM_AUTOSCALE_COUNT   the size, as in the argument
 *   LOOM_AUTOSCALE_REMOVE  nodes to stop, comma-separated (drained and idle: stopping them loses no work)
 *   LOOM_AUTOSCALE_LABELS  labels to give new nodes: autoscale=<group>,k=v,...
 *   LOOM_ETCD_ENDPOINTS    the cluster's etcd client URLs, for `loom node --etcd`
 *
 * Exit 0: done (the size is recorded as applied); anything else is logged
 * with the end of its output and the call is made again next time.
 */
import { execFile } from 'node:child_process';
import { LoomError } from '../core/errors';
import type { ScaleProvider } from '../core/scale-provider-spec';

/** Longest a provider call may take. */
export const PROVIDER_TIMEOUT_MS = 5 * 60_000;

export function execProvider(command: string[], baseEnv: Record<string, string | undefined> = {}): ScaleProvider {
  return (req, signal) => new Promise((resolve, reject) => {
    const labels = [`autoscale=${req.group}`, ...Object.entries(req.labels).map(([k, v]) => `${k}=${v}`)].join(',');
    execFile(command[0], [...command.slice(1), String(req.count)], {
      signal, timeout: PROVIDER_TIMEOUT_MS, maxBuffer: 1 << 20,
      env: {
        ...baseEnv,
        LOOM_AUTOSCALE_GROUP: req.group, LOOM_AUTOSCALE_COUNT: String(req.count), LOOM_AUTOSCALE_REMOVE: req.remove.join(','),
        LOOM_AUTOSCALE_LABELS: labels, LOOM_ETCD_ENDPOINTS: req.etcdEndpoints.join(','),
      },
    }, (err, stdout, stderr) => {
      if (!err) return resolve();
      const tail = `${stdout}${stderr}`.trim().split('\n').slice(-3).join(' | ').slice(0, 500);
      const how = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : `failed (${err.message.split('\n')[0].slice(0, 200)})`;
      reject(new LoomError('UNAVAILABLE', `autoscale provider ${command[0]} ${how}${tail ? `: ${tail}` : ''}`));
    });
  });
}
