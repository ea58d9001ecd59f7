/**
 * Autoscaling with the docker provider, all real: a one-node cluster (its own
 * embedded etcd) whose node has `--autoscale` with `kind: docker`, and the
 * project's private Docker engine (scripts/docker-up.sh) running worker-only
 * loom nodes in containers of loom-node-runtime (scripts/docker-node-image.sh:
 * this machine's node binary, the checkout bind-mounted; no registry). The
 * containers share the host's network (the engine has no bridge), so they
 * reach the node's etcd on loopback. The workers get --shutdown-grace 1s, so a
 * container stopped under work would requeue it (attempt 2) rather than let
 * it finish.
 *
 * 200 tasks against a node of 2 slots, 196 of one second and 4 of 15 s
 * last, in containers (so the group is told to shrink while they run; 100 s of work for the
 * first node alone): the group grows to its max of 4 containers, each of
 * them runs tasks, every task completes exactly once in its first attempt
 * (no container stopped under running work), and once idle the group is
 * drained and its containers deleted, back to min 0.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import Docker from 'dockerode';
import { LoomApi } from '../../src/client/client';
import { TaskState } from '../../src/gen/loom';
import { LABEL_GROUP } from '../../src/runner/docker-scale';
import { DOCKER_SOCK, describeWithDocker } from '../support/docker';
import { waitFor } from '../support/etcd';
import { sharedFile, spec } from '../support/nodes';
import { cli, LOOM_BIN, ProcCluster, startCluster } from '../support/cluster';

jest.setTimeout(240_000);

const TASKS = 200;
const LONG = 4;
const MAX = 4;
const GROUP = `dk${process.pid}`;
const REPO = path.resolve(LOOM_BIN, '../../../..');
const docker = new Docker({ socketPath: DOCKER_SOCK });
const d = describeWithDocker('docker autoscale');

let cluster: ProcCluster;
let api: LoomApi;
let dir: string;

const groupContainers = () => docker.listContainers({ all: true, filters: { label: [`${LABEL_GROUP}=${GROUP}`] } });

d('autoscaling onto Docker', () => {
  beforeAll(async () => {
    const image = spawnSync('bash', [path.join(REPO, 'scripts', 'docker-node-image.sh')], { env: { ...process.env, LOOM_DOCKER_SOCK: DOCKER_SOCK }, encoding: 'utf8' });
    if (image.status !== 0) throw new Error(`docker-node-image.sh failed: ${image.stdout}${image.stderr}`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-docker-autoscale-'));
    const policy = path.join(dir, 'policy.yaml');
    fs.writeFileSync(policy, JSON.stringify({
      group: GROUP, min: 0, max: MAX, slotsPerNode: 4, targetQueuedPerSlot: 1,
      upCooldown: '2s', downCooldown: '5s', interval: '1s', drainDeadline: '60s',
      provider: {
        kind: 'docker', image: 'loom-node-runtime:latest', engine: `unix://${DOCKER_SOCK}`, network: 'host', listen: '127.0.0.1:0',
        args: ['--lease-ttl=3', '--shutdown-grace=1s'], binds: [`${REPO}:/opt/loom:ro`, `${dir}:${dir}`],
      },
    }));
    cluster = await startCluster(1, ['--slots', '2', '--lease-ttl', '3', '--autoscale', policy, '--http-listen', '127.0.0.1:0']);
    api = new LoomApi(cluster.nodes[0].api);
    await waitFor(async () => (await api.nodes().catch(() => [])).length === 1, { what: 'the node up', timeoutMs: 60_000 });
  });

  afterAll(async () => {
    for (const c of await groupContainers().catch(() => [])) await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    api?.close();
    await cluster?.stopAll();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('grows to max containers, runs every task once, and deletes them when idle', async () => {
    fs.chmodSync(dir, 0o711);
    const ran = sharedFile(dir, 'ran.txt');
    const t0 = Date.now();
    const task = (secs: number, priority: number) => spec(['sh', '-c', `echo "$LOOM_TASK_ID $LOOM_NODE" >> ${ran}; sleep ${secs}`], { priority });
    // The long ones run in containers (a constraint), so the shrink happens under their work.
    const long = () => ({ ...task(15, 1), constraints: [{ key: 'autoscale', op: '=', value: GROUP }] });
    const ids = await api.submit([...Array.from({ length: TASKS - LONG }, () => task(1, 100)), ...Array.from({ length: LONG }, long)]);
    const grown = () => api.nodes().then((ns) => ns.filter((n) => n.labels.autoscale === GROUP).length);
    await waitFor(async () => (await grown()) === MAX, { what: `${MAX} worker containers up as nodes`, timeoutMs: 90_000 })
      .catch((err) => { throw new Error(`${(err as Error).message}\n${cluster.nodes[0].output().slice(-3000)}`); });
    expect((await groupContainers()).filter((c) => c.State === 'running')).toHaveLength(MAX);
    const shown = await cli(['-N', cluster.nodes[0].api, 'nodes']);
    expect(shown.stdout).toMatch(new RegExp(`autoscale ${GROUP}: ${MAX} node\\(s\\) wanted, \\d in the group, provider agrees; evaluated by e1\n  last decision .*: (scale up|steady)`));

    await waitFor(async () => (await api.list({ state: TaskState.COMPLETED, pageSize: 1000 })).tasks.length === TASKS, { what: 'every task completed', timeoutMs: 150_000 });
    const drainedIn = Date.now() - t0;
    const tasks = await Promise.all(ids.map((id) => api.get(id)));
    expect(tasks.filter((t) => t.state !== TaskState.COMPLETED || t.attempt !== 1).map((t) => t.id)).toEqual([]);
    const lines = fs.readFileSync(ran, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(TASKS);
    expect(new Set(lines.map((l) => l.split(' ')[0])).size).toBe(TASKS);
    // Every container did work: the queue went through the group, not only the first node.
    const workers = new Set(tasks.map((t) => t.node).filter((n) => n.startsWith(`loom-${GROUP}-`)));
    expect(workers.size).toBe(MAX);
    console.log(`docker autoscale: ${TASKS} × sleep 1 done in ${(drainedIn / 1000).toFixed(1)} s; the first node alone needs ≥ ${TASKS / 2} s; ${tasks.filter((t) => workers.has(t.node)).length} ran in containers`);

    // Idle: back to min, each container drained, then stopped and deleted by the provider.
    await waitFor(async () => (await groupContainers()).length === 0 && (await api.nodes()).length === 1, { what: 'the group back to 0 containers', timeoutMs: 60_000 });
    expect(cluster.nodes[0].output()).toMatch(new RegExp(`autoscale ${GROUP}: container loom-${GROUP}-[0-9a-f]+ removed \\(drained and idle\\)`));
  });
});
