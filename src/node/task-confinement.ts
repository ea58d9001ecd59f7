/**
 * How this node confines its process tasks (runner/confine.ts), from its
 * config and the user it runs as; and the data dir made private to the node,
 * since tasks run under other uids and must reach nothing of it but their
 * own scratch directory.
 */
import * as fs from 'fs';
import * as path from 'path';
import { NodeConfig } from '../core/config';
import { LoomError } from '../core/errors';
import { Confinement, RunAs, UidPool } from '../runner/confine';

/** Root-only directory of the uid locks, shared by every node of the machine. */
export const UID_LOCK_DIR = '/run/loom/task-uids';

export function confineBinary(): string {
  return path.join(__dirname, '..', 'runner', 'loom-confine');
}

export function resolveRunAs(choice: NodeConfig['runAs'], uid: number): RunAs {
  if (choice === 'auto') return uid === 0 ? 'pool' : 'node';
  if (choice !== 'node' && uid !== 0) {
    throw new LoomError('INVALID_ARGUMENT', `--run-as ${choice} needs a node running as root (it switches each task to another uid); this one runs as uid ${uid}`);
  }
  return choice;
}

/**
 * Makes the data dir private (0711: tasks may pass through to their scratch
 * directory, never list or read the rest; what the node writes there later
 * is created 0600/0700) and returns the confinement every process task runs
 * under.
 */
export function taskConfinement(config: NodeConfig, log: (m: string) => void, opts: { lockDir?: string } = {}): Confinement {
  const uid = process.getuid?.() ?? 0;
  const runAs = resolveRunAs(config.runAs, uid);
  privatise(config.dataDir);
  const helper = confineBinary();
  if (!fs.existsSync(helper)) {
    throw new LoomError('UNAVAILABLE', `${helper} is missing: build it with \`npm run build\` (needs a C compiler); process tasks cannot be confined without it`);
  }
  const confinement = new Confinement({
    helper,
    runAs,
    pool: runAs === 'pool' ? new UidPool(config.taskUids, opts.lockDir ?? UID_LOCK_DIR) : undefined,
    scratchRoot: path.join(config.dataDir, 'scratch'),
    pidsMax: config.taskPids,
  });
  log(confinement.describe());
  const closed = runAs === 'node' ? undefined : closedAncestor(config.dataDir);
  if (closed) {
    log(`${closed.dir} is mode ${closed.mode.toString(8).padStart(4, '0')}: tasks under their own uids cannot pass through it to their scratch directories in ${path.resolve(config.dataDir)}, so writing $LOOM_RESULT (or any absolute path there) fails with "Permission denied"; allow others to traverse it (chmod o+x ${closed.dir}) or choose a --data-dir under a directory they can traverse`);
  }
  if (runAs === 'node' && config.runAs === 'auto') {
    log(`this node is not root (uid ${uid}), so it cannot give tasks another identity: pass --run-as node to say that is intended, or run it as root`);
  }
  return confinement;
}

/**
 * The first directory above the data dir that other users may not traverse
 * (no x bit for others), or undefined: a task of another uid reaches its
 * scratch directory by path only through directories it may search.
 */
export function closedAncestor(dataDir: string): { dir: string; mode: number } | undefined {
  const parts: string[] = [];
  for (let dir = path.dirname(path.resolve(dataDir)); ; dir = path.dirname(dir)) {
    parts.unshift(dir);
    if (dir === path.dirname(dir)) break;
  }
  for (const dir of parts) {
    try {
      const mode = fs.statSync(dir).mode & 0o7777;
      if ((mode & 0o001) === 0) return { dir, mode };
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** The data dir 0711 and every entry in it (but scratch) closed to others. */
function privatise(dataDir: string): void {
  fs.chmodSync(dataDir, 0o711);
  for (const name of fs.readdirSync(dataDir)) {
    if (name === 'scratch') continue;
    const file = path.join(dataDir, name);
    try {
      const st = fs.lstatSync(file);
      if (!st.isSymbolicLink() && (st.mode & 0o077) !== 0) fs.chmodSync(file, st.mode & 0o700);
    } catch {
      // removed meanwhile
    }
  }
}
