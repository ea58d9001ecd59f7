/**
 * Job files: schema (zod), parsing (YAML or JSON), template expansion and
 * dependency checks. Pure. An invalid file is rejected whole, with the field
 * path and a plain reason, before anything is submitted.
 */
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { JobSpec, TaskSpec } from '../gen/loom';
import { invalid } from './errors';
import { parseDurationMs } from './duration';
import { parseBytes } from './fit';
import { LIMITS, PRIORITY_MAX, PRIORITY_MIN, validateSpec } from './spec';

export const MAX_JOB_TASKS = 100_000;
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

const duration = z.union([z.number().nonnegative(), z.string()]).transform((v, ctx) => {
  try {
    return typeof v === 'number' ? Math.round(v * 1000) : parseDurationMs(v);
  } catch (e) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
    return z.NEVER;
  }
});
const bytes = z.union([z.number().int().nonnegative(), z.string()]).transform((v, ctx) => {
  const n = typeof v === 'number' ? v : parseBytes(v);
  if (n === undefined) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: `invalid size "${v}" (examples: 256M, 1G)` });
    return z.NEVER;
  }
  return n;
});
const command = z.union([z.string().min(1), z.array(z.string()).min(1)], {
  // YAML reads bare true, no, 1 or 1.5 as booleans and numbers: say so rather than zod's "Invalid input".
  errorMap: () => ({ message: 'expected a command: a string (run under sh -c) or a list of strings; quote YAML words that are not text, such as true, no or 5 ("true")' }),
});
const constraint = z.string().regex(/^[^=!]+(!=|=).*$/, 'expected k=v or k!=v');

const taskFields = {
  command: command.optional(),
  env: z.record(z.string()).optional(),
  cwd: z.string().optional(),
  timeout: duration.optional(),
  retries: z.number().int().min(0).max(LIMITS.maxRetries).optional(),
  backoff: z.object({ delay: duration, kind: z.enum(['fixed', 'exponential']).default('fixed') }).strict().optional(),
  priority: z.number().int().min(PRIORITY_MIN).max(PRIORITY_MAX).optional(),
  restartOnNodeFailure: z.boolean().optional(),
  cpu: z.number().nonnegative().optional(),
  memory: bytes.optional(),
  disk: bytes.optional(),
  constraints: z.array(constraint).optional(),
  on: z.string().optional(),
  image: z.string().optional(),
  inputDir: z.string().optional(),
  outputDir: z.string().optional(),
};

const jobSchema = z
  .object({
    name: z.string().regex(NAME, 'letters, digits, "_", "." or "-", up to 128'),
    owner: z.string().max(200).optional(),
    count: z.number().int().min(1).max(MAX_JOB_TASKS).default(1),
    task: z.object(taskFields).strict().extend({ command }),
    overrides: z.record(z.string().regex(/^\d+$/, 'override keys are task indexes'), z.object(taskFields).strict()).optional(),
    after: z.array(z.string()).optional(),
    afterAny: z.array(z.string()).optional(),
    labels: z.record(z.string()).optional(),
  })
  .strict();

const jobsSchema = z.object({ jobs: z.array(jobSchema).min(1).max(100) }).strict();

type TaskFields = z.infer<z.ZodObject<typeof taskFields>>;
export type JobInput = z.infer<typeof jobSchema>;

function formatIssue(issue: z.ZodIssue): string {
  const path = issue.path.length ? issue.path.join('.') : '(file)';
  return `${path}: ${issue.message}`;
}

/** Parses a YAML or JSON job file into validated job specs (in file order). */
export function parseJobFile(text: string, owner: string): JobSpec[] {
  let raw: unknown;
  try {
    raw = parseYaml(text); // YAML is a superset of JSON
  } catch (e) {
    throw invalid(`job file is not valid YAML or JSON: ${(e as Error).message.split('\n')[0]}`);
  }
  // A file of several jobs has `jobs`; any other file is one job (each checked alone, so errors name their field).
  const several = !!raw && typeof raw === 'object' && 'jobs' in raw;
  const res = several ? jobsSchema.safeParse(raw) : jobSchema.safeParse(raw);
  if (!res.success) {
    const issues = res.error.issues.slice(0, 5).map(formatIssue).join('; ');
    throw invalid(`invalid job file: ${issues}`);
  }
  const jobs = 'jobs' in res.data ? (res.data.jobs as JobInput[]) : [res.data as JobInput];
  const specs = jobs.map((j) => toJobSpec(j, owner));
  checkGraph(specs); // names outside the file are checked by the cluster at submit
  return specs;
}

