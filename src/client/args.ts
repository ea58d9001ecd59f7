/**
 * The CLI grammar: `loom [-N host:port] [--json] <command> ...`, parsed with
 * yargs into a typed Command. Pure apart from loading yargs.
 *
 * `run` is special: loom's options come before the task's command and
 * everything from the command on belongs to the task verbatim. It is parsed
 * by its own yargs instance with 'halt-at-non-option'; a `--` directly after
 * the command is dropped (so `loom run ls -- -l` runs `ls -l`, and
 * `loom run echo -- --` runs `echo --`).
 */
import yargs from 'yargs';
import * as fs from 'fs';
import * as path from 'path';
import type { Argv } from 'yargs';
import { invalid, LoomError } from '../core/errors';
import { parseDurationMs } from '../core/duration';
import { parseDecimal } from '../core/numbers';
import { parseHostPort } from '../core/config';
import { parseStateName, TaskState } from '../core/lifecycle';
import { LIMITS, PRIORITY_MAX, PRIORITY_MIN, validateSpec } from '../core/spec';
import type { TaskSpec } from '../gen/loom';
import type { JobCommand } from './job-cli';
import { bytesArg, last, list, numberArg, parseBackoff, parseConstraint, parseMount, str } from './spec-flags';
import { httpSpecOf, httpOptions } from './http-args';

export const DEFAULT_NODE = '127.0.0.1:8080';

const INSECURE_HELP = 'send requests in plaintext to a non-loopback node (without LOOM_TLS_*); env LOOM_INSECURE=1';

export interface GlobalArgs {
  /** host:port of the node to talk to. */
  node: string;
  json: boolean;
  /** --insecure or LOOM_INSECURE=1: plaintext to a non-loopback node is accepted. */
  insecure: boolean;
}

export interface RunArgs extends GlobalArgs {
  /** Validated and normalised (validateSpec). */
  spec: TaskSpec;
  detach: boolean;
  /** --array N: run N copies as a job (0 = a single task). */
  array: number;
}

export interface ListArgs extends GlobalArgs {
  state: TaskState;
  nodeFilter: string;
  /** --job (id or name), --owner: only that job's, that owner's tasks. */
  job: string;
  owner: string;
  limit: number;
  pageToken: string;
  all: boolean;
}

export type Command =
  | { kind: 'output'; text: string }
  | ({ kind: 'run' } & RunArgs)
  | ({ kind: 'status'; id: string } & GlobalArgs)
  | ({ kind: 'cancel'; id: string } & GlobalArgs)
  | ({ kind: 'cancelQueued' } & GlobalArgs)
  | ({ kind: 'wait'; id: string; result: boolean } & GlobalArgs)
  | ({ kind: 'logs'; id: string; follow: boolean } & GlobalArgs)
  | ({ kind: 'list' } & ListArgs)
  | ({ kind: 'nodes' } & GlobalArgs)
  | ({ kind: 'members' } & GlobalArgs)
  | ({ kind: 'removeMember'; member: string } & GlobalArgs)
  | ({ kind: 'drain'; name: string; drain: boolean; deadlineMs: number } & GlobalArgs)
  | ({ kind: 'job'; job: JobCommand } & GlobalArgs)
  | { kind: 'node' };

type Env = Record<string, string | undefined>;
type Parsed = Record<string, unknown> & { _: (string | number)[] };
type YargsFactory = (args?: readonly string[]) => Argv;

function loadYargs(): YargsFactory {
  return yargs as unknown as YargsFactory;
}

function loomVersion(): string | false {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, rel), 'utf8'));
      if (pkg.name === 'loom' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // try the next location
    }
  }
  return false;
}

interface ParseResult {
  argv: Parsed;
  /** Help or version text yargs produced instead of running a command. */
  output?: string;
}

/** Runs a yargs parse synchronously, capturing help text and errors. */
function parseWith(y: Argv, args: string[], helpFor: string): ParseResult {
  let result: ParseResult | undefined;
  let failure: Error | undefined;
  y.parse(args, {}, (err: Error | undefined, argv: unknown, output: string) => {
    if (err) failure = err;
    else result = { argv: argv as Parsed, output: output || undefined };
  });
  if (failure) {
    throw new LoomError('INVALID_ARGUMENT', `${failure.message} (see \`${helpFor} --help\`)`);
  }
  if (!result) throw new LoomError('INTERNAL', 'argument parsing did not finish');
  return result;
}

