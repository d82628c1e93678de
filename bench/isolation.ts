/**
 * npx tsx bench/isolation.ts <none|queue|task> [backlog]   (after npm run build)
 *
 * The claim-isolation measurement of docs/performance.md ("Isolation"): in a schema of its
 * own on BENCH_DATABASE_URL's server (default the local `test` database), queues `backlog`
 * jobs (default 1,000,000) ahead in claim order, either on another queue (`queue`) or of a
 * task no worker handles on the worker's own queue (`task`), or none; then prints one JSON
 * line: the mean time of 200 claims on the worker's empty queue (an idle poll) and the rate
 * of a 2,000-job drain of that queue by one worker (concurrency 10). Drops the schema.
 */
import pg from 'pg';
import { Producer, Worker, migrate } from '../dist/src/index.js';
import { JobStore } from '../dist/src/db/jobstore.js';

const kind = process.argv[2] ?? 'none';
if (!['none', 'queue', 'task'].includes(kind)) throw new Error('usage: npx tsx bench/isolation.ts <none|queue|task> [backlog]');
const backlog = Number(process.argv[3] ?? 1_000_000);
const url = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const pool = new pg.Pool({ connectionString: url, max: 4 });
const schema = `bench_isolation_${kind}`;
await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
await migrate(pool, schema);
try {
  if (kind !== 'none') {
    const [queue, task] = kind === 'queue' ? ['bulk', 'slow'] : ['fast', 'unhandled'];
    await pool.query(
      `INSERT INTO ${schema}.jobs (queue, task, run_at) SELECT $1, $2, now() - interval '1 hour' FROM generate_series(1, $3::int)`,
      [queue, task, backlog],
    );
    await pool.query(`ANALYZE ${schema}.jobs`);
  }
  const store = new JobStore(pool, schema);
  const poll = () => store.claim({ tasks: ['t'], queues: ['fast'], limit: 10, free: 10, leaseMs: 30_000, workerId: 'poller' });
  for (let i = 0; i < 20; i++) await poll();
  let t0 = performance.now();
  for (let i = 0; i < 200; i++) await poll();
  const pollMs = (performance.now() - t0) / 200;

  let done = 0;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const worker = new Worker({
    connectionString: url,
    schema,
    queues: ['fast'],
    concurrency: 10,
    keepSucceededMs: 0,
    tasks: { t: async () => void (++done === 2000 && finish()) },
  });
  await worker.start();
  t0 = performance.now();
  await new Producer({ pool, schema }).enqueueMany(Array.from({ length: 2000 }, () => ({ task: 't', queue: 'fast' })));
  await finished;
  const drain = 2000 / ((performance.now() - t0) / 1000);
  await worker.stop({ graceMs: 1000 });
  console.log(JSON.stringify({ backlog_kind: kind, backlog: kind === 'none' ? 0 : backlog, idle_claim_ms: +pollMs.toFixed(3), drain_jobs_per_s: Math.round(drain) }));
} finally {
  await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await pool.end();
}
