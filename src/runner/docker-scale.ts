/**
 * The autoscaler's docker provider: the group's worker nodes as containers
 * on one Docker engine, each a worker-only `loom node --etcd ...` (no etcd
 * member of its own), named loom-<group>-<random> as node and container, and
 * labelled so the provider finds its own and nothing else.
 *
 * A call makes the engine match the request: the containers of the nodes to
 * remove (drained and idle, so nothing is lost) get SIGTERM, then are
 * deleted with their anonymous volumes; containers of the group that exited
 * (a node that fenced itself and gave up, a crash past the restart policy)
 * are deleted and counted as missing; then as many new ones are started as
 * the size needs. Containers beyond the size with no remove order are left
 * running: only the autoscaler, which drains them first, picks who goes.
 * Every step is idempotent, so a call that failed halfway is made again.
 */
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import type { DockerEngine } from '../core/docker-engine';
import { describeDockerEngine } from '../core/docker-engine';
import { LoomError } from '../core/errors';
import type { DockerProviderSpec, ScaleProvider, ScaleRequest } from '../core/scale-provider-spec';
import { dockerodeOptions } from './docker-runner';

export const LABEL_GROUP = 'loom.autoscale.group';
export const LABEL_SCALED_NODE = 'loom.autoscale.node';
/** How long a removed node may take to stop on SIGTERM (it is idle: this is its shutdown). */
const STOP_TIMEOUT_S = 30;

/** `loom node` arguments of a new worker: the container's command after the image's loom entrypoint. */
export function workerArgs(spec: DockerProviderSpec, req: ScaleRequest, name: string, slotsPerNode: number): string[] {
  const labels = Object.entries({ autoscale: req.group, ...req.labels }).map(([k, v]) => `--label=${k}=${v}`);
  const port = /:(\d+)$/.exec(spec.listen)![1];
  // On a network of its own a container is reached by its name; on the host's, by the address it listens on.
  const advertise = spec.network === 'host' || port === '0' ? [] : [`--advertise=${name}:${port}`];
  const etcd = spec.etcd ?? req.etcdEndpoints;
  return ['node', `--name=${name}`, `--etcd=${etcd.join(',')}`, `--slots=${slotsPerNode}`, `--listen=${spec.listen}`, ...advertise, '--data-dir=/data', ...labels, ...spec.args];
}

function engineError(engine: DockerEngine, what: string, err: unknown): LoomError {
  const e = err as { statusCode?: number; json?: { message?: string }; message?: string };
  const why = e.json?.message ?? e.message ?? String(err);
  const hint = e.statusCode === 404 && what.startsWith('create') ? ' (is the image on that engine? build it or pull it there)' : '';
  return new LoomError('UNAVAILABLE', `autoscale docker provider: ${what} on ${describeDockerEngine(engine)}: ${why.slice(0, 300)}${hint}`);
}

export function dockerProvider(spec: DockerProviderSpec, engine: DockerEngine, slotsPerNode: number, log: (m: string) => void): ScaleProvider {
  const docker = new Docker(dockerodeOptions(engine));
  return async (req, signal) => {
    const mine = await docker.listContainers({ all: true, filters: { label: [`${LABEL_GROUP}=${req.group}`] }, abortSignal: signal })
      .catch((err) => { throw engineError(engine, 'list containers', err); });
    const gone = async (id: string, name: string, why: string) => {
      const c = docker.getContainer(id);
      await c.stop({ t: STOP_TIMEOUT_S, abortSignal: signal }).catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 304 && err.statusCode !== 404) throw engineError(engine, `stop ${name}`, err);
      });
      await c.remove({ v: true, force: true, abortSignal: signal }).catch((err: { statusCode?: number }) => {
        if (err.statusCode !== 404) throw engineError(engine, `remove ${name}`, err);
      });
      log(`autoscale ${req.group}: container ${name} removed (${why})`);
    };
    let live = 0;
    for (const c of mine) {
      const name = c.Labels[LABEL_SCALED_NODE] ?? c.Names[0]?.replace(/^\//, '') ?? c.Id;
      if (req.remove.includes(name)) await gone(c.Id, name, 'drained and idle');
      else if (c.State === 'exited' || c.State === 'dead') await gone(c.Id, name, `it ${c.State}: ${c.Status}`);
      else live++;
    }
    for (; live < req.count; live++) {
      const name = `loom-${req.group}-${randomBytes(4).toString('hex')}`;
      const container = await docker.createContainer({
        name, Image: spec.image, Hostname: name.slice(0, 63), Cmd: workerArgs(spec, req, name, slotsPerNode),
        Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
        Labels: { [LABEL_GROUP]: req.group, [LABEL_SCALED_NODE]: name },
        HostConfig: { NetworkMode: spec.network, Binds: spec.binds, Init: true, RestartPolicy: { Name: 'on-failure', MaximumRetryCount: 5 } },
        abortSignal: signal,
      }).catch((err) => { throw engineError(engine, `create ${name} from ${spec.image}`, err); });
      await container.start({ abortSignal: signal }).catch(async (err) => {
        await container.remove({ force: true }).catch(() => undefined);
        throw engineError(engine, `start ${name}`, err);
      });
      log(`autoscale ${req.group}: container ${name} started from ${spec.image}`);
    }
  };
}
