/**
 * Container tasks through a real node and a real Docker engine (started by
 * scripts/docker-up.sh; skipped, with the reason printed, only where dockerd
 * cannot start).
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import Docker from 'dockerode';
import { TaskState } from '../../src/gen/loom';
import { uniqueRoot, waitFor } from '../support/etcd';
import { collectLogs, spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(120_000);
const ROOT = path.resolve(__dirname, '../../..');
const SOCK = process.env.LOOM_DOCKER_SOCK || '/tmp/loom-docker/docker.sock';
const IMAGE = 'loom-busybox:latest';

const wasUp = spawnSync(process.execPath, ['-e', `require('http').get({socketPath:${JSON.stringify(SOCK)},path:'/_ping'},r=>process.exit(r.statusCode===200?0:1)).on('error',()=>process.exit(1))`]).status === 0;
const up = spawnSync('bash', [path.join(ROOT, 'scripts/docker-up.sh')], { env: { ...process.env, LOOM_DOCKER_SOCK: SOCK }, encoding: 'utf8', timeout: 300_000 });
const available = up.status === 0;
if (!available) console.warn(`container task tests skipped: ${(up.stdout + up.stderr).trim().split('\n').slice(-3).join(' | ')}`);
const d = available ? describe : describe.skip;

d('container tasks on a node', () => {
  let n: TestNode;
  const docker = new Docker({ socketPath: SOCK });
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'dock', { slots: 2, dockerSocket: SOCK });
  });
  afterAll(async () => {
    await stopNode(n);
    if (!wasUp) spawnSync('bash', [path.join(ROOT, 'scripts/docker-down.sh')]);
  });

  it('advertises docker, runs a container task, returns its output and exit code', async () => {
    expect((await n.api.nodes())[0].docker).toBe(true);
    const [id] = await n.api.submit([spec(['sh', '-c', 'echo in-container; echo oops >&2; exit 4'], { container: { image: IMAGE, pull: 'never', mounts: [], network: '' } })]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.exitCode).toBe(4);
    expect(await collectLogs(n.api, id)).toEqual({ stdout: 'in-container\n', stderr: 'oops\n' });
  });

  it('reports a container over its memory limit as OOM', async () => {
    const [id] = await n.api.submit([spec(['sh', '-c', 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo ${#x}'], {
      container: { image: IMAGE, pull: 'never', mounts: [], network: '' },
      resources: { cpu: 0, memoryBytes: 16 * 1024 * 1024, diskBytes: 0 },
    })]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.FAILED);
    expect(t.oomKilled).toBe(true);
    expect(t.reason).toMatch(/out of memory/);
  });

  it('cancel stops and removes the container', async () => {
    const [id] = await n.api.submit([spec(['sleep', '300'], { container: { image: IMAGE, pull: 'never', mounts: [], network: '' } })]);
    const labelled = async () => docker.listContainers({ all: true, filters: { label: [`loom.task=${id}`] } });
    await waitFor(async () => (await labelled()).length === 1, { what: 'container created' });
    await n.api.cancel(id);
    expect((await n.api.wait(id)).state).toBe(TaskState.CANCELLED);
    await waitFor(async () => (await labelled()).length === 0, { what: 'container removed' });
  });
});
