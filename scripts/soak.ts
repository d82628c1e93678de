/**
 * npm run soak -- [--minutes N]   (npm run soak builds first; default 30 minutes; CI runs 5)
 *
 * A soak with real vacuum: starts a private PostgreSQL cluster (the installed server
 * binaries, port 5451, run as the `postgres` OS user when started as root, like
 * bench/capacity.ts) with the server's default settings but autovacuum on with a 15 s
 * naptime (the default is 1 min; a busy queue database wants it lower), migrates a schema and
 * runs for N minutes: an open-loop producer at 300 jobs/s, two in-process workers
 * (concurrency 10) with quick jobs (about 5% fail once and retry after ~200 ms, about 5% are
 * delayed 2 s), succeeded jobs kept 30 s and pruned every 5 s, so the table churns. From 30%
 * of the run a separate session holds a REPEATABLE READ snapshot, idle in transaction, for
 * 2 minutes (40% of a run shorter than 5 minutes), then commits.
 *
 * Every 10 s one line: jobs table + indexes size, heap size, dead and live tuples, last
 * autovacuum, the oldest open transaction's age, the claim time on an empty queue (median of
 * 20), the enqueue→start latency p50/p99 of the jobs started in the window, succeeded jobs/s.
 * At the end a summary and a verdict comparing the run before the long transaction with the
 * run from 45 s after it ended (a vacuum round later; 20% of a run under 4 minutes): the table no longer grows (10% slack),
 * vacuum clearing the dead tuples again (after it, at least one sample at or below the highest
 * count before: they rise between vacuums, a sawtooth), latency p99 and claim time within 2×.
 * Exits 1 when a goal fails. The cluster is stopped and removed in every case (Ctrl-C included).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { Producer, Worker, migrate } from '../dist/src/index.js';
import { JobStore } from '../dist/src/db/jobstore.js';
import { type PrivateCluster, startPrivateCluster } from './private-cluster.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!(value > 0)) throw new Error(`--${name} needs a positive number`);
  return value;
}

const MINUTES = arg('minutes', 30);
const RUN_MS = MINUTES * 60_000;
const RATE = 300; // jobs per second, open loop
const SAMPLE_MS = 10_000;
// The long transaction: 2 minutes from 30% of the run (less in a run under 5 minutes: 40% of it).
const LONG_TX_AT_MS = RUN_MS * 0.3;
const LONG_TX_MS = Math.min(120_000, RUN_MS * 0.4);
/** The verdict's "after": from this long after the long transaction ended (a vacuum round later). */
const AFTER_MS = Math.min(45_000, RUN_MS * 0.2);
const PORT = 5451;
const SCHEMA = 'soak';
let DB_URL = '';

/** Resolves after `ms`, or at once when the run is interrupted. */
let interrupted = false;
const interruptWaiters = new Set<() => void>();
function wait(ms: number): Promise<void> {
  if (interrupted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      interruptWaiters.delete(done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    interruptWaiters.add(done);
  });
}
process.on('SIGINT', () => {
  if (interrupted) return;
  interrupted = true;
  console.log('\ninterrupted: stopping and removing the cluster');
  for (const done of [...interruptWaiters]) done();
});

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
function median(values: readonly number[]): number {
  return quantile([...values].sort((a, b) => a - b), 0.5);
}
const mb = (bytes: number): string => `${(bytes / 1048576).toFixed(1)} MB`;
const ms = (x: number): string => (Number.isNaN(x) ? '-' : `${x.toFixed(x < 10 ? 2 : 0)} ms`);

interface Sample {
  atMs: number;
  size: number;
  heap: number;
  dead: number;
  live: number;
  lastAutovacuum: string | null;
  oldestTxS: number;
  claimMs: number;
  latencies: number[];
  succeededPerS: number;
}