function base(args?: readonly string[]): Argv {
  return loadYargs()(args)
    .scriptName('loom')
    .locale('en')
    .exitProcess(false)
    .wrap(Math.min(100, process.stdout?.columns || 80));
}

// ---- option helpers -------------------------------------------------------

function intArg(text: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = parseDecimal(text);
  if (n === undefined || !Number.isSafeInteger(n) || n < min || n > max) {
    throw invalid(`invalid ${flag} "${text}": expected an integer from ${min} to ${max}`);
  }
  return n;
}

/** One host:port, or several comma-separated (tried in order when a node cannot be reached). */
function nodeAddress(value: string): string {
  const list = value.split(',').map((a) => a.trim());
  if (list.some((a) => a === '')) throw invalid(`invalid --node "${value}": expected host:port, or several separated by commas`);
  for (const a of list) parseHostPort(a, '--node');
  return list.join(',');
}

function globals(argv: Parsed, env: Env): GlobalArgs {
  const node = str(argv.node) ?? env.LOOM_NODE ?? DEFAULT_NODE;
  const insecure = Boolean(last(argv.insecure)) || env.LOOM_INSECURE === '1' || env.LOOM_INSECURE === 'true';
  return { node: nodeAddress(node), json: Boolean(last(argv.json)), insecure };
}

// ---- run ------------------------------------------------------------------

function runOptions(y: Argv): Argv {
  return httpOptions(y)
    .option('timeout', { type: 'string', requiresArg: true, describe: 'kill the task after this long (30s, 5m, 1h30m)' })
    .option('retries', { type: 'string', requiresArg: true, describe: 'extra attempts after a failure [0..100]' })
    .option('backoff', { type: 'string', requiresArg: true, describe: 'wait before each retry, e.g. 5s; prefix exp: to double it per failure (exp:1s)' })
    .option('priority', { type: 'string', requiresArg: true, describe: 'higher runs first [0..999, default 100]' })
    .option('env', { type: 'string', describe: 'set an environment variable (repeatable)', requiresArg: true })
    .option('cwd', { type: 'string', requiresArg: true, describe: 'working directory on the node' })
    .option('name', { type: 'string', requiresArg: true, describe: 'a name to show in listings' })
    .option('restart', {
      type: 'boolean',
      nargs: 0, // never eat a following "true"/"false": `loom run -d true`
      describe: 'requeue if its node dies (default yes; for --http only with an idempotent method; --no-restart: mark it lost)',
    })
    .option('detach', { alias: 'd', type: 'boolean', nargs: 0, default: false, describe: 'print the task id and exit' })
    .option('cpu', { type: 'string', requiresArg: true, describe: 'CPU cores the task needs free (fractional)' })
    .option('memory', { type: 'string', requiresArg: true, describe: 'memory the task needs, e.g. 256M (also its limit)' })
    .option('disk', { type: 'string', requiresArg: true, describe: 'disk the task needs, e.g. 1G' })
    .option('constraint', { type: 'string', requiresArg: true, describe: 'node label k=v or k!=v (repeatable)' })
    .option('on', { type: 'string', requiresArg: true, describe: 'run only on this node' })
    .option('image', { type: 'string', requiresArg: true, describe: 'run in a Docker container of this image' })
    .option('pull', { type: 'string', requiresArg: true, describe: 'image pull policy: never|missing|always (default missing)' })
    .option('mount', { type: 'string', requiresArg: true, describe: 'host:container[:ro] bind mount (repeatable; --image only)' })
    .option('network', { type: 'string', requiresArg: true, describe: 'container network (default none; host and container:NAME need an admin or a node with --allow-host-network)' })
    .option('user', { type: 'string', requiresArg: true, describe: 'UID[:GID] the container runs as (default: the image\'s numeric non-root user, else 65534)' })
    .option('array', { type: 'string', requiresArg: true, describe: 'run N copies as an array job (LOOM_TASK_INDEX=0..N-1, {{index}} in args)' });
}

const RUN_USAGE =
  '$0 run [options] <command> [args..]\n$0 run [options] --http URL\n\n' +
  'Run a command (or make an HTTP request) on the cluster, stream its output, and exit with its status.\n' +
  "loom's options go before the command; everything after it is passed verbatim\n" +
  '(a `--` right after the command is dropped): loom run --timeout 5s ls -- -l';

