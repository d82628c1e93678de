/**
 * npx tsx bench/capacity.ts [jobs]   (after npm run build)
 *
 * The figures of docs/scaling.md: what one job costs the database. Starts a private
 * PostgreSQL cluster (the installed server binaries, port 5471, autovacuum off so that dead
 * tuples can be counted, run as the `postgres` OS user when started as root), then for each
 * retention (succeeded jobs kept, the default; deleted at once, keepSucceededMs 0):
 * bulk-enqueues `jobs` jobs (default 50,000) and drains them with one in-process worker
 * (concurrency 10, prefetch 1000), and prints per job: WAL bytes (pg_current_wal_lsn), rows
 * inserted, updated and deleted and dead tuples left (pg_stat_user_tables), and the CPU time
 * of the cluster's processes (/proc: user + system), so jobs per second per PostgreSQL core;
 * and the connections the worker held. Removes the cluster.
 */
import { readFileSync, readdirSync } from 'node:fs';
import pg from 'pg';
import { Producer, Worker, migrate } from '../dist/src/index.js';
import { startPrivateCluster } from '../scripts/private-cluster.js';

const JOBS = Number(process.argv[2] ?? 50_000);
const PORT = 5471;
const cluster = startPrivateCluster('capacity', PORT, ['shared_buffers = 256MB', 'autovacuum = off', 'max_connections = 50']);
const URL = cluster.url;

/** CPU seconds (user + system) of every process of the cluster: the postmaster's children and itself. */
function clusterCpuSeconds(): number {
  const pid = cluster.postmasterPid();
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(fields[1]);
      if (Number(entry) !== pid && ppid !== pid) continue;
      total += (Number(fields[11]) + Number(fields[12])) / tick;
    } catch {
      // the process ended meanwhile
    }
  }
  return total;
}

interface Sample {
  lsn: string;
  ins: number;
  upd: number;
  del: number;
  hot: number;
  dead: number;
  cpu: number;
}

async function sample(client: pg.Client, schema: string): Promise<Sample> {
  await client.query('SELECT pg_stat_force_next_flush()');
  const res = await client.query<{ lsn: string; ins: string; upd: string; del: string; hot: string; dead: string }>(
    `SELECT pg_current_wal_lsn()::text AS lsn, coalesce(n_tup_ins, 0) AS ins, coalesce(n_tup_upd, 0) AS upd, coalesce(n_tup_del, 0) AS del,
            coalesce(n_tup_hot_upd, 0) AS hot, coalesce(n_dead_tup, 0) AS dead
     FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs'`,
    [schema],
  );
  const r = res.rows[0]!;
  return { lsn: r.lsn, ins: Number(r.ins), upd: Number(r.upd), del: Number(r.del), hot: Number(r.hot), dead: Number(r.dead), cpu: clusterCpuSeconds() };
}

async function walBytes(client: pg.Client, from: string, to: string): Promise<number> {
  return Number((await client.query<{ d: string }>('SELECT pg_wal_lsn_diff($2::pg_lsn, $1::pg_lsn) AS d', [from, to])).rows[0]!.d);
}

async function measure(keepSucceededMs: number | undefined, label: string): Promise<Record<string, unknown>> {
  const schema = `capacity_${keepSucceededMs === 0 ? 'delete' : 'keep'}`;
  const pool = new pg.Pool({ connectionString: URL, max: 4 });
  const client = new pg.Client({ connectionString: URL });
  await client.connect();
  try {
    await migrate(pool, schema);
    const producer = new Producer({ pool, schema });
    const s0 = await sample(client, schema);
    for (let i = 0; i < JOBS; i += 1000) {
      await producer.enqueueMany(Array.from({ length: Math.min(1000, JOBS - i) }, (_, k) => ({ task: 't', payload: { i: i + k } })));
    }
    const s1 = await sample(client, schema);
    let done = 0;
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    const worker = new Worker({
      connectionString: URL,
      schema,
      concurrency: 10,
      prefetch: 1000,
      ...(keepSucceededMs !== undefined && { keepSucceededMs }),
      pruneIntervalMs: 0,
      scheduleIntervalMs: 0,
      tasks: { t: async () => void (++done === JOBS && finish()) },
    });
    const t0 = performance.now();
    await worker.start();
    let connections = 0;
    const watch = setInterval(() => {
      void client
        .query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'skiplock worker'`)
        .then((r) => (connections = Math.max(connections, r.rows[0]!.n)));
    }, 100);
    await finished;
    await worker.stop();
    clearInterval(watch);
    const seconds = (performance.now() - t0) / 1000;
    const s2 = await sample(client, schema);
    const per = (x: number) => Math.round((x / JOBS) * 100) / 100;
    const drainCpu = s2.cpu - s1.cpu;
    return {
      retention: label,
      jobs: JOBS,
      enqueue: { wal_bytes_per_job: per(await walBytes(client, s0.lsn, s1.lsn)), cpu_us_per_job: Math.round(((s1.cpu - s0.cpu) / JOBS) * 1e6) },
      drain: {
        seconds: Math.round(seconds * 100) / 100,
        jobs_per_s: Math.round(JOBS / seconds),
        wal_bytes_per_job: per(await walBytes(client, s1.lsn, s2.lsn)),
        rows_updated_per_job: per(s2.upd - s1.upd),
        hot_updates_per_job: per(s2.hot - s1.hot),
        rows_deleted_per_job: per(s2.del - s1.del),
        dead_tuples_per_job: per(s2.dead - s1.dead),
        pg_cpu_seconds: Math.round(drainCpu * 100) / 100,
        pg_cpu_us_per_job: Math.round((drainCpu / JOBS) * 1e6),
        jobs_per_pg_core_second: Math.round(JOBS / drainCpu),
        worker_connections_peak: connections,
      },
    };
  } finally {
    await client.end();
    await pool.end();
  }
}

try {
  const results = [await measure(undefined, 'kept (default: a day)'), await measure(0, 'deleted at once (keepSucceededMs 0)')];
  for (const r of results) console.log(JSON.stringify(r));
} finally {
  cluster.stop();
}
