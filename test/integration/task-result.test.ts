/**
 * Task results: a process task leaves a value in $LOOM_RESULT, the node
 * stores it with the final record, and `loom wait --result` prints it. The
 * node reads the file as root, so a task that points it at a node secret
 * gets nothing (real node, tasks under uids of the pool).
 */
import * as fs from 'fs';
import * as path from 'path';
import { TaskState } from '../../src/gen/loom';
import { uniqueRoot } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';
import { cli } from '../support/cluster';

jest.setTimeout(60_000);

describe('task results', () => {
  let n: TestNode;
  const env = { LOOM_INSECURE: '', LOOM_TLS_CA: '', LOOM_TLS_CERT: '', LOOM_TLS_KEY: '' };
  beforeAll(async () => {
    n = await startNode(uniqueRoot(), 'results');
  });
  afterAll(async () => {
    await stopNode(n);
  });

  it('stores what the task wrote, and the CLI prints it raw with --result', async () => {
    const [id] = await n.api.submit([spec(['sh', '-c', 'printf \'{"answer": 42}\' > "$LOOM_RESULT"; echo log line'])]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.COMPLETED);
    expect(Buffer.from(t.result).toString()).toBe('{"answer": 42}');
    const printed = await cli(['-N', n.node.address, 'wait', id, '--result'], env);
    expect(printed).toMatchObject({ code: 0, stdout: '{"answer": 42}' });
    const status = await cli(['-N', n.node.address, 'status', id], env);
    expect(status.stdout).toMatch(/^result: +\{"answer": 42\}$/m);
    const json = JSON.parse((await cli(['-N', n.node.address, 'status', id, '--json'], env)).stdout);
    expect(Buffer.from(json.result, 'base64').toString()).toBe('{"answer": 42}');
  });

  it('keeps a failed task\'s result and exit status; a task that writes none has an empty result', async () => {
    const [failed, none] = await n.api.submit([spec(['sh', '-c', 'printf partial > "$LOOM_RESULT"; exit 3']), spec(['true'])]);
    const f = await n.api.wait(failed);
    expect(f).toMatchObject({ state: TaskState.FAILED, exitCode: 3 });
    expect(Buffer.from(f.result).toString()).toBe('partial');
    const printed = await cli(['-N', n.node.address, 'wait', failed, '--result'], env);
    expect(printed).toMatchObject({ code: 3, stdout: 'partial' });
    expect((await n.api.wait(none)).result).toHaveLength(0);
  });

  it('drops a result over 64 KiB and says why, the task still completing', async () => {
    const [id] = await n.api.submit([spec(['sh', '-c', 'head -c 70000 /dev/zero > "$LOOM_RESULT"'])]);
    const t = await n.api.wait(id);
    expect(t.state).toBe(TaskState.COMPLETED);
    expect(t.result).toHaveLength(0);
    expect(t.reason).toMatch(/result dropped: \$LOOM_RESULT has 70000 bytes, over the 64 KiB limit/);
  });

  it('never reads a node file the task links in', async () => {
    const secret = path.join(n.dataDir, 'secret-of-the-node');
    fs.writeFileSync(secret, 'node private key', { mode: 0o600 });
    const [sym, hard] = await n.api.submit([
      spec(['sh', '-c', `ln -s ${secret} "$LOOM_RESULT"`]),
      spec(['sh', '-c', `ln ${secret} "$LOOM_RESULT" 2>/dev/null; true`]),
    ]);
    const s = await n.api.wait(sym);
    expect(s.result).toHaveLength(0);
    expect(s.reason).toMatch(/\$LOOM_RESULT is a symbolic link/);
    // A hard link is refused by the kernel (protected_hardlinks) or, if made, by its owner.
    const h = await n.api.wait(hard);
    expect(Buffer.from(h.result).toString()).not.toContain('node private key');
  });
});