function runParser(): Argv {
  return runOptions(base())
    .usage(RUN_USAGE)
    .option('node', { alias: 'N', type: 'string', requiresArg: true, describe: `loom node to talk to, host:port; several comma-separated: the next is used when one cannot be reached (default: $LOOM_NODE or ${DEFAULT_NODE})` })
    .option('json', { type: 'boolean', nargs: 0, describe: 'print the final task as JSON instead of its output' })
    .option('insecure', { type: 'boolean', nargs: 0, describe: INSECURE_HELP })
    .parserConfiguration({ 'halt-at-non-option': true, 'parse-positional-numbers': false })
    .strictOptions()
    .help()
    .alias('h', 'help')
    .version(false);
}

function buildRun(opts: Parsed, outer: Parsed, env: Env): RunArgs {
  const rest = opts._.map(String);
  const [program, ...args] = rest;
  const http = httpSpecOf(opts);
  if (http && program !== undefined) throw invalid(`an HTTP task (--http) runs no command: drop "${program.slice(0, 40)}" or --http`);
  if (!http && (program === undefined || program === '')) {
    throw invalid('command is empty: give a program to run, e.g. `loom run ls -- -l`');
  }
  const env_: Record<string, string> = {};
  for (const kv of list(opts.env)) {
    const at = kv.indexOf('=');
    if (at <= 0) throw invalid(`invalid --env "${kv}": expected KEY=VALUE`);
    env_[kv.slice(0, at)] = kv.slice(at + 1);
  }
  const timeout = str(opts.timeout);
  const spec = validateSpec({
    name: str(opts.name) ?? '',
    command: http ? [] : [program, ...(args[0] === '--' ? args.slice(1) : args)],
    env: env_,
    cwd: str(opts.cwd) ?? '',
    timeoutMs: timeout === undefined ? 0 : parseDurationMs(timeout),
    retries: intArg(str(opts.retries), '--retries', 0, LIMITS.maxRetries) ?? 0,
    priority: intArg(str(opts.priority), '--priority', PRIORITY_MIN, PRIORITY_MAX),
    restartOnNodeFailure: opts.restart === undefined ? undefined : Boolean(last(opts.restart)),
    ...parseBackoff(str(opts.backoff)),
    resources: {
      cpu: numberArg(str(opts.cpu), '--cpu'),
      memoryBytes: bytesArg(str(opts.memory), '--memory'),
      diskBytes: bytesArg(str(opts.disk), '--disk'),
    },
    constraints: list(opts.constraint).map(parseConstraint),
    pinNode: str(opts.on) ?? '',
    container: str(opts.image) !== undefined || opts.mount !== undefined || opts.network !== undefined || opts.pull !== undefined || opts.user !== undefined
      ? { image: str(opts.image) ?? '', pull: str(opts.pull) ?? '', mounts: list(opts.mount).map(parseMount), network: str(opts.network) ?? '', user: str(opts.user) ?? '' }
      : undefined,
    http,
  });
  const g = globals({ ...outer, ...definedOnly(opts, ['node', 'json', 'insecure']) } as Parsed, env);
  return { ...g, spec, detach: Boolean(last(opts.detach)), array: intArg(str(opts.array), '--array', 1, 100_000) ?? 0 };
}

