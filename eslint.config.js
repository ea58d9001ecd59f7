// Lint (`npm run lint`, run by scripts/test.sh): typescript-eslint's
// recommended rules, no unused locals, the module map of
// scripts/lint/module-map.json as import rules, and a file-size ceiling for src/.
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');
const map = require('./scripts/lint/module-map.json');

const layers = Object.keys(map.mayImport);

/** no-restricted-imports for the files of one layer of src/. */
function importRules(layer) {
  const allowed = new Set([layer, ...map.mayImport[layer]]);
  const patterns = layers
    .filter((other) => !allowed.has(other))
    .map((other) => ({
      group: [`../${other}`, `../${other}/*`, `../../${other}/*`],
      message: `src/${layer} may not import src/${other} (scripts/lint/module-map.json; README "Code map").`,
    }));
  const paths = Object.entries(map.packages)
    .filter(([, users]) => !users.includes(layer))
    .map(([name, users]) => ({ name, message: `${name} is for src/${users.join(', src/')} only (scripts/lint/module-map.json).` }));
  patterns.push(
    ...Object.entries(map.packages)
      .filter(([, users]) => !users.includes(layer))
      .map(([name, users]) => ({ group: [`${name}/*`], message: `${name} is for src/${users.join(', src/')} only.` })),
  );
  return { 'no-restricted-imports': ['error', { paths, patterns }] };
}

const debt = Object.entries(map.maxLinesDebt).filter(([file]) => file !== '//');

module.exports = tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/gen/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Tests and the bench load helpers lazily and read compiled JS by path.
      '@typescript-eslint/no-require-imports': 'off',
      // loom matches control characters on purpose: it escapes them in what people see.
      'no-control-regex': 'off',
    },
  },
  {
    files: ['**/*.js'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'writable', __dirname: 'readonly', process: 'readonly', console: 'readonly' } },
  },
  {
    // The dashboard's browser modules (served as they are, no build step).
    files: ['ui/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: Object.fromEntries(
        ['window', 'document', 'location', 'fetch', 'EventSource', 'URL', 'URLSearchParams', 'AbortController', 'TextDecoderStream',
          'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'requestAnimationFrame', 'addEventListener', 'removeEventListener', 'console']
          .map((g) => [g, 'readonly']),
      ),
    },
  },
  ...layers.filter((l) => l !== 'gen').map((layer) => ({ files: [`src/${layer}/**/*.ts`], rules: importRules(layer) })),
  {
    files: ['src/**/*.ts'],
    rules: { 'max-lines': ['error', { max: map.maxLines, skipBlankLines: false, skipComments: false }] },
  },
  ...debt.map(([file, max]) => ({ files: [file], rules: { 'max-lines': ['error', { max }] } })),
);