async function soak(): Promise<number> {
  const pool = new pg.Pool({ connectionString: DB_URL, max: 6 });
  const monitor = new pg.Client({ connectionString: DB_URL, application_name: 'skiplock soak monitor' });
  const holder = new pg.Client({ connectionString: DB_URL, application_name: 'skiplock soak long transaction' });
  const workers: Worker[] = [];
  let producing: NodeJS.Timeout | undefined;
  try {
    await monitor.connect();
    await holder.connect();
    await migrate(pool, SCHEMA);
    const producer = new Producer({ pool, schema: SCHEMA });
    const probe = new JobStore(pool, SCHEMA);
    let succeeded = 0;
    let produceErrors = 0;
    for (let w = 0; w < 2; w++) {
      workers.push(
        new Worker({
          connectionString: DB_URL,
          schema: SCHEMA,
          concurrency: 10,
          keepSucceededMs: 30_000,
          pruneIntervalMs: 5000,
          backoff: { baseMs: 200, jitter: 0 },
          applicationName: 'skiplock soak worker',
          tasks: {
            quick: async (payload: { failOnce?: boolean }, ctx) => {
              if (payload.failOnce === true && ctx.job.attempt === 1) throw new Error('fails once by design');
              succeeded++;
            },
          },
        }),
      );
    }
    for (const worker of workers) await worker.start();

    // Open loop: every 100 ms, enqueue what the fixed rate owes by now, whether or not the
    // previous batch has returned.
    const t0 = performance.now();
    let sent = 0;
    producing = setInterval(() => {
      const due = Math.floor(((performance.now() - t0) / 1000) * RATE) - sent;
      if (due <= 0) return;
      sent += due;
      const jobs = Array.from({ length: due }, () => {
        const r = Math.random();
        if (r < 0.05) return { task: 'quick', payload: { failOnce: true } };
        if (r < 0.1) return { task: 'quick', payload: {}, delay: 2000 };
        return { task: 'quick', payload: {} };
      });
      producer.enqueueMany(jobs).catch(() => produceErrors++);
    }, 100);

    const samples: Sample[] = [];
    let windowStart = (await monitor.query<{ now: Date }>('SELECT now()')).rows[0]!.now;
    let lastSucceeded = 0;
    let sizeBeforeLongTx: { size: number; heap: number } | undefined;
    let committedAtMs: number | undefined;
    let longTx: 'pending' | 'open' | 'done' = 'pending';
    let longTxEndsAt = 0;
    console.log(
      `soak: ${MINUTES} min at ${RATE} jobs/s, 2 workers × concurrency 10, long REPEATABLE READ transaction at ${Math.round(LONG_TX_AT_MS / 1000)} s for ${Math.round(LONG_TX_MS / 1000)} s`,
    );
    const header = ['t', 'size', 'heap', 'dead', 'live', 'last autovacuum', 'oldest tx', 'claim', 'p50', 'p99', 'succeeded/s'];
    console.log(header.join(' | '));
    let next = SAMPLE_MS;
    while (!interrupted) {
      const elapsed = performance.now() - t0;
      if (longTx === 'pending' && elapsed >= LONG_TX_AT_MS) {
        const sizes = (
          await monitor.query<{ size: string; heap: string }>(`SELECT pg_total_relation_size('${SCHEMA}.jobs') AS size, pg_table_size('${SCHEMA}.jobs') AS heap`)
        ).rows[0]!;
        sizeBeforeLongTx = { size: Number(sizes.size), heap: Number(sizes.heap) };
        await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
        await holder.query(`SELECT count(*) FROM ${SCHEMA}.jobs`);
        longTx = 'open';
        longTxEndsAt = elapsed + LONG_TX_MS;
        console.log(`-- long transaction opened (size before: ${mb(sizeBeforeLongTx.size)}, heap ${mb(sizeBeforeLongTx.heap)})`);
      } else if (longTx === 'open' && elapsed >= longTxEndsAt) {
        await holder.query('COMMIT');
        longTx = 'done';
        committedAtMs = elapsed;
        console.log('-- long transaction committed');
      }
      if (elapsed >= RUN_MS) break;
      if (elapsed >= next) {
        next += SAMPLE_MS;
        await monitor.query('SELECT pg_stat_force_next_flush()');
        const stats = (
          await monitor.query<{ now: Date; size: string; heap: string; dead: string; live: string; last_autovacuum: Date | null; oldest_s: number | null }>(
            `SELECT now(), pg_total_relation_size('${SCHEMA}.jobs') AS size, pg_table_size('${SCHEMA}.jobs') AS heap,
                    coalesce(s.n_dead_tup, 0) AS dead, coalesce(s.n_live_tup, 0) AS live, s.last_autovacuum,
                    (SELECT extract(epoch FROM max(now() - xact_start))::float8 FROM pg_stat_activity
                      WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()) AS oldest_s
             FROM pg_stat_user_tables s WHERE s.schemaname = $1 AND s.relname = 'jobs'`,
            [SCHEMA],
          )
        ).rows[0]!;
        const claimTimes: number[] = [];
        for (let i = 0; i < 20; i++) {
          const c0 = performance.now();
          await probe.claim({ tasks: ['probe'], queues: ['probe'], limit: 10, free: 10, leaseMs: 30_000, workerId: 'soak-probe' });
          claimTimes.push(performance.now() - c0);
        }
        const latencies = (
          await monitor.query<{ ms: number }>(
            `SELECT extract(epoch FROM started_at - run_at)::float8 * 1000 AS ms FROM ${SCHEMA}.jobs WHERE started_at > $1 AND started_at <= $2`,
            [windowStart, stats.now],
          )
        ).rows
          .map((r) => Math.max(0, r.ms))
          .sort((a, b) => a - b);
        const windowS = (stats.now.getTime() - windowStart.getTime()) / 1000;
        windowStart = stats.now;
        const sample: Sample = {
          atMs: elapsed,
          size: Number(stats.size),
          heap: Number(stats.heap),
          dead: Number(stats.dead),
          live: Number(stats.live),
          lastAutovacuum: stats.last_autovacuum === null ? null : stats.last_autovacuum.toISOString().slice(11, 19),
          oldestTxS: Math.max(0, stats.oldest_s ?? 0),
          claimMs: median(claimTimes),
          latencies,
          succeededPerS: (succeeded - lastSucceeded) / windowS,
        };
        lastSucceeded = succeeded;
        samples.push(sample);
        console.log(
          [
            `${Math.round(elapsed / 1000)}s`,
            mb(sample.size),
            mb(sample.heap),
            sample.dead,
            sample.live,
            sample.lastAutovacuum ?? 'never',
            `${sample.oldestTxS.toFixed(1)} s`,
            ms(sample.claimMs),
            ms(quantile(latencies, 0.5)),
            ms(quantile(latencies, 0.99)),
            sample.succeededPerS.toFixed(0),
          ].join(' | '),
        );
      }
      await wait(Math.max(10, Math.min(next, longTx === 'open' ? longTxEndsAt : longTx === 'pending' ? LONG_TX_AT_MS : next, RUN_MS) - (performance.now() - t0)));
    }
    clearInterval(producing);
    producing = undefined;
    if (longTx === 'open') await holder.query('COMMIT');
    const totalS = (performance.now() - t0) / 1000;
    if (interrupted) return 130;

    // ---- summary ------------------------------------------------------------------------
    // "Before": the samples before the long transaction; "after": those from AFTER_MS after
    // it ended (an autovacuum round later), to the end.
    const before = samples.filter((s) => s.atMs <= LONG_TX_AT_MS);
    const afterFrom = (committedAtMs ?? RUN_MS) + AFTER_MS;
    const after = samples.filter((s) => s.atMs >= afterFrom);
    const lat = (group: Sample[]): number[] => group.flatMap((s) => s.latencies).sort((a, b) => a - b);
    const beforeLat = lat(before);
    const afterLat = lat(after);
    const beforeP99 = quantile(beforeLat, 0.99);
    const afterP99 = quantile(afterLat, 0.99);
    const beforeClaim = median(before.map((s) => s.claimMs));
    const afterClaim = median(after.map((s) => s.claimMs));
    const sizeBefore = sizeBeforeLongTx ?? { size: samples[0]?.size ?? 0, heap: samples[0]?.heap ?? 0 };
    const peak = Math.max(...samples.map((s) => s.size));
    const end = samples.at(-1);
    const settled = after[0];
    const deadBefore = Math.max(0, ...before.map((s) => s.dead));
    const deadPeak = Math.max(...samples.map((s) => s.dead));
    const deadAfter = Math.max(0, ...after.map((s) => s.dead));
    const deadAfterLow = Math.min(...after.map((s) => s.dead));
    console.log('\nsummary');
    console.log(
      `  jobs table + indexes: before the long transaction ${mb(sizeBefore.size)} (heap ${mb(sizeBefore.heap)}), peak ${mb(peak)}, ` +
        `${AFTER_MS / 1000} s after it ended ${mb(settled?.size ?? NaN)}, at the end ${mb(end?.size ?? NaN)} (heap ${mb(end?.heap ?? NaN)})`,
    );
    console.log(`  dead tuples: at most ${deadBefore} before, peak ${deadPeak}, ${deadAfterLow} to ${deadAfter} from ${AFTER_MS / 1000} s after`);
    console.log(`  enqueue→start latency: before p50 ${ms(quantile(beforeLat, 0.5))} p99 ${ms(beforeP99)}; after p50 ${ms(quantile(afterLat, 0.5))} p99 ${ms(afterP99)}`);
    console.log(`  claim on an empty queue (median): before ${ms(beforeClaim)}, after ${ms(afterClaim)}`);
    console.log(`  throughput: ${(succeeded / totalS).toFixed(0)} succeeded jobs/s (${sent} enqueued, ${succeeded} succeeded, ${produceErrors} enqueue errors)`);
    // Where the space is, and what rebuilding the indexes gives back (information only:
    // the verdict reads the sizes before this).
    const split = async (): Promise<string> => {
      const r = (
        await monitor.query<{ heap: string; idx: string }>(`SELECT pg_table_size('${SCHEMA}.jobs') AS heap, pg_indexes_size('${SCHEMA}.jobs') AS idx`)
      ).rows[0]!;
      return `heap ${mb(Number(r.heap))} + indexes ${mb(Number(r.idx))}`;
    };
    console.log(`  at the end: ${await split()}`);
    await monitor.query(`REINDEX TABLE CONCURRENTLY ${SCHEMA}.jobs`);
    console.log(`  after REINDEX TABLE CONCURRENTLY (workers still running): ${await split()}`);
    // Goals. Steady after the long transaction: no growth once vacuum has caught up (10%
    // slack), vacuum clearing dead tuples again (they rise between its visits, so the lowest
    // sample after is compared with the highest before); latency and claim time flat (2×,
    // with a floor of 5 ms and 0.5 ms for timer noise at sub-millisecond levels).
    const failures: string[] = [];
    if (settled === undefined || end === undefined) {
      console.log(`verdict: FAIL\n  - the run is too short to see the table after the long transaction (use --minutes 3 or more)`);
      return 1;
    }
    if (!(end.size <= 1.1 * settled.size)) failures.push(`the table grew after the long transaction ended: ${mb(settled.size)} ${AFTER_MS / 1000} s after, ${mb(end.size)} at the end`);
    if (!(deadAfterLow <= Math.max(deadBefore, 5000))) failures.push(`dead tuples after the long transaction never fell to the level before: lowest ${deadAfterLow}, highest before ${deadBefore}`);
    if (!(afterP99 <= Math.max(2 * beforeP99, beforeP99 + 5))) failures.push(`latency p99 after ${ms(afterP99)} > 2 × before ${ms(beforeP99)}`);
    if (!(afterClaim <= Math.max(2 * beforeClaim, beforeClaim + 0.5))) failures.push(`claim time after ${ms(afterClaim)} > 2 × before ${ms(beforeClaim)}`);
    if (failures.length === 0) {
      console.log(
        'verdict: PASS (after the long transaction: the table stops growing, vacuum clears its dead tuples again; latency p99 and claim time within 2× of before)',
      );
      return 0;
    }
    console.log(`verdict: FAIL\n${failures.map((f) => `  - ${f}`).join('\n')}`);
    return 1;
  } finally {
    if (producing !== undefined) clearInterval(producing);
    await Promise.all(workers.map((w) => w.stop({ graceMs: 2000 }).catch(() => undefined)));
    await holder.end().catch(() => undefined);
    await monitor.end().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }
}

let code = 1;
let cluster: PrivateCluster | undefined;
try {
  cluster = startPrivateCluster('soak', PORT, ['autovacuum = on', 'autovacuum_naptime = 15s', 'max_connections = 60']);
  DB_URL = cluster.url;
  code = await soak();
} catch (err) {
  console.error(err);
  code = 1;
} finally {
  cluster?.stop();
}
await sleep(0);
process.exit(code);
