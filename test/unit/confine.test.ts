/**
 * Task identities (runner/confine.ts): the uid pool shared by a machine's
 * nodes through lock files, owner accounts from passwd text, the wrapper's
 * argv, and the scratch directory each task gets.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn } from 'child_process';
import { commandExists, Confinement, findAccount, UidPool } from '../../src/runner/confine';
import { closedAncestor, resolveRunAs } from '../../src/node/task-confinement';
import { waitFor } from '../support/etcd';

describe('UidPool', () => {
  let dir: string;
  beforeEach(() => {
    dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'loom-uids-')), 'locks');
  });
  afterEach(() => fs.rmSync(path.dirname(dir), { recursive: true, force: true }));

  test('hands out each uid of the range once until released, across pools of different processes', () => {
    const a = new UidPool({ first: 100, last: 102 }, dir, process.pid);
    const other = new UidPool({ first: 100, last: 102 }, dir, process.ppid); // a live process: its locks hold
    expect([a.acquire(), other.acquire(), a.acquire()].sort()).toEqual([100, 101, 102]);
    expect(a.acquire()).toBeUndefined();
    expect(other.acquire()).toBeUndefined();
    a.release(100);
    a.release(101); // not its own lock (unless it holds 101): never removes another's
    const got = other.acquire();
    expect(got).toBe(100);
  });

  test("takes over the locks of a process that died without releasing them", async () => {
    const child = spawn('true');
    const deadPid = child.pid!;
    await new Promise((r) => child.once('exit', r));
    const dead = new UidPool({ first: 200, last: 200 }, dir, deadPid);
    expect(dead.acquire()).toBe(200);
    const live = new UidPool({ first: 200, last: 200 }, dir, process.pid);
    expect(live.acquire()).toBe(200);
    expect(fs.readFileSync(path.join(dir, '200'), 'utf8')).toBe(String(process.pid));
  });

  test('refuses a lock directory others may write', () => {
    fs.mkdirSync(dir, { recursive: true });
    fs.chmodSync(dir, 0o777);
    expect(() => new UidPool({ first: 1, last: 2 }, dir)).toThrow(/writable by it alone/);
  });
});

test('findAccount reads passwd text', () => {
  const passwd = 'root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1002::/home/alice:/bin/sh\n#bad\n';
  expect(findAccount(passwd, 'alice')).toEqual({ uid: 1001, gid: 1002 });
  expect(findAccount(passwd, 'bob')).toBeUndefined();
});

test('resolveRunAs: auto is pool for root and node otherwise; pool and owner need root', () => {
  expect(resolveRunAs('auto', 0)).toBe('pool');
  expect(resolveRunAs('auto', 1000)).toBe('node');
  expect(resolveRunAs('node', 1000)).toBe('node');
  expect(() => resolveRunAs('pool', 1000)).toThrow(/needs a node running as root/);
  expect(() => resolveRunAs('owner', 1000)).toThrow(/needs a node running as root/);
});

test('commandExists looks on the given PATH, and takes a path as given', () => {
  expect(commandExists('sh', '/nonexistent:/bin:/usr/bin')).toBe(true);
  expect(commandExists('sh', '/nonexistent')).toBe(false);
  expect(commandExists('/bin/sh', '')).toBe(true);
  expect(commandExists('loom-no-such-command', process.env.PATH)).toBe(false);
});

describe('Confinement', () => {
  let root: string;
  beforeEach(() => (root = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-confinement-'))));
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  test('owner: the account named like the owner; no account, or root, is refused', async () => {
    const c = new Confinement({
      helper: '/x/loom-confine', runAs: 'owner', scratchRoot: path.join(root, 'scratch'), pidsMax: 64,
      passwd: () => 'root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n',
    });
    expect(c.begin('t.1', 'bob')).toMatch(/no local account for owner "bob"/);
    expect(c.begin('t.1', 'root')).toMatch(/never run as root/);
    if (process.getuid?.() !== 0) return; // chown of the scratch dir needs root
    const who = c.begin('t.1', 'alice');
    if (typeof who === 'string') throw new Error(who);
    expect([who.uid, who.gid]).toEqual([1001, 1001]);
    expect(fs.statSync(who.scratch).uid).toBe(1001);
    expect(c.wrap(['ls', '-l'], who, ['/cg/a/cgroup.procs', '/cg/b/cgroup.procs'])).toEqual(
      ['/x/loom-confine', '1001', '1001', '64', '/cg/a/cgroup.procs,/cg/b/cgroup.procs', '--', 'ls', '-l'],
    );
    who.release();
    await waitFor(() => !fs.existsSync(who.scratch), { what: 'the scratch dir removed' });
  });

  test('node: keeps the identity (no uid, no process limit), still a scratch dir and cgroups', async () => {
    const c = new Confinement({ helper: '/x/loom-confine', runAs: 'node', scratchRoot: path.join(root, 'scratch'), pidsMax: 64 });
    const who = c.begin('t.2', '');
    if (typeof who === 'string') throw new Error(who);
    expect(who.uid).toBeUndefined();
    expect(fs.statSync(who.scratch).isDirectory()).toBe(true);
    expect(c.wrap(['true'], who, [])).toEqual(['/x/loom-confine', '-', '-', '-', '-', '--', 'true']);
    expect(c.describe()).toMatch(/^WARNING: tasks run as this node's own user/);
    who.release();
    await waitFor(() => !fs.existsSync(who.scratch), { what: 'the scratch dir removed' });
  });

  test('pool: the uid goes back to the pool only once the scratch dir is gone', async () => {
    if (process.getuid?.() !== 0) return; // chown needs root
    const pool = new UidPool({ first: 61000, last: 61000 }, path.join(root, 'locks'));
    const c = new Confinement({ helper: '/x/loom-confine', runAs: 'pool', pool, scratchRoot: path.join(root, 'scratch'), pidsMax: 64 });
    const who = c.begin('t.3', '');
    if (typeof who === 'string') throw new Error(who);
    expect(who.uid).toBe(61000);
    expect(c.begin('t.4', '')).toMatch(/no free task uid \(all 1 of --task-uids are in use\)/);
    for (let i = 0; i < 200; i++) fs.writeFileSync(path.join(who.scratch, `f${i}`), '');
    who.release();
    await waitFor(() => pool.acquire() === 61000, { what: 'the uid free again' });
    expect(fs.existsSync(who.scratch)).toBe(false);
  });
});

describe('the data dir\'s ancestors', () => {
  it('names the first directory above it that others may not traverse', () => {
    const top = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-closed-'));
    try {
      const dataDir = path.join(top, 'a', 'data');
      fs.mkdirSync(dataDir, { recursive: true, mode: 0o755 });
      fs.chmodSync(top, 0o700);
      expect(closedAncestor(dataDir)).toEqual({ dir: top, mode: 0o700 });
      fs.chmodSync(top, 0o711);
      expect(closedAncestor(dataDir)).toBeUndefined();
    } finally {
      fs.rmSync(top, { recursive: true, force: true });
    }
  });
});
