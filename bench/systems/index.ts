import type { SystemName } from '../lib/common.js';
import type { SystemAdapter } from './types.js';

/**
 * The peers' adapters, named through variables: their libraries are installed in
 * bench/node_modules by `npm run bench` (bench/package.json), not by the root install, so the
 * root typecheck must not follow these imports; bench/tsconfig.json checks the adapters.
 */
const GRAPHILE_WORKER_ADAPTER: string = './graphile-worker.js';
const PG_BOSS_ADAPTER: string = './pg-boss.js';

/** Loads one system's adapter (and only its library). */
export async function loadAdapter(name: SystemName): Promise<SystemAdapter> {
  switch (name) {
    case 'skiplock':
      return (await import('./skiplock.js')).skiplock;
    case 'skiplock-defaults':
      return (await import('./skiplock.js')).skiplockDefaults;
    case 'graphile-worker':
      return ((await import(GRAPHILE_WORKER_ADAPTER)) as { graphileWorker: SystemAdapter }).graphileWorker;
    case 'pg-boss':
      return ((await import(PG_BOSS_ADAPTER)) as { pgBoss: SystemAdapter }).pgBoss;
  }
}
