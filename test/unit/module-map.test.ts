/**
 * The module map as a check (README "Code map"): which layer of src/ may
 * import which, which third-party clients each may use, and that only
 * src/bin reads process.argv / process.env. Reads the TypeScript sources
 * (not dist/), so it runs in the unit project without a build step of its own.
 *
 * KNOWN lists what breaks the map today, file by file: each is a debt (issue
 * #24), not a permission. A new break fails; so does a listed one that is
 * gone, so the list only shrinks.
 */
import * as fs from 'fs';
import * as path from 'path';

const SRC = path.resolve(__dirname, '../../../src');

/** The map itself, shared with lint (eslint.config.js): one source. */
const MAP = JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../../scripts/lint/module-map.json'), 'utf8')) as {
  mayImport: Record<string, string[]>;
  packages: Record<string, string[]>;
};
/** Layer -> layers it may import (besides itself). gen is generated protobuf code. */
const MAY_IMPORT = MAP.mayImport;
/** Third-party clients and the layers that may use them. */
const PACKAGES = MAP.packages;

const KNOWN = new Set([
  'node/executor.ts reads process.env',
  'runner/cgroup.ts reads process.env',
  'runner/reaper-main.ts reads process.env',
  'runner/spawner.ts reads process.env',
  'etcd/embedded.ts reads process.env',
]);

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

function breaks(): string[] {
  const found = new Set<string>();
  for (const file of sources(SRC)) {
    const rel = path.relative(SRC, file);
    const layer = rel.split(path.sep)[0];
    if (!(layer in MAY_IMPORT)) throw new Error(`${rel}: ${layer} is not a layer of the module map; add it to MAY_IMPORT`);
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:from|import\(?)\s*'([^']+)'/g)) {
      const spec = m[1];
      if (spec.startsWith('.')) {
        const target = path.relative(SRC, path.resolve(path.dirname(file), spec)).split(path.sep)[0];
        if (target !== layer && target in MAY_IMPORT && !MAY_IMPORT[layer].includes(target)) found.add(`${rel} imports ${target}`);
      } else {
        const pkg = Object.keys(PACKAGES).find((p) => spec === p || spec.startsWith(`${p}/`));
        if (pkg && !PACKAGES[pkg].includes(layer)) found.add(`${rel} uses ${pkg}`);
      }
    }
    if (layer !== 'bin' && layer !== 'gen' && /process\.(argv|env)\b/.test(text)) found.add(`${rel} reads process.env`);
  }
  return [...found].sort();
}

test('imports follow the module map (only known debts break it)', () => {
  const now = breaks();
  expect(now.filter((b) => !KNOWN.has(b))).toEqual([]);
});

test('every known debt still exists (remove the ones that were paid)', () => {
  const now = new Set(breaks());
  expect([...KNOWN].filter((b) => !now.has(b))).toEqual([]);
});
