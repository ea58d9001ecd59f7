/**
 * Validation and normalisation of what users submit. Every limit is named
 * here, documented in the README, and reported with its value.
 */
import { ContainerSpec, Resources, TaskSpec, Constraint } from '../gen/loom';
import { invalid, LoomError } from './errors';
import { alwaysRefusedMount, parseUser } from './container-policy';
import { restartDefault, validateHttp } from './task-kind';

export const LIMITS = {
  argvCount: 4096,
  argvBytes: 128 * 1024,
  envCount: 512,
  envBytes: 128 * 1024,
  nameChars: 200,
  cwdBytes: 4096,
  maxRetries: 100,
  maxTimeoutMs: 30 * 86_400_000,
  tasksPerSubmit: 10_000,
  /** gRPC message size accepted by a node. */
  requestBytes: 16 * 1024 * 1024,
  /** Retained log tail per stream, kept with the task after it finishes. */
  tailBytes: 64 * 1024,
} as const;

export const PRIORITY_MIN = 0;
export const PRIORITY_MAX = 999;
export const PRIORITY_DEFAULT = 100;

/** A spec's priority: PRIORITY_DEFAULT when it names none (records written before the field, specs not validated yet). */
export function priorityOf(spec: Partial<Pick<TaskSpec, 'priority'>> | undefined): number {
  return spec?.priority ?? PRIORITY_DEFAULT;
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** What a caller may give: any subset of a TaskSpec. */
export type SpecInput = Partial<TaskSpec>;

const LABEL_KEY = /^[A-Za-z0-9_./-]{1,63}$/;
const PULL = new Set(['never', 'missing', 'always']);

function validateResources(r: Resources | undefined): Resources {
  const cpu = Number(r?.cpu ?? 0);
  const memoryBytes = Number(r?.memoryBytes ?? 0);
  const diskBytes = Number(r?.diskBytes ?? 0);
  if (!Number.isFinite(cpu) || cpu < 0 || cpu > 4096) throw invalid(`cpu must be from 0 to 4096 cores (got ${r?.cpu})`);
  for (const [name, v] of [['memory', memoryBytes], ['disk', diskBytes]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw invalid(`${name} must be a non-negative number of bytes`);
  }
  return { cpu, memoryBytes, diskBytes };
}

function validateConstraints(list: Constraint[] | undefined): Constraint[] {
  const out = (list ?? []).map((c) => {
    if (!LABEL_KEY.test(c.key ?? '')) throw invalid(`invalid constraint key "${String(c.key).slice(0, 64)}"`);
    if (c.op !== '=' && c.op !== '!=') throw invalid(`invalid constraint operator "${c.op}" (use = or !=)`);
    if (typeof c.value !== 'string' || c.value.length > 256) throw invalid(`invalid constraint value for ${c.key}`);
    return { key: c.key, op: c.op, value: c.value };
  });
  if (out.length > 64) throw invalid(`too many constraints: ${out.length} > limit 64`);
  return out;
}

function validateContainer(c: ContainerSpec | undefined): ContainerSpec | undefined {
  if (!c || !c.image) {
    if (c && (c.mounts?.length || c.network || c.pull || c.user)) throw invalid('container options need --image');
    return undefined;
  }
  if (c.image.length > 512 || /\s/.test(c.image)) throw invalid(`invalid image "${c.image.slice(0, 80)}"`);
  const pull = c.pull || 'missing';
  if (!PULL.has(pull)) throw invalid(`invalid pull policy "${pull}" (never, missing or always)`);
  const mounts = (c.mounts ?? []).map((m) => {
    if (!m.host?.startsWith('/') || !m.container?.startsWith('/')) {
      throw invalid(`invalid mount "${m.host}:${m.container}": both paths must be absolute`);
    }
    // Refused on every node whatever it allows: no node's --allow-mount can change that.
    const refused = alwaysRefusedMount(m.host);
    if (refused) throw invalid(`invalid mount "${m.host}:${m.container}": ${refused}`);
    if (/[:,\u0000-\u001f\u007f]/.test(m.container)) throw invalid(`invalid mount "${m.host}:${m.container}": the container path contains ':', ',' or a control character`);
    return { host: m.host, container: m.container, readOnly: Boolean(m.readOnly) };
  });
  if (mounts.length > 64) throw invalid('too many mounts (limit 64)');
  const network = c.network ?? '';
  if (network.length > 128 || /\s/.test(network)) throw invalid(`invalid network "${network.slice(0, 80)}"`);
  const user = c.user ?? '';
  if (user !== '' && !parseUser(user)) throw invalid(`invalid user "${user.slice(0, 80)}": expected a numeric UID or UID:GID (names mean what the image says they mean)`);
  return { image: c.image, pull, mounts, network, user };
}

/** Returns a normalised copy of `spec` or throws INVALID_ARGUMENT. */
export function validateSpec(spec: SpecInput | undefined): TaskSpec {
  if (!spec) throw invalid('task spec is missing');
  const command = spec.command ?? [];
  const http = spec.http?.url || spec.http?.method ? validateHttp(spec.http) : undefined;
  if (http && (command.length > 0 || spec.container?.image)) {
    throw invalid('an HTTP task (--http) runs no command and no container: give one of them');
  }
  if (!http && (command.length === 0 || command[0] === '')) {
    throw invalid('command is empty: give a program to run, e.g. `loom run ls -- -l`');
  }
  if (command.length > LIMITS.argvCount) {
    throw invalid(`too many arguments: ${command.length} > limit ${LIMITS.argvCount}`);
  }
  let argvBytes = 0;
  for (const arg of command) {
    if (typeof arg !== 'string') throw invalid('argument is not a string');
    if (arg.includes('\0')) throw invalid('argument contains a NUL byte');
    argvBytes += bytes(arg);
  }
  if (argvBytes > LIMITS.argvBytes) {
    throw invalid(`argv is ${argvBytes} bytes > limit ${LIMITS.argvBytes}`);
  }
  const env = spec.env ?? {};
  const envKeys = Object.keys(env);
  if (envKeys.length > LIMITS.envCount) {
    throw invalid(`too many env variables: ${envKeys.length} > limit ${LIMITS.envCount}`);
  }
  let envBytes = 0;
  for (const key of envKeys) {
    if (!ENV_NAME.test(key)) throw invalid(`invalid env name "${key.slice(0, 64)}"`);
    const value = env[key];
    if (typeof value !== 'string' || value.includes('\0')) {
      throw invalid(`env ${key} has an invalid value`);
    }
    envBytes += bytes(key) + bytes(value) + 2;
  }
  if (envBytes > LIMITS.envBytes) {
    throw invalid(`env is ${envBytes} bytes > limit ${LIMITS.envBytes}`);
  }
  const name = spec.name ?? '';
  if (name.length > LIMITS.nameChars) {
    throw invalid(`name is ${name.length} characters > limit ${LIMITS.nameChars}`);
  }
  const cwd = spec.cwd ?? '';
  if (bytes(cwd) > LIMITS.cwdBytes || cwd.includes('\0')) {
    throw invalid(`cwd is invalid or longer than ${LIMITS.cwdBytes} bytes`);
  }
  const timeoutMs = Number(spec.timeoutMs ?? 0);
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > LIMITS.maxTimeoutMs) {
    throw invalid(`timeout must be between 0 and ${LIMITS.maxTimeoutMs} ms`);
  }
  const retries = spec.retries ?? 0;
  if (!Number.isInteger(retries) || retries < 0 || retries > LIMITS.maxRetries) {
    throw invalid(`retries must be an integer from 0 to ${LIMITS.maxRetries}`);
  }
  const priority = priorityOf(spec);
  if (!Number.isInteger(priority) || priority < PRIORITY_MIN || priority > PRIORITY_MAX) {
    throw invalid(`priority must be an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX}`);
  }
  return {
    name,
    command: [...command],
    env: { ...env },
    cwd,
    timeoutMs,
    retries,
    priority,
    restartOnNodeFailure: spec.restartOnNodeFailure ?? restartDefault({ http }),
    resources: validateResources(spec.resources),
    constraints: validateConstraints(spec.constraints),
    pinNode: validatePin(spec.pinNode ?? ''),
    container: validateContainer(spec.container),
    backoffMs: validateBackoff(spec.backoffMs),
    backoffExponential: Boolean(spec.backoffExponential),
    http,
  };
}

function validateBackoff(ms: number | undefined): number {
  const v = Number(ms ?? 0);
  if (!Number.isFinite(v) || v < 0 || v > 3_600_000) throw invalid('backoff must be from 0 to 1h');
  return Math.round(v);
}

function validatePin(node: string): string {
  if (node !== '' && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(node)) throw invalid(`invalid node name "${node.slice(0, 64)}" for --on`);
  return node;
}

export function validateBatch(specs: SpecInput[] | undefined): TaskSpec[] {
  if (!specs || specs.length === 0) throw invalid('no tasks given');
  if (specs.length > LIMITS.tasksPerSubmit) {
    throw new LoomError(
      'INVALID_ARGUMENT',
      `${specs.length} tasks in one submit > limit ${LIMITS.tasksPerSubmit}`,
    );
  }
  return specs.map((s, i) => {
    try {
      return validateSpec(s);
    } catch (err) {
      if (err instanceof LoomError && specs.length > 1) {
        throw invalid(`task ${i}: ${err.message}`);
      }
      throw err;
    }
  });
}
