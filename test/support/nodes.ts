/** In-process loom nodes against the shared test etcd, each under its own key root. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { defaultNodeConfig, NodeConfig } from '../../src/core/config';
import { LoomNode, NodeOptions } from '../../src/node/node';
import { LoomApi } from '../../src/client/client';
import { TaskSpec } from '../../src/gen/loom';
import { validateSpec } from '../../src/core/spec';
import { testEtcdEndpoint } from './etcd';

export interface TestNode {
  node: LoomNode;
  api: LoomApi;
  dataDir: string;
  logs: string[];
}

export async function startNode(
  root: string, name: string, overrides: Partial<NodeConfig> = {}, options: Partial<NodeOptions> = {},
): Promise<TestNode> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `loom-${name}-`));
  const logs: string[] = [];
  const config: NodeConfig = {
    ...defaultNodeConfig(2),
    name,
    listen: '127.0.0.1:0',
    dataDir,
    etcdEndpoints: [testEtcdEndpoint()],
    killGraceMs: 500,
    ...overrides,
  };
  const node = await LoomNode.start(config, {
    ...options,
    keysRoot: root,
    log: (m) => {
      logs.push(m);
      if (process.env.LOOM_TEST_VERBOSE) process.stderr.write(`${name}: ${m}\n`);
    },
  });
  return { node, api: new LoomApi(node.address), dataDir, logs };
}

export async function stopNode(t: TestNode): Promise<void> {
  t.api.close();
  await t.node.stop({ graceMs: 0 });
  fs.rmSync(t.dataDir, { recursive: true, force: true });
}

export function spec(command: string[], extra: Partial<TaskSpec> = {}): TaskSpec {
  return validateSpec({ name: '', command, env: {}, cwd: '', timeoutMs: 0, retries: 0, ...extra });
}

export async function collectLogs(api: LoomApi, id: string, follow = true): Promise<{ stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  for await (const c of api.logs(id, follow)) {
    if (c.stream === 2) stderr += Buffer.from(c.data).toString();
    else stdout += Buffer.from(c.data).toString();
  }
  return { stdout, stderr };
}

/**
 * A fresh temporary directory every task may write, as /tmp (sticky, 1777):
 * as root, nodes run each task under a uid of its own (--run-as pool), so a
 * directory of the test's (0700 root) is closed to them.
 */
export function sharedTmpDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(dir, 0o1777);
  return dir;
}

/** An empty file in `dir` that tasks of any uid may append to (a file a task makes is its uid's alone). */
export function sharedFile(dir: string, name: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, '');
  fs.chmodSync(file, 0o666);
  return file;
}
