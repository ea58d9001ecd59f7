/**
 * A real `loom node` process finds its Docker engine through DOCKER_HOST, as
 * the docker CLI does, when neither --docker-socket nor LOOM_DOCKER_SOCK is
 * set. Uses the shared test engine of test/support/docker.ts.
 */
import { LoomApi } from '../../src/client/client';
import { waitFor } from '../support/etcd';
import { ProcCluster, startCluster } from '../support/cluster';
import { DOCKER_SOCK, describeWithDocker } from '../support/docker';

jest.setTimeout(60_000);

const SOCK = DOCKER_SOCK;
const d = describeWithDocker('DOCKER_HOST test');

let cluster: ProcCluster | undefined;

afterAll(async () => {
  await cluster?.stopAll();
});

d('DOCKER_HOST', () => {
  test('DOCKER_HOST=unix:///path: the node uses that engine', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, DOCKER_HOST: `unix://${SOCK}` };
    delete env.LOOM_DOCKER_SOCK;
    cluster = await startCluster(1, [], env);
    const node = cluster.nodes[0];
    const api = new LoomApi(node.api);
    try {
      const nodes = await waitFor(async () => {
        const list = await api.nodes();
        return list.length === 1 && list;
      }, { what: 'the node up', timeoutMs: 40_000 });
      if (!nodes[0].docker) process.stderr.write(node.output());
      expect(nodes[0].docker).toBe(true);
      expect(node.output()).not.toMatch(/no Docker engine answers/);
    } finally {
      api.close();
    }
  });
});