function toTaskSpec(f: TaskFields, base?: TaskSpec): TaskSpec {
  const cmd = f.command === undefined ? base?.command : typeof f.command === 'string' ? ['sh', '-c', f.command] : f.command;
  const env = { ...(base?.env ?? {}), ...(f.env ?? {}) };
  if (f.inputDir) env.LOOM_INPUT_DIR = f.inputDir;
  if (f.outputDir) env.LOOM_OUTPUT_DIR = f.outputDir;
  return validateSpec({
    ...base,
    command: cmd,
    env,
    cwd: f.cwd ?? base?.cwd,
    timeoutMs: f.timeout ?? base?.timeoutMs,
    retries: f.retries ?? base?.retries,
    backoffMs: f.backoff ? f.backoff.delay : base?.backoffMs,
    backoffExponential: f.backoff ? f.backoff.kind === 'exponential' : base?.backoffExponential,
    priority: f.priority ?? base?.priority,
    restartOnNodeFailure: f.restartOnNodeFailure ?? base?.restartOnNodeFailure,
    resources: {
      cpu: f.cpu ?? base?.resources?.cpu ?? 0,
      memoryBytes: f.memory ?? base?.resources?.memoryBytes ?? 0,
      diskBytes: f.disk ?? base?.resources?.diskBytes ?? 0,
    },
    constraints: f.constraints
      ? f.constraints.map((c) => {
          const m = /^([^=!]+)(!=|=)(.*)$/.exec(c)!;
          return { key: m[1], op: m[2], value: m[3] };
        })
      : base?.constraints,
    pinNode: f.on ?? base?.pinNode,
    container: f.image ? { image: f.image, pull: '', mounts: [], network: '', user: '' } : base?.container,
  });
}

function toJobSpec(j: JobInput, owner: string): JobSpec {
  const template = toTaskSpec(j.task);
  const overrides: Record<number, TaskSpec> = {};
  for (const [k, o] of Object.entries(j.overrides ?? {})) {
    const index = Number(k);
    if (index >= j.count) throw invalid(`invalid job file: overrides.${k}: index out of range (count is ${j.count})`);
    try {
      overrides[index] = toTaskSpec(o, template);
    } catch (e) {
      throw invalid(`invalid job file: overrides.${k}: ${(e as Error).message}`);
    }
  }
  return {
    name: j.name,
    owner: j.owner ?? owner,
    template,
    count: j.count,
    overrides,
    after: j.after ?? [],
    afterAny: j.afterAny ?? [],
    labels: j.labels ?? {},
  };
}

/** The spec of task `index`: the template with {{index}} substituted, or its override. */
export function expandTask(job: JobSpec, index: number): TaskSpec {
  const base = job.overrides[index] ?? job.template!;
  const sub = (s: string) => s.replace(/\{\{\s*index\s*\}\}/g, String(index));
  return {
    ...base,
    name: base.name || `${job.name}[${index}]`,
    command: base.command.map(sub),
    env: Object.fromEntries(Object.entries(base.env).map(([k, v]) => [k, sub(v)])),
    cwd: sub(base.cwd),
  };
}

/**
 * Dependencies must name jobs of the same file or `known` ones (when
 * `known` is given); a job may not depend on itself; cycles are rejected.
 */
export function checkGraph(specs: JobSpec[], known?: Set<string>): void {
  const names = new Set<string>();
  for (const s of specs) {
    if (names.has(s.name)) throw invalid(`job "${s.name}" appears twice in the file`);
    names.add(s.name);
  }
  const edges = new Map(specs.map((s) => [s.name, [...s.after, ...s.afterAny]]));
  for (const s of specs) {
    for (const dep of edges.get(s.name)!) {
      if (dep === s.name) throw invalid(`job "${s.name}" depends on itself`);
      if (known && !names.has(dep) && !known.has(dep)) throw invalid(`job "${s.name}" depends on unknown job "${dep}"`);
    }
  }
  // Cycle check among the file's jobs (depth-first, three colours).
  const colour = new Map<string, number>();
  const visit = (n: string, path: string[]): void => {
    if (colour.get(n) === 2 || !edges.has(n)) return;
    if (colour.get(n) === 1) throw invalid(`dependency cycle: ${[...path, n].join(' -> ')}`);
    colour.set(n, 1);
    for (const d of edges.get(n)!) visit(d, [...path, n]);
    colour.set(n, 2);
  };
  for (const s of specs) visit(s.name, []);
}

/** Jobs ordered so each comes after the jobs of the file it depends on. */
export function submitOrder(specs: JobSpec[]): JobSpec[] {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const out: JobSpec[] = [];
  const seen = new Set<string>();
  const add = (s: JobSpec) => {
    if (seen.has(s.name)) return;
    seen.add(s.name);
    for (const d of [...s.after, ...s.afterAny]) {
      const dep = byName.get(d);
      if (dep) add(dep);
    }
    out.push(s);
  };
  specs.forEach(add);
  return out;
}
