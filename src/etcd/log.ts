/**
 * Reading an embedded etcd member's log (<dataDir>/etcd.log, zap JSON lines)
 * to say in one line why it did not start: a port in use, a data dir of
 * another cluster, a member removed from its cluster...
 */
import * as fs from 'node:fs';

/** How much of the log's end is read to find the reason. */
const LOG_TAIL_BYTES = 256 * 1024;

/** The messages of etcd's log past offset (zap JSON lines decoded to "msg: error"). */
export function readLogLines(logPath: string, offset: number): string[] {
  let text: string;
  try {
    const fd = fs.openSync(logPath, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const from = Math.max(offset, size - LOG_TAIL_BYTES);
      const buf = Buffer.alloc(Math.max(0, size - from));
      fs.readSync(fd, buf, 0, buf.length, from);
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .map(decodeLogLine);
}

function decodeLogLine(line: string): string {
  if (!line.startsWith('{')) return line;
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    const level = typeof o.level === 'string' ? o.level : '';
    const msg = typeof o.msg === 'string' ? o.msg : '';
    const error = typeof o.error === 'string' ? o.error : '';
    return `${level ? `[${level}] ` : ''}${msg}${error ? `: ${error}` : ''}`;
  } catch {
    return line;
  }
}

export interface DiagnoseContext {
  name: string;
  etcdDir: string;
  peerListen: string;
  clientListen: string;
}

/** Which of our URLs etcd meant by "host:port" in a listen error. */
function urlForAddress(addr: string, ctx: DiagnoseContext): string {
  const urls = [ctx.clientListen, ctx.peerListen];
  const exact = urls.find((u) => u === `http://${addr}`);
  if (exact) return exact;
  const port = addr.slice(addr.lastIndexOf(':') + 1);
  const samePort = urls.filter((u) => u.endsWith(`:${port}`));
  return samePort.length === 1 ? samePort[0] : `http://${addr}`;
}

const RULES: { re: RegExp; say: (m: RegExpExecArray, ctx: DiagnoseContext) => string }[] = [
  {
    re: /listen tcp (\S+): bind: address already in use/,
    say: (m, c) =>
      `etcd could not listen on ${urlForAddress(m[1], c)}: address already in use ` +
      `(is another etcd or loom node running?)`,
  },
  {
    re: /listen tcp (\S+): bind: cannot assign requested address/,
    say: (m, c) =>
      `etcd could not listen on ${urlForAddress(m[1], c)}: cannot assign requested address ` +
      `(not an address of this machine)`,
  },
  {
    re: /listen tcp (\S+): bind: permission denied/,
    say: (m, c) => `etcd could not listen on ${urlForAddress(m[1], c)}: permission denied`,
  },
  {
    re: /member ([0-9a-f]+) has already been bootstrapped/,
    say: (m, c) =>
      `etcd member "${c.name}" (id ${m[1]}) has already been bootstrapped: the other members know it, ` +
      `but its data dir ${c.etcdDir} is new (was it deleted, or is --data-dir wrong?); ` +
      `restore its data dir, or start this node again with --join to replace the member (its data comes back from the others)`,
  },
  {
    re: /the member has been permanently removed from the cluster/,
    say: (_m, c) =>
      `etcd member "${c.name}" was removed from the cluster (loom members remove, or etcdctl member remove), ` +
      `and etcd will not start a removed member from its data dir ${c.etcdDir}; ` +
      `delete that directory and start this node again with --join to add it back as a new member`,
  },
  {
    re: /cluster ID mismatch/,
    say: (_m, c) =>
      `etcd data dir ${c.etcdDir} belongs to a different cluster than its peers (cluster ID mismatch); ` +
      `use the data dir this member was created with, or remove it to bootstrap afresh`,
  },
  {
    re: /couldn't find local name "([^"]*)" in the initial cluster configuration/,
    say: (m) => `etcd member name "${m[1]}" is not in the initial cluster configuration`,
  },
  {
    re: /unsupported (?:platform|architecture)[^:]*/,
    say: (m) => `etcd refuses this architecture (${m[0]})`,
  },
  {
    re: /(?:cannot access|create) data directory[^:]*: (.*permission denied.*)/,
    say: (m, c) => `etcd cannot use its data dir ${c.etcdDir}: ${m[1]}`,
  },
];

/**
 * A one-line explanation for a recognised etcd failure in these log lines
 * (decoded messages, oldest first), or undefined.
 */
export function diagnoseEtcdLog(lines: string[], ctx: DiagnoseContext): string | undefined {
  for (const rule of RULES) {
    for (let i = lines.length - 1; i >= 0; i--) {
      const m = rule.re.exec(lines[i]);
      if (m) return rule.say(m, ctx);
    }
  }
  return undefined;
}

export function lastErrorLine(lines: string[]): string | undefined {
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^\[(?:fatal|panic|error|dpanic)\] (.*)$/.exec(lines[i]);
    if (m) return `etcd: ${oneLine(m[1], 300)}`;
  }
  const last = lines[lines.length - 1];
  return last ? `etcd: ${oneLine(last, 300)}` : undefined;
}

/** `text` on one line, at most `max` characters. */
export function oneLine(text: string, max: number): string {
  const s = text.replace(/\s+/g, ' ').trim();
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
