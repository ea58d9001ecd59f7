/** Real `loom node` processes (each embedding an etcd member) for end-to-end tests. */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

export const LOOM_BIN = path.resolve(__dirname, '../../src/bin/loom.js');

import { freePort } from './ports';

export { freePort };

export interface ProcNode {
  name: string;
  api: string;
  dataDir: string;
  args: string[];
  proc: ChildProcess;
  output: () => string;
}

export interface ProcCluster {
  nodes: ProcNode[];
  dir: string;
  start(i: number): void;
  stopAll(): Promise<void>;
}

function launch(n: Omit<ProcNode, 'proc' | 'output'>, env?: NodeJS.ProcessEnv, cpus?: string): ProcNode {
  const logFile = path.join(n.dataDir, 'node.log');
  fs.mkdirSync(n.dataDir, { recursive: true });
  const fd = fs.openSync(logFile, 'a');
  // Jest gives each test file its own copy of process.env, which a child does not inherit: pass it.
  const argv = [LOOM_BIN, 'node', ...n.args];
  // Pinned (taskset execs the node, same pid): its embedded etcd and its tasks inherit the CPUs.
  const proc = cpus !== undefined
    ? spawn('taskset', ['-c', cpus, process.execPath, ...argv], { stdio: ['ignore', fd, fd], env: env ?? process.env })
    : spawn(process.execPath, argv, { stdio: ['ignore', fd, fd], env: env ?? process.env });
  fs.closeSync(fd);
  return { ...n, proc, output: () => fs.readFileSync(logFile, 'utf8') };
}

/** `cpus[i]`: a CPU list (taskset -c) node i is pinned to. */
export async function startCluster(count: number, extraArgs: string[] = [], env?: NodeJS.ProcessEnv, cpus: (string | undefined)[] = []): Promise<ProcCluster> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-e2e-'));
  const specs: { name: string; api: string; peer: number; client: number }[] = [];
  for (let i = 1; i <= count; i++) {
    specs.push({ name: `e${i}`, api: `127.0.0.1:${await freePort()}`, peer: await freePort(), client: await freePort() });
  }
  const nodes = specs.map((s) => {
    const args = [
      '--name', s.name, '--listen', s.api, '--data-dir', path.join(dir, s.name),
      '--peer-listen', `http://127.0.0.1:${s.peer}`, '--client-listen', `http://127.0.0.1:${s.client}`,
      ...specs.filter((o) => o !== s).flatMap((o) => ['--peer', `${o.name}=http://127.0.0.1:${o.peer}`]),
      ...extraArgs,
    ];
    return launch({ name: s.name, api: s.api, dataDir: path.join(dir, s.name), args }, env, cpus[specs.indexOf(s)]);
  });
  const cluster: ProcCluster = {
    nodes,
    dir,
    start(i: number) {
      const n = cluster.nodes[i];
      cluster.nodes[i] = launch({ name: n.name, api: n.api, dataDir: n.dataDir, args: n.args }, env, cpus[i]);
    },
    async stopAll() {
      await Promise.all(
        cluster.nodes.map(
          (n) =>
            new Promise<void>((resolve) => {
              if (n.proc.exitCode !== null || n.proc.signalCode !== null) return resolve();
              const t = setTimeout(() => n.proc.kill('SIGKILL'), 30_000);
              n.proc.once('exit', () => {
                clearTimeout(t);
                resolve();
              });
              n.proc.kill('SIGTERM');
            }),
        ),
      );
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}

/** Runs the loom CLI as a process; resolves with its exit status and output. */
export function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [LOOM_BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
