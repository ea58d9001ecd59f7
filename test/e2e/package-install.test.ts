/**
 * loom as a package: `npm pack` of the built checkout, installed with
 * `npm install -g --prefix <tmp> --omit=dev` (what a user does), gives a
 * `loom` that prints its version and runs a task on a one-node cluster it
 * starts itself. Run-time dependencies must not hide among the dev ones (the
 * generated code needs @bufbuild/protobuf), and the package must carry the
 * compiled code and loom-spawner (dist/ is not in git).
 *
 * Uses the npm registry (or npm's cache: --prefer-offline) for the
 * dependencies; the package itself is packed from this checkout's dist/.
 */
import { ChildProcess, spawn, spawnSync, SpawnSyncReturns } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { waitFor } from '../support/etcd';
import { freePort } from '../support/ports';

jest.setTimeout(120_000);

function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg) && JSON.parse(fs.readFileSync(pkg, 'utf8')).name === 'loom') return dir;
  }
  throw new Error(`no loom package.json above ${__dirname}`);
}

const root = repoRoot();
const version = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version as string;
let tmp: string;
let node: ChildProcess | undefined;
// Jest gives the test its own process.env; children get it explicitly, with this node on PATH (the bin's shebang finds node there).
const env = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` };

function run(cmd: string, args: string[], cwd = tmp): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 90_000 });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status ?? r.signal}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-pkg-'));
});

afterAll(async () => {
  if (node && node.exitCode === null && node.signalCode === null) {
    const gone = new Promise((resolve) => node!.once('exit', resolve));
    node.kill('SIGTERM');
    const force = setTimeout(() => node?.kill('SIGKILL'), 15_000);
    await gone;
    clearTimeout(force);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

test('npm pack, npm install -g --omit=dev: loom --version and a one-node loom run', async () => {
  // --ignore-scripts: the test runs from the build already made (prepack would build again).
  ok(run('npm', ['pack', '--ignore-scripts', '--pack-destination', tmp], root), 'npm pack');
  const tarball = path.join(tmp, `loom-${version}.tgz`);
  expect(fs.existsSync(tarball)).toBe(true);

  const prefix = path.join(tmp, 'prefix');
  ok(run('npm', ['install', '-g', '--prefix', prefix, tarball, '--omit=dev', '--prefer-offline', '--no-audit', '--no-fund']), 'npm install');
  const installed = path.join(prefix, 'lib', 'node_modules', 'loom');
  // Run-time dependencies only, and the helper a node starts tasks with.
  expect(fs.existsSync(path.join(installed, 'node_modules', '@bufbuild', 'protobuf'))).toBe(true);
  expect(fs.existsSync(path.join(installed, 'node_modules', 'typescript'))).toBe(false);
  expect(fs.statSync(path.join(installed, 'dist', 'src', 'runner', 'loom-spawner')).mode & 0o111).not.toBe(0);
  expect(fs.existsSync(path.join(installed, 'dist', 'test'))).toBe(false);

  const loom = path.join(prefix, 'bin', 'loom');
  expect(ok(run(loom, ['--version']), 'loom --version').trim()).toBe(version);

  const [api, peer, client, web] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const dataDir = path.join(tmp, 'data');
  fs.mkdirSync(dataDir);
  const logFd = fs.openSync(path.join(tmp, 'node.log'), 'a');
  node = spawn(loom, ['node', '--name', 'pkg', '--listen', `127.0.0.1:${api}`, '--data-dir', dataDir,
    '--peer-listen', `http://127.0.0.1:${peer}`, '--client-listen', `http://127.0.0.1:${client}`, '--http-listen', `127.0.0.1:${web}`], { env, stdio: ['ignore', logFd, logFd] });
  fs.closeSync(logFd);
  const address = `127.0.0.1:${api}`;
  await waitFor(() => run(loom, ['-N', address, 'nodes']).status === 0, { what: 'the installed node up', timeoutMs: 40_000, intervalMs: 200 })
    .catch((err) => {
      throw new Error(`${(err as Error).message}\n--- node log\n${fs.readFileSync(path.join(tmp, 'node.log'), 'utf8')}`);
    });
  const r = run(loom, ['-N', address, 'run', 'true']);
  expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: '' });
  const echo = run(loom, ['-N', address, 'run', 'echo', 'from the package']);
  expect(echo.stdout).toBe('from the package\n');
  // The dashboard ships in the package, with the libraries it imports (run-time dependencies).
  for (const url of ['/', '/ui/app.js', '/ui/vendor/preact.mjs', '/ui/vendor/hooks.mjs', '/ui/vendor/htm.mjs']) {
    expect({ url, status: (await fetch(`http://127.0.0.1:${web}${url}`)).status }).toEqual({ url, status: 200 });
  }
  // loom-spawner of the package started it (the node logs why if it could not).
  expect(fs.readFileSync(path.join(tmp, 'node.log'), 'utf8')).not.toMatch(/spawner: /);
});
