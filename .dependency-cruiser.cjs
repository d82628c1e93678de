// Layering of src/ (STYLE.md: dependencies flow one way, cli -> worker/maintenance ->
// producer/db -> config). Checked in CI by `npm run lint:layers`; test/layers.test.ts
// shows that a deliberate upward import fails it.
//
// Parser: swc. TypeScript 7 (our compiler) has no JavaScript compiler API, so
// dependency-cruiser cannot use it and would otherwise skip every .ts file and pass
// vacuously. swc reports `import type` like any other import: type-only imports count.

/** The files that everything may import and that import nothing else of src. */
const FOUNDATIONS = '^src/(config|errors|job)\\.ts$';

/**
 * The modules the dashboard may import besides its own: those whose exports src/index.ts
 * re-exports as the public API. Not src/index.ts itself: it re-exports startDashboard, so that
 * import would be a cycle (no-circular).
 */
const DASHBOARD_MAY_USE =
  '^src/(dashboard/|(config|errors|job|version)\\.ts$|admin/(jobs|queues|why)\\.ts$|producer/(producer|schedules)\\.ts$|db/pool\\.ts$|observability/logger\\.ts$)';

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
      name: 'dashboard-only-public-api',
      severity: 'error',
      comment:
        'The dashboard is a client of the library, as the CLI is: it imports only the modules of the public API (see DASHBOARD_MAY_USE), never the worker, maintenance, notifications or store internals.',
      from: { path: '^src/dashboard/' },
      to: { path: '^src/', pathNot: DASHBOARD_MAY_USE },
    },
    {
      name: 'dashboard-only-from-index',
      severity: 'error',
      comment: 'Only src/index.ts imports src/dashboard/: the CLI and the worker command reach it through the public API.',
      from: { path: '^src/', pathNot: '^src/(dashboard/|index\\.ts$)' },
      to: { path: '^src/dashboard/' },
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