function definedOnly(obj: Parsed, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

// ---- everything else ------------------------------------------------------

function mainParser(env: Env): Argv {
  const version = loomVersion();
  const y = base()
    .usage('$0 [-N host:port] [--json] <command>')
    .option('node', {
      alias: 'N',
      type: 'string',
      global: true,
      requiresArg: true,
      default: env.LOOM_NODE || DEFAULT_NODE,
      describe: 'loom node to talk to (host:port; env LOOM_NODE)',
    })
    .option('json', { type: 'boolean', global: true, default: false, describe: 'machine-readable output' })
    .option('insecure', { type: 'boolean', global: true, default: false, describe: INSECURE_HELP })
    .command('run [options] <command> [args..]', 'run a command on the cluster and wait for it', runOptions)
    .command('status <id>', 'show a task')
    .command('list', 'list tasks', (y) =>
      y
        .usage('$0 list [--state S] [--node NAME] [--job JOB] [--owner WHO] [--limit N] [--page-token T] [--all]')
        .option('state', { type: 'string', describe: 'queued|running|completed|failed|cancelled|lost' })
        .option('job', { type: 'string', describe: 'only the tasks of this job (id or name)' }).option('owner', { type: 'string', describe: 'only the tasks of this owner' })
        .option('node-filter', { type: 'string', hidden: true })
        .option('limit', { type: 'string', describe: 'tasks per page' })
        .option('page-token', { type: 'string', describe: 'continue a previous listing' })
        .option('all', { type: 'boolean', default: false, describe: 'follow all pages' })
        .epilog('--node NAME after `list` keeps only tasks of node NAME (use -N for the node to talk to).'),
    )
    .command('logs <id>', "print a task's output", (y) =>
      y.option('follow', { alias: 'f', type: 'boolean', default: false, describe: 'keep streaming until the task ends' }),
    )
    .command('cancel [id]', 'cancel a task (or, with --all-queued, every queued task of yours)', (y) =>
      y.option('all-queued', {
        type: 'boolean',
        default: false,
        describe: 'cancel every task of yours that is queued (an admin: every queued task); running tasks are left alone',
      }),
    )
    .command('wait <id>', 'wait for a task to end; exit with its status', (y) =>
      y.option('result', { type: 'boolean', default: false, describe: 'print the result the task left in $LOOM_RESULT (raw bytes) instead of its state' }),
    )
    .command('nodes', "list the cluster's nodes")
    .command('members [verb] [member]', "list the etcd cluster's members; `loom members remove NAME|ID` removes the member of a node gone for good (admin)")
    .command('job', 'job files, arrays and dependencies (see `loom job --help`)')
    .command('certs', 'make a cluster CA and node/client certificates (see `loom certs --help`)')
    .command('node', 'run a loom node (see `loom node --help`); `loom node drain|resume NAME`')
    .demandCommand(1, 'no command given')
    .recommendCommands()
    .strict()
    .parserConfiguration({ 'parse-positional-numbers': false })
    .help()
    .alias('h', 'help')
    .epilog(
      "Exit status: the task's own for run/wait (128+N if killed by signal N, 124 on timeout, " +
        '130 cancelled); loom errors: 2 usage, 3 not found, 4 invalid state, 5 unreachable.',
    );
  return version ? y.version(version) : y.version(false);
}

const COMMANDS = new Set(['run', 'status', 'list', 'logs', 'cancel', 'wait', 'nodes', 'members', 'node', 'job']);

/** `list --node NAME` filters by node; -N (and --node before `list`) is the address. */
function rewriteListArgs(rest: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--') return out.concat(rest.slice(i));
    if (a === '--node') out.push('--node-filter');
    else if (a.startsWith('--node=')) out.push('--node-filter=' + a.slice('--node='.length));
    else out.push(a);
  }
  return out;
}

function requireId(argv: Parsed): string {
  const id = str(argv.id) ?? '';
  if (!id.trim()) throw invalid('task id is empty');
  return id;
}

function parseList(argv: Parsed, env: Env): ListArgs {
  const stateText = str(argv.state);
  let state = TaskState.TASK_STATE_UNSPECIFIED;
  if (stateText !== undefined && stateText !== '' && stateText !== 'all') {
    const parsed = parseStateName(stateText);
    if (parsed === undefined) {
      throw invalid(`invalid --state "${stateText}": expected queued, running, completed, failed, cancelled or lost`);
    }
    state = parsed;
  }
  return {
    ...globals(argv, env),
    state,
    nodeFilter: str(argv['node-filter']) ?? '',
    job: str(argv.job) ?? '', owner: str(argv.owner) ?? '',
    limit: intArg(str(argv.limit), '--limit', 1, 100_000) ?? 0,
    pageToken: str(argv['page-token']) ?? '',
    all: Boolean(last(argv.all)),
  };
}

