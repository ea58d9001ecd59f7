/**
 * The CLI's code cache (src/bin/compile-cache.ts), in real Node processes: a
 * second run takes its modules from the cache and they behave as Node's own
 * loading would (exports, require.resolve, __dirname, errors with the file's
 * name); a file rewritten to the same length (which V8's own check cannot
 * tell apart) runs its new code; a corrupt cache is ignored.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { compileCacheFile } from '../../src/bin/compile-cache';

const MODULE = path.resolve(__dirname, '../../src/bin/compile-cache.js');

let root: string;
let cache: string;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-cc-'));
  cache = path.join(root, 'cache', 'c.bin');
  fs.mkdirSync(path.join(root, 'lib'));
  fs.writeFileSync(path.join(root, 'lib', 'b.js'), 'exports.value = () => "one";\n');
  fs.writeFileSync(
    path.join(root, 'lib', 'a.js'),
    '#!/usr/bin/env node\nconst b = require("./b");\nmodule.exports = { v: b.value(), dir: __dirname, resolved: require.resolve("./b"), self: this === module.exports };\n',
  );
});

afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

/** One process: enable the cache, load lib/a.js, print what it exported and how many modules came from the cache. */
function run(): { v: string; dir: string; resolved: string; self: boolean; hits: number } {
  const script = `
    const c = require(${JSON.stringify(MODULE)}).enableCompileCache(${JSON.stringify(cache)}, ${JSON.stringify(root)});
    const a = require(${JSON.stringify(path.join(root, 'lib', 'a.js'))});
    console.log(JSON.stringify({ ...a, hits: c.hits() }));
  `;
  return JSON.parse(execFileSync(process.execPath, ['-e', script]).toString());
}

it('takes modules from the cache on the second run, and they behave as Node loads them', () => {
  const first = run();
  expect(first).toEqual({ v: 'one', dir: path.join(root, 'lib'), resolved: path.join(root, 'lib', 'b.js'), self: true, hits: 0 });
  expect(fs.existsSync(cache)).toBe(true);
  const second = run();
  expect(second).toEqual({ ...first, hits: 2 });
});

it('runs the new code of a file rewritten to the same length', () => {
  run();
  fs.writeFileSync(path.join(root, 'lib', 'b.js'), 'exports.value = () => "two";\n');
  // Same size; make sure the mtime moves even on a coarse clock.
  const later = new Date(Date.now() + 5000);
  fs.utimesSync(path.join(root, 'lib', 'b.js'), later, later);
  const got = run();
  expect(got.v).toBe('two');
  expect(got.hits).toBe(1);
  expect(run().hits).toBe(2);
});

it('ignores a corrupt cache and writes a good one', () => {
  run();
  const buf = fs.readFileSync(cache);
  fs.writeFileSync(cache, buf.subarray(0, buf.length - 10));
  expect(run()).toMatchObject({ v: 'one', hits: 0 });
  expect(run().hits).toBe(2);
});

it('reports a syntax error with the file name, as Node does', () => {
  fs.writeFileSync(path.join(root, 'lib', 'b.js'), 'exports.value = ) =>;\n');
  expect(() => execFileSync(process.execPath, ['-e', `require(${JSON.stringify(MODULE)}).enableCompileCache(${JSON.stringify(cache)}, ${JSON.stringify(root)}); require(${JSON.stringify(path.join(root, 'lib', 'a.js'))});`], { stdio: 'pipe' })).toThrow(/b\.js/);
});

it('puts the cache under XDG_CACHE_HOME or HOME, and nowhere when turned off', () => {
  expect(compileCacheFile({ XDG_CACHE_HOME: '/x' }, '/r')).toMatch(/^\/x\/loom\/compile-.+\.bin$/);
  expect(compileCacheFile({ HOME: '/h' }, '/r')).toMatch(/^\/h\/\.cache\/loom\/compile-.+\.bin$/);
  expect(compileCacheFile({ LOOM_COMPILE_CACHE: '/c', HOME: '/h' }, '/r')).toMatch(/^\/c\/compile-.+\.bin$/);
  expect(compileCacheFile({ LOOM_COMPILE_CACHE: 'off', HOME: '/h' }, '/r')).toBeUndefined();
  expect(compileCacheFile({}, '/r')).toBeUndefined();
  expect(compileCacheFile({ HOME: '/h' }, '/r')).not.toBe(compileCacheFile({ HOME: '/h' }, '/other'));
});
