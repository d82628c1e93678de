import type { SystemName } from '../lib/common.js';
import type { SystemAdapter } from './types.js';

/** Loads one system's adapter (and only its library). */
export async function loadAdapter(name: SystemName): Promise<SystemAdapter> {
  switch (name) {
    case 'skiplock':
      return (await import('./skiplock.js')).skiplock;
    case 'skiplock-defaults':
      return (await import('./skiplock.js')).skiplockDefaults;
    case 'graphile-worker':
      return (await import('./graphile-worker.js')).graphileWorker;
    case 'pg-boss':
      return (await import('./pg-boss.js')).pgBoss;
  }
}
