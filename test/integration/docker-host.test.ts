/**
 * A real `loom node` process finds its Docker engine through DOCKER_HOST, as
 * the docker CLI does, when neither --docker-socket nor LOOM_DOCKER_SOCK is
 * set. Needs the private engine of scripts/docker-up.sh (the container tests
 * start it; this file only asks whether it answers, and fails if not).
 */
import * as http from 'http';
import { LoomApi } from '../../src/client/client';
import { waitFor } from '../support/etcd';
import { ProcCluster, startCluster } from '../support/cluster';

jest.setTimeout(60_000);

const SOCK = process.env.LOOM_DOCKER_SOCK || '/tmp/loom-docker/docker.sock';

function engineAnswers(): Promise<boolean> {
  return new Promise((resolve) => {
    const r = http.get({ socketPath: SOCK, path: '/_ping', timeout: 3000 }, (m) => {
      m.resume();
      resolve(m.statusCode === 200);
    });
    r.on('error', () => resolve(false));
    r.on('timeout', () => r.destroy());
  });
}

let cluster: ProcCluster | undefined;

afterAll(async () => {
  await cluster?.stopAll();
});

test('DOCKER_HOST=unix:///path: the node uses that engine', async () => {
  expect(await engineAnswers()).toBe(true);
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
