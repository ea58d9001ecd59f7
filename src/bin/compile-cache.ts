/**
 * A code cache for the CLI's modules. A `loom` command is a short process
 * that loads ~150 files (grpc-js, yargs, the generated protobuf code) and
 * spends a fifth of its life compiling them. V8 can serialise the code it
 * compiled and skip compiling next time, but Node 20 has no switch for it
 * (module.enableCompileCache arrived in Node 22), so this does it for the
 * files under the package root: each is compiled as a vm.Script with the
 * cached data of its last run, and when any file missed (first run, a
 * rebuilt file, another Node) the whole cache is written again at exit.
 *
 * One file holds every module's data: one read at start, and writes are
 * atomic (a temp file renamed), so concurrent commands never see half a
 * cache. A file's entry is used only while its size and mtime match, and V8
 * itself rejects data from another V8 version or flags. Any failure (no
 * HOME, a read-only disk, a corrupt cache) leaves Node's own loading as it is.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as vm from 'vm';
import Module = require('module');

interface Stored {
  stamp: string;
  data: Buffer;
}

interface ModuleInternals {
  _compile(content: string, filename: string): unknown;
  require(id: string): unknown;
  exports: unknown;
  paths: string[];
}

interface ModuleStatics {
  _resolveFilename(request: string, parent: unknown, isMain: boolean, options?: unknown): string;
  _resolveLookupPaths(request: string, parent: unknown): string[] | null;
  _extensions: unknown;
  _cache: unknown;
  wrap(content: string): string;
}

const MAGIC = 'loom-compile-cache-1\n';

/** A short stable hash of a path (crypto would cost a module load for 8 characters). */
function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** Where the cache lives, or undefined when turned off (`LOOM_COMPILE_CACHE=off`) or no home is known. */
export function compileCacheFile(env: NodeJS.ProcessEnv, root: string): string | undefined {
  const setting = env.LOOM_COMPILE_CACHE;
  if (setting === 'off' || setting === '0') return undefined;
  const base = setting || (env.XDG_CACHE_HOME ? path.join(env.XDG_CACHE_HOME, 'loom') : env.HOME ? path.join(env.HOME, '.cache', 'loom') : undefined);
  if (!base) return undefined;
  // One cache per checkout and Node build: two installs never fight over one file.
  return path.join(base, `compile-${process.version}-${process.arch}-${fnv1a(root)}.bin`);
}

/** Header: MAGIC, then a JSON line of [file, stamp, length] triples, then the data blobs in that order. */
function readCache(file: string): Map<string, Stored> {
  const out = new Map<string, Stored>();
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch {
    return out;
  }
  try {
    if (buf.subarray(0, MAGIC.length).toString() !== MAGIC) return out;
    const nl = buf.indexOf(10, MAGIC.length);
    const index = JSON.parse(buf.subarray(MAGIC.length, nl).toString()) as [string, string, number][];
    let at = nl + 1;
    for (const [name, stamp, length] of index) {
      out.set(name, { stamp, data: buf.subarray(at, at + length) });
      at += length;
    }
    if (at !== buf.length) out.clear();
  } catch {
    out.clear();
  }
  return out;
}

function writeCache(file: string, entries: Map<string, Stored>): void {
  const index: [string, string, number][] = [];
  const blobs: Buffer[] = [];
  for (const [name, e] of entries) {
    index.push([name, e.stamp, e.data.length]);
    blobs.push(e.data);
  }
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    fs.writeFileSync(tmp, Buffer.concat([Buffer.from(MAGIC + JSON.stringify(index) + '\n'), ...blobs]), { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch {
    fs.rmSync(tmp, { force: true });
  }
}

function stampOf(filename: string): string | undefined {
  try {
    const st = fs.statSync(filename);
    return `${st.size}:${st.mtimeMs}`;
  } catch {
    return undefined;
  }
}

/**
 * Compiles the files under `root` through the cache in `file` from now on.
 * Returns how many modules came from the cache (for tests and curiosity).
 */
export function enableCompileCache(file: string, root: string): { hits: () => number } {
  const stored = readCache(file);
  const compiled = new Map<string, { stamp: string; script: vm.Script }>();
  let hits = 0;
  let dirty = false;
  const M = Module as unknown as ModuleStatics;
  const proto = (Module as unknown as { prototype: ModuleInternals }).prototype;
  const original = proto._compile;
  const prefix = root.endsWith(path.sep) ? root : root + path.sep;

  const compile = (mod: ModuleInternals, content: string, filename: string): unknown => {
    const stamp = filename.startsWith(prefix) ? stampOf(filename) : undefined;
    if (stamp === undefined) return original.call(mod, content, filename);
    const name = filename.slice(prefix.length);
    const had = stored.get(name);
    const source = M.wrap(content.startsWith('#!') ? '//' + content : content);
    const script = new vm.Script(source, {
      filename,
      cachedData: had?.stamp === stamp ? had.data : undefined,
      importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
    });
    if (had?.stamp === stamp && !script.cachedDataRejected) hits++;
    else dirty = true;
    compiled.set(name, { stamp, script });
    const req = ((id: string) => mod.require(id)) as NodeJS.Require;
    const resolve = ((request: string, options?: unknown) => M._resolveFilename(request, mod, false, options)) as NodeJS.RequireResolve;
    resolve.paths = (request: string) => M._resolveLookupPaths(request, mod);
    req.resolve = resolve;
    req.main = require.main;
    req.extensions = M._extensions as NodeJS.RequireExtensions;
    req.cache = M._cache as NodeJS.Dict<NodeModule>;
    const fn = script.runInThisContext({ displayErrors: true }) as (...args: unknown[]) => unknown;
    return fn.call(mod.exports, mod.exports, req, mod, filename, path.dirname(filename));
  };
  proto._compile = function (this: ModuleInternals, content: string, filename: string) {
    return compile(this, content, filename);
  };

  process.once('exit', () => {
    if (!dirty) return;
    const next = new Map<string, Stored>();
    // Keep what this run did not load (another command's modules) unless its file changed.
    for (const [name, e] of stored) if (!compiled.has(name) && stampOf(path.join(prefix, name)) === e.stamp) next.set(name, { stamp: e.stamp, data: Buffer.from(e.data) });
    for (const [name, c] of compiled) next.set(name, { stamp: c.stamp, data: c.script.createCachedData() });
    writeCache(file, next);
  });
  return { hits: () => hits };
}
