/**
 * $LOOM_RESULT for a container: a directory of its own on the node, owned by
 * the container's user and bind-mounted at /loom-result, the variable naming
 * /loom-result/result in it. Read after the container exited with the same
 * rules as a process task's file (result-file.ts: no symlink, no FIFO, owned
 * by the container's uid), then removed. Only for an engine on this machine
 * (a unix socket): a remote engine would mount a path of its own host.
 */
import * as fs from 'fs';
import * as path from 'path';
import { readResultFile, ResultRead } from './result-file';

export const CONTAINER_RESULT_DIR = '/loom-result';

export interface ResultMount {
  dir: string;
  uid: number;
  /** For HostConfig.Binds. */
  bind: string;
  /** For Env. */
  env: string;
}

/**
 * Makes the directory for a container running as `user` ("UID[:GID]"; '' =
 * root), or says why not (a user given by name, a node that may not chown).
 */
export function prepareResultMount(dir: string, user: string): ResultMount | { skipped: string } {
  const [u, g] = (user || '0').split(':');
  const uid = Number(u);
  const gid = g === undefined ? uid : Number(g);
  if (!/^\d+$/.test(u) || (g !== undefined && !/^\d+$/.test(g))) return { skipped: `the container's user "${user}" is not numeric` };
  try {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { mode: 0o700 });
    fs.chownSync(dir, uid, gid);
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    return { skipped: `cannot prepare ${dir}: ${(err as Error).message}` };
  }
  return { dir, uid, bind: `${dir}:${CONTAINER_RESULT_DIR}`, env: `LOOM_RESULT=${CONTAINER_RESULT_DIR}/result` };
}

/** Reads what the container left, then removes the directory. */
export function collectResult(m: ResultMount): ResultRead {
  try {
    return readResultFile(path.join(m.dir, 'result'), m.uid);
  } finally {
    removeResultMount(m);
  }
}

export function removeResultMount(m: ResultMount | undefined): void {
  if (m) fs.rmSync(m.dir, { recursive: true, force: true });
}