/** Parses a whole `loom ...` command line (without the program name). */
export function parseCommandLine(argv: string[], env: Env = {}): Command {
  // Find the command word, skipping the global options before it.
  const { argv: pre } = parseWith(
    base()
      .option('node', { alias: 'N', type: 'string' })
      .option('json', { type: 'boolean' })
      .option('help', { alias: 'h', type: 'boolean' })
      .parserConfiguration({ 'halt-at-non-option': true, 'parse-positional-numbers': false })
      .help(false)
      .version(false),
    argv,
    'loom',
  );
  const words = pre._.map(String);
  const command = words[0];
  if (command === 'run') {
    const runArgs = pre.help ? ['--help'] : words.slice(1);
    const run = parseWith(runParser(), runArgs, 'loom run');
    if (run.output !== undefined) return { kind: 'output', text: run.output };
    return { kind: 'run', ...buildRun(run.argv, pre, env) };
  }
  if (command === 'job') return parseJobCommand(argv, env);
  if (command === 'node' && (words[1] === 'drain' || words[1] === 'resume')) {
    return parseDrain(argv, env);
  }
  if (command !== undefined && !COMMANDS.has(command)) {
    throw invalid(`unknown command "${command}" (see \`loom --help\`)`);
  }
  let args = argv;
  if (command === 'list') {
    const prefix = argv.slice(0, argv.length - words.length);
    args = [...prefix, 'list', ...rewriteListArgs(words.slice(1))];
  }
  const parsed = parseWith(mainParser(env), args, command ? `loom ${command}` : 'loom');
  if (parsed.output !== undefined) return { kind: 'output', text: parsed.output };
  const p = parsed.argv;
  switch (String(p._[0])) {
    case 'status':
      return { kind: 'status', id: requireId(p), ...globals(p, env) };
    case 'cancel': {
      const id = str(p.id);
      if (last(p['all-queued'])) {
        if (id !== undefined) throw invalid('give a task id or --all-queued, not both');
        return { kind: 'cancelQueued', ...globals(p, env) };
      }
      if (id === undefined) throw invalid('cancel needs a task id (or --all-queued)');
      return { kind: 'cancel', id: requireId(p), ...globals(p, env) };
    }
    case 'wait':
      return { kind: 'wait', id: requireId(p), result: Boolean(last(p.result)), ...globals(p, env) };
    case 'logs':
      return { kind: 'logs', id: requireId(p), follow: Boolean(last(p.follow)), ...globals(p, env) };
    case 'list':
      return { kind: 'list', ...parseList(p, env) };
    case 'nodes':
      return { kind: 'nodes', ...globals(p, env) };
    case 'members': {
      const verb = str(p.verb);
      const member = str(p.member);
      if (verb === undefined) return { kind: 'members', ...globals(p, env) };
      if (verb !== 'remove') throw invalid(`unknown members command "${verb}" (\`loom members\` lists, \`loom members remove NAME|ID\` removes)`);
      if (member === undefined || !member.trim()) throw invalid('`loom members remove` needs the member\'s name or hex id');
      return { kind: 'removeMember', member: member.trim(), ...globals(p, env) };
    }
    case 'node':
      return { kind: 'node' };
    default:
      throw invalid(`unknown command "${String(p._[0])}" (see \`loom --help\`)`);
  }
}

/** The word after `job`, skipping options (and -N/--node's value). */
function jobVerb(argv: string[]): string | undefined {
  let i = argv.indexOf('job') + 1;
  while (i > 0 && i < argv.length) {
    const a = argv[i];
    if (a === '-N' || a === '--node') i += 2;
    else if (a.startsWith('-')) i += 1;
    else return a;
  }
  return undefined;
}

const JOB_USAGE = `$0 job <verb> ...

  loom job submit FILE [--wait]      submit a job file (YAML or JSON)
  loom job status JOB [--watch]      a job's state and task counts
  loom job list [--limit N]          list jobs
  loom job cancel JOB                cancel every task of a job
  loom job logs JOB --index N [-f]   one task's output
  loom job result JOB --index N      one task's result, once it ended`;

/**
 * `loom job submit FILE | status JOB | list | cancel JOB | logs JOB --index N`.
 * One parser per verb: yargs takes only the first word of a command string
 * as the command, so five `job <verb>` commands on one parser would all be
 * "job" and the last would swallow every verb.
 */
