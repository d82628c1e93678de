/**
 * npx tsx bench/admin-list.ts [rows]   (after npm run build; `npm run bench` runs it last)
 *
 * `skiplock jobs list` on a big table (issue 14): in a schema of its own on
 * BENCH_DATABASE_URL's server (default the local `test` database), fills the jobs table with
 * `rows` jobs (default 1,000,000: 65% succeeded, 30% queued, 4% failed, 1% cancelled; queues
 * default 90%, emails 9.9%, rare 0.1%; created over the last 7 days), ANALYZEs it, then times
 * the first page and the next page (50 jobs, the cursor of the first) of each filter through
 * the library's Jobs.list, 30 times each after 5 untimed, and prints one JSON line per filter
 * (median, p90 and max ms, client round trip included) and a table. Drops the schema.
 */
import pg from 'pg';
import { type JobFilter, Jobs, migrate } from '../dist/src/index.js';

const rows = Number(process.argv[2] ?? 1_000_000);
const url = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const pool = new pg.Pool({ connectionString: url, max: 2 });
const schema = 'bench_admin_list';
const RUNS = 30;

const FILTERS: Array<[string, JobFilter]> = [
  ['all jobs', {}],
  ['status failed', { statuses: ['failed'] }],
  ['status failed,cancelled', { statuses: ['failed', 'cancelled'] }],
  ['status queued', { statuses: ['queued'] }],
  ['status succeeded', { statuses: ['succeeded'] }],
  ['queue emails (9.9%)', { queue: 'emails' }],
  ['queue rare (0.1%)', { queue: 'rare' }],
  ['task send, status failed', { task: 'send', statuses: ['failed'] }],
  ['older than 1d', { olderThanMs: 86_400_000 }],
  ['schedule nightly', { schedule: 'nightly' }],
];

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function timed(fn: () => Promise<unknown>): Promise<{ median: number; p90: number; max: number }> {
  for (let i = 0; i < 5; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 1000) / 1000;
  return { median: r(quantile(times, 0.5)), p90: r(quantile(times, 0.9)), max: r(times[times.length - 1]!) };
}

await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
await migrate(pool, schema);
try {
  const t0 = performance.now();
  await pool.query(
    `INSERT INTO ${schema}.jobs (queue, task, status, payload, attempts, created_at, run_at, started_at, finished_at, last_error, schedule_name, schedule_slot)
     SELECT q, t, s, jsonb_build_object('i', g), CASE WHEN s = 'queued' THEN 0 ELSE 1 END, c, c,
            CASE WHEN s = 'queued' THEN NULL ELSE c END, CASE WHEN s = 'queued' THEN NULL ELSE c END,
            CASE WHEN s = 'failed' THEN 'Error: boom' END,
            CASE WHEN g % 5000 = 0 THEN 'nightly' END, CASE WHEN g % 5000 = 0 THEN c END
     FROM (SELECT g,
                  CASE WHEN g % 1000 = 0 THEN 'rare' WHEN g % 10 = 0 THEN 'emails' ELSE 'default' END AS q,
                  CASE WHEN g % 7 = 0 THEN 'send' ELSE 'work' END AS t,
                  CASE WHEN g % 100 < 65 THEN 'succeeded' WHEN g % 100 < 95 THEN 'queued' WHEN g % 100 < 99 THEN 'failed' ELSE 'cancelled' END AS s,
                  now() - interval '7 days' + (g::float8 / $1) * interval '7 days' AS c
           FROM generate_series(1, $1::int) AS g) AS x`,
    [rows],
  );
  await pool.query(`ANALYZE ${schema}.jobs`);
  console.log(JSON.stringify({ setup: { rows, schema, seconds: Math.round((performance.now() - t0) / 100) / 10 } }));
  const jobs = new Jobs({ pool, schema });
  const results: Array<{ filter: string; first: Awaited<ReturnType<typeof timed>>; next: Awaited<ReturnType<typeof timed>>; page: number }> = [];
  for (const [name, filter] of FILTERS) {
    const firstPage = await jobs.list(filter, { limit: 50 });
    const first = await timed(() => jobs.list(filter, { limit: 50 }));
    const next =
      firstPage.next === null ? first : await timed(() => jobs.list(filter, { limit: 50, after: firstPage.next! }));
    results.push({ filter: name, first, next, page: firstPage.jobs.length });
    console.log(JSON.stringify({ scenario: 'admin_list', rows, filter: name, page_size: firstPage.jobs.length, first_page_ms: first, next_page_ms: next }));
  }
  const pad = (s: string, n: number) => s.padEnd(n);
  console.log(`\njobs list on ${rows.toLocaleString('en')} jobs, page of 50, ms (median / p90 / max of ${RUNS}):`);
  console.log(`${pad('filter', 28)}${pad('first page', 26)}next page`);
  for (const r of results) {
    const f = (t: { median: number; p90: number; max: number }) => `${t.median} / ${t.p90} / ${t.max}`;
    console.log(`${pad(r.filter, 28)}${pad(f(r.first), 26)}${f(r.next)}`);
  }
} finally {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await pool.end();
}
