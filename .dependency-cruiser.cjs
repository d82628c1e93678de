// Layering of src/ (STYLE.md: dependencies flow one way, cli -> worker/maintenance ->
// producer/db -> config). Checked in CI by `npm run lint:layers`; test/layers.test.ts
// shows that a deliberate upward import fails it.
//
// Parser: swc. TypeScript 7 (our compiler) has no JavaScript compiler API, so
// dependency-cruiser cannot use it and would otherwise skip every .ts file and pass
// vacuously. swc reports `import type` like any other import: type-only imports count.

/** The files that everything may import and that import nothing else of src. */
const FOUNDATIONS = '^src/(config|errors|job)\\.ts$';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycles in src/, type-only imports included.',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'store-not-to-worker',
      severity: 'error',
      comment: 'src/db/, src/producer/ and src/admin/ sit below the worker: they never import src/worker/.',
      from: { path: '^src/(db|producer|admin)/' },
      to: { path: '^src/worker/' },
    },
    {
      name: 'cli-only-through-index',
      severity: 'error',
      comment: 'The CLI uses the library only through its public API: src/index.ts (and other files of src/cli/).',
      from: { path: '^src/cli/' },
      to: { path: '^src/', pathNot: '^src/(cli/|index\\.ts$)' },
    },
    {
      name: 'not-to-cli',
      severity: 'error',
      comment: 'The CLI is the top layer: nothing outside src/cli/ imports it.',
      from: { path: '^src/', pathNot: '^src/cli/' },
      to: { path: '^src/cli/' },
    },
    {
      name: 'maintenance-only-from-worker',
      severity: 'error',
      comment: 'Maintenance services run inside workers: only src/worker/ (and src/index.ts) import src/maintenance/.',
      from: { path: '^src/', pathNot: '^src/(worker/|maintenance/|index\\.ts$)' },
      to: { path: '^src/maintenance/' },
    },
    {
      name: 'foundations-stand-alone',
      severity: 'error',
      comment: 'src/config.ts, src/errors.ts and src/job.ts import nothing else of src but each other.',
      from: { path: FOUNDATIONS },
      to: { path: '^src/', pathNot: FOUNDATIONS },
    },
  ],
  options: {
    parser: 'swc',
    includeOnly: '^src/',
    doNotFollow: { path: 'node_modules' },
    moduleSystems: ['es6', 'cjs'],
  },
};