function parseJobCommand(argv: string[], env: Env): Command {
  const verbArg = jobVerb(argv);
  let y = base()
    .usage(JOB_USAGE)
    .option('node', { alias: 'N', type: 'string', requiresArg: true })
    .option('json', { type: 'boolean' })
    .strict()
    .help()
    .version(false);
  switch (verbArg) {
    case 'submit':
      y = y.command('job submit <file>', 'submit a job file (YAML or JSON)', (c) => c.option('wait', { type: 'boolean', default: false, describe: 'wait for the job(s) to end' }));
      break;
    case 'status':
      y = y.command('job status <job>', "show a job's state and task counts", (c) => c.option('watch', { alias: 'w', type: 'boolean', default: false, describe: 'follow until it ends' }));
      break;
    case 'list':
      y = y.command('job list', 'list jobs', (c) => c.option('limit', { type: 'string' }).option('page-token', { type: 'string' }));
      break;
    case 'cancel':
      y = y.command('job cancel <job>', 'cancel every task of a job');
      break;
    case 'logs':
    case 'result':
      y = y.command(`job ${verbArg} <job>`, verbArg === 'logs' ? "print one task's output" : "print one task's result ($LOOM_RESULT, an HTTP body) once it ended; exits with its code", (c) =>
        verbArg === 'logs' ? c.option('index', { type: 'string', demandOption: true }).option('follow', { alias: 'f', type: 'boolean', default: false }) : c.option('index', { type: 'string', demandOption: true }));
      break;
    default:
      if (verbArg === undefined && (argv.includes('--help') || argv.includes('-h'))) break;
      if (verbArg === undefined) throw invalid('missing job command: submit, status, list, cancel, logs or result (see `loom job --help`)');
      throw invalid(`unknown job command "${verbArg}" (submit, status, list, cancel, logs, result; see \`loom job --help\`)`);
  }
  const parsed = parseWith(y, argv, verbArg ? `loom job ${verbArg}` : 'loom job');
  if (parsed.output !== undefined) return { kind: 'output', text: parsed.output };
  const p = parsed.argv;
  const verb = verbArg;
  let job: JobCommand;
  switch (verb) {
    case 'submit':
      job = { verb, file: str(p.file) ?? '', wait: Boolean(last(p.wait)) };
      break;
    case 'status':
      job = { verb, job: str(p.job) ?? '', watch: Boolean(last(p.watch)) };
      break;
    case 'list':
      job = { verb, limit: intArg(str(p.limit), '--limit', 1, 1000) ?? 100, pageToken: str(p['page-token']) ?? '' };
      break;
    case 'cancel':
      job = { verb, job: str(p.job) ?? '' };
      break;
    case 'logs':
    case 'result':
      job = { verb, job: str(p.job) ?? '', index: intArg(str(p.index), '--index', 0, 100_000) ?? 0, follow: Boolean(last(p.follow)) };
      break;
    default:
      throw invalid(`unknown job command "${verb}" (submit, status, list, cancel, logs, result)`);
  }
  return { kind: 'job', job, ...globals(p, env) };
}

/** `loom node drain NAME [--deadline 5m]` and `loom node resume NAME`. */
function parseDrain(argv: string[], env: Env): Command {
  const parsed = parseWith(
    base()
      .usage('$0 node drain <name> [--deadline 5m]\n$0 node resume <name>\n\nStop a node taking new work (running tasks finish, or are requeued at the deadline), or let it take work again.')
      .option('node', { alias: 'N', type: 'string', requiresArg: true })
      .option('json', { type: 'boolean' })
      .option('deadline', { type: 'string', requiresArg: true, describe: 'requeue tasks still running after this long' })
      .command('node <verb> <name>', false)
      .strict()
      .help()
      .version(false),
    argv,
    'loom node drain',
  );
  if (parsed.output !== undefined) return { kind: 'output', text: parsed.output };
  const p = parsed.argv;
  const name = str(p.name) ?? '';
  if (!name.trim()) throw invalid('node name is empty');
  const drain = String(p.verb) === 'drain';
  const deadline = str(p.deadline);
  if (!drain && deadline !== undefined) throw invalid('--deadline goes with `loom node drain`');
  return { kind: 'drain', name, drain, deadlineMs: deadline === undefined ? 0 : parseDurationMs(deadline), ...globals(p, env) };
}

/**
 * Parses the argv of a `loom run` (e.g. ["run", "--timeout", "5s", "ls",
 * "--", "-l"], global options allowed before "run") into a validated spec.
 * Throws INVALID_ARGUMENT (exit 2) on a usage error.
 */
export function parseRunArgs(argv: string[], env: Env = {}): RunArgs {
  const cmd = parseCommandLine(argv, env);
  if (cmd.kind !== 'run') throw invalid('not a `loom run` command line');
  const { kind: _kind, ...run } = cmd;
  return run;
}
