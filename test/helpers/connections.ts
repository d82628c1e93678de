/**
 * vitest global setup of `npm test`: the suite shares its PostgreSQL server with whatever else
 * runs there (CI holds 30 connections of its own open during the suite: scripts/hold-connections.mjs).
 * Before the first file it checks that the server has room for the suite's budget and fails
 * at once, saying so, when it has not (rather than a `too many clients` halfway through);
 * while the files run it samples how many connections the server holds, and afterwards prints
 * the peak. Files run one at a time (vitest.config.ts); each keeps its own budget well under
 * SUITE_BUDGET (the largest: test/processes.test.ts's 6 worker processes, up to 48, and
 * test/keys.test.ts's 32 racing transactions plus its pool).
 */
import pg from 'pg';
import { DATABASE_URL } from './db.js';

/** Connections the busiest test file may hold at once. */
export const SUITE_BUDGET = 55;

export default async function setup(): Promise<() => Promise<void>> {
  const client = new pg.Client({ connectionString: DATABASE_URL, application_name: 'skiplock test headroom' });
  await client.connect();
  const read = async (): Promise<{ used: number; max: number; reserved: number }> => {
    const res = await client.query<{ used: number; max: number; reserved: number }>(
      `SELECT (SELECT count(*)::int FROM pg_stat_activity WHERE backend_type = 'client backend') AS used,
              current_setting('max_connections')::int AS max,
              current_setting('superuser_reserved_connections')::int AS reserved`,
    );
    return res.rows[0]!;
  };
  const start = await read();
  const free = start.max - start.reserved - start.used;
  process.stdout.write(`[connections] server max_connections ${start.max}, ${start.used} in use before the suite, ${free} free; the suite needs up to ${SUITE_BUDGET}\n`);
  if (free < SUITE_BUDGET) {
    await client.end();
    throw new Error(
      `PostgreSQL at ${new URL(DATABASE_URL).host} has ${free} free connections (max_connections ${start.max}, ${start.used} in use); the suite needs up to ${SUITE_BUDGET}: close some or raise max_connections`,
    );
  }
  let peak = start.used;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try {
        peak = Math.max(peak, (await read()).used);
      } catch {
        return; // the server went away: nothing more to sample
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return async () => {
    sampling = false;
    await sampler;
    process.stdout.write(`[connections] peak ${peak} client connections on the server during the suite (${start.used} before it)\n`);
    if (peak - start.used > SUITE_BUDGET) {
      process.stdout.write(`[connections] warning: the suite (or other clients meanwhile) went ${peak - start.used - SUITE_BUDGET} over its budget of ${SUITE_BUDGET}\n`);
    }
    await client.end().catch(() => undefined);
  };
}
