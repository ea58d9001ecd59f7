/**
 * The key schema is written down twice for people (README.md's table under
 * "Key schema", and the header of src/store/keys.ts) and built once in code
 * (Keys). They drifted once (the proto said /task/tail/<id>; the key is
 * /tail/<id>): every documented pattern must match a key Keys builds, and every
 * kind of key Keys builds must be documented in both places.
 */
import * as fs from 'fs';
import * as path from 'path';
import { TaskState } from '../../src/core/lifecycle';
import { Keys } from '../../src/store/keys';

/** The checkout's root: where README.md and package.json are, above dist/test/unit. */
function repoRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'README.md')) && fs.existsSync(path.join(dir, 'package.json'))) return dir;
  }
  throw new Error(`no README.md above ${__dirname}`);
}

const ID = '01a2421a-90a4-715f-9055-1750c28c6fa3';
const JOB = '01a2421b-0000-7000-8000-000000000001';
const JOB2 = '01a2421b-0000-7000-8000-000000000002';

/**
 * One key of every kind Keys builds (root ''). Methods that return prefixes
 * (…Of, …Prefix) and parsers are not keys. A new key method fails the
 * coverage test below until it is added here and documented.
 */
const samples: Record<string, string[]> = (() => {
  const k = new Keys('');
  return {
    task: [k.task(ID)],
    queued: [k.queued(100, ID), k.queued(999, ID), k.queued(0, ID), k.queued(100, ID, 7)],
    turn: [k.turn(100, 'alice')],
    queuedBy: [k.queuedBy('alice', ID)],
    queueCap: [k.queueCap('alice')],
    running: [k.running('n1', ID)],
    terminal: [TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELLED, TaskState.LOST].map((s) => k.terminal(s, 1733300000000, ID)),
    statusKeyFor: [k.statusKeyFor({ id: ID, state: TaskState.QUEUED, node: '', priority: 100, finishedAtMs: 0, queueRound: 3 })],
    node: [k.node('n1')],
    cancel: [k.cancel('n1', ID)],
    tail: [k.tail(ID)],
    control: [k.control('n1')],
    autoscaleLeader: [k.autoscaleLeader('workers')],
    autoscaleState: [k.autoscaleState('workers')],
    job: [k.job(JOB)],
    jobName: [k.jobName('nightly')],
    jobOpen: [k.jobOpen(JOB)],
    jobDone: [k.jobDone(JOB, 7)],
    jobWait: [k.jobWait(JOB, JOB2)],
    jobWriter: [k.jobWriter(JOB)],
    timeMarker: [k.timeMarker(ID.slice(0, 10))],
  };
})();

/** A documented pattern ("/task/status/queued/<999-priority>/<id>") as a regular expression. */
function patternToRegExp(pattern: string): RegExp {
  const parts = pattern.split(/(<[^>]+>)/).map((part) => {
    if (!part.startsWith('<')) return part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    const inner = part.slice(1, -1);
    if (inner.includes('|')) return `(?:${inner.split('|').map((a) => a.trim()).join('|')})`;
    const digits = /(\d+) digits|^ms(\d+)$|^index(\d+)$/.exec(inner);
    if (digits) return `\\d{${digits[1] ?? digits[2] ?? digits[3]}}`;
    if (/999-priority|^ppp$/.test(inner)) return '\\d{3}';
    return '[^/]+';
  });
  return new RegExp(`^${parts.join('')}$`);
}

function readmePatterns(): string[] {
  const text = fs.readFileSync(path.join(repoRoot(), 'README.md'), 'utf8');
  const start = text.indexOf('### Key schema');
  expect(start).toBeGreaterThan(-1);
  const section = text.slice(start, text.indexOf('\n#', start + 1));
  return section
    .split('\n')
    .filter((l) => l.startsWith('| `/'))
    .map((l) => /^\| `([^`]+)`/.exec(l)![1].replace(/\\\|/g, '|'));
}

function keysHeaderPatterns(): string[] {
  const text = fs.readFileSync(path.join(repoRoot(), 'src/store/keys.ts'), 'utf8');
  const header = text.slice(0, text.indexOf('*/'));
  return header
    .split('\n')
    // Table rows only: three spaces after the star, two or more after the pattern.
    .map((l) => /^ \* {3}(\/\S+) {2,}/.exec(l)?.[1])
    .filter((p): p is string => p !== undefined)
    // The header writes the terminal states as one placeholder, <terminal>, glossed after it.
    .map((p) => p.replace('<terminal>', '<completed|failed|cancelled|lost>'));
}

const allSamples = Object.values(samples).flat();

/** Methods that give a band's prefix or key range, not a key. */
const RANGES = new Set(['band', 'bandRounds']);

describe.each([
  ['README.md', readmePatterns],
  ['the header of src/store/keys.ts', keysHeaderPatterns],
])('key patterns of %s', (_where, read) => {
  const patterns = read();

  it('are found', () => {
    expect(patterns.length).toBeGreaterThanOrEqual(10);
  });

  it('each match a key Keys builds', () => {
    for (const p of patterns) {
      const re = patternToRegExp(p);
      expect({ pattern: p, matches: allSamples.filter((k) => re.test(k)) }).toEqual({ pattern: p, matches: expect.arrayContaining([expect.any(String)]) });
    }
  });

  it('cover every key Keys builds', () => {
    const regexps = patterns.map(patternToRegExp);
    for (const key of allSamples) {
      expect({ key, documented: regexps.some((re) => re.test(key)) }).toEqual({ key, documented: true });
    }
  });
});

test('the samples cover every key-building method of Keys', () => {
  const methods = Object.getOwnPropertyNames(Keys.prototype).filter((name) => {
    const d = Object.getOwnPropertyDescriptor(Keys.prototype, name)!;
    return typeof d.value === 'function' && name !== 'constructor' && !name.startsWith('parse') && !name.endsWith('Of') && !name.endsWith('Prefix') && !RANGES.has(name);
  });
  expect(methods.sort()).toEqual(Object.keys(samples).sort());
});

test('no proto comment names a key Keys does not build', () => {
  const proto = fs.readFileSync(path.join(repoRoot(), 'proto/loom.proto'), 'utf8');
  const stored = [...proto.matchAll(/Stored at (\/\S+?)[.:,]?(?:\s|$)/g)].map((m) => m[1]);
  expect(stored.length).toBeGreaterThanOrEqual(4);
  for (const p of stored) {
    const re = patternToRegExp(p);
    expect({ pattern: p, builds: allSamples.some((k) => re.test(k)) }).toEqual({ pattern: p, builds: true });
  }
});
