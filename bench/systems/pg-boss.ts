import { PgBoss } from 'pg-boss';
import type pg from 'pg';
import { BACKLOG_INDEX, type BacklogKind, type Payload } from '../lib/common.js';
import { BACKLOG_CHUNK, BACKLOG_QUEUE, type Backlog, type ProducerHandle, type SystemAdapter, TASK, type WorkerHandle, type WorkerSettings } from './types.js';
import { installedVersion } from './version.js';

const SCHEMA = 'pgboss';

/**
 * pg-boss in the fastest setup its documentation describes (https://pgboss.io/api/workers,
 * /api/constructor, /api/queues): LISTEN/NOTIFY wake-ups (useListenNotify on the instance,
 * notify on the queue), batch fetches (batchSize) with burst mode (keep fetching without
 * delay while batches come back full), several fetch loops per process (localConcurrency),
 * and the shortest allowed poll (0.5 s). Cron scheduling and supervision (maintenance) are
 * off in the benchmark processes; the runs are far shorter than their intervals.
 *
 * `concurrency` maps to concurrency / 10 fetch loops (at least 1) of 500 jobs each: of the
 * splits tried on drain_1proc (batch 20 to 1000, 1 to 20 loops) large batches with few loops
 * drained fastest (see bench/README.md). Override with BENCH_PGBOSS_BATCH and
 * BENCH_PGBOSS_LOOPS (loops per unit of concurrency) to explore.
 */
const BATCH_SIZE = envNumber('BENCH_PGBOSS_BATCH', 500);
const LOOPS_PER_CONCURRENCY = envNumber('BENCH_PGBOSS_LOOPS', 0.1);
const POLLING_INTERVAL_SECONDS = 0.5;

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
}

function loops(concurrency: number): number {
  return Math.max(1, Math.round(concurrency * LOOPS_PER_CONCURRENCY));
}

const quiet = { schedule: false, supervise: false } as const;

function reportToStderr(err: unknown): void {
  process.stderr.write(`pg-boss: ${err instanceof Error ? err.message : String(err)}\n`);
}

export const pgBoss: SystemAdapter = {
  name: 'pg-boss',
  version: installedVersion('pg-boss'),

  async setup(url: string): Promise<void> {
    const boss = new PgBoss({ connectionString: url, schema: SCHEMA, max: 2, ...quiet });
    boss.on('error', reportToStderr);
    await boss.start();
    try {
      await boss.createQueue(TASK, { notify: true });
    } finally {
      await boss.stop({ graceful: false, close: true });
    }
  },

  async producer(url: string, poolSize: number): Promise<ProducerHandle> {
    const boss = new PgBoss({ connectionString: url, schema: SCHEMA, max: poolSize, migrate: false, ...quiet });
    boss.on('error', reportToStderr);
    await boss.start();
    return {
      async enqueue(payload: Payload): Promise<void> {
        await boss.send(TASK, payload);
      },
      async enqueueMany(payloads: readonly Payload[]): Promise<void> {
        await boss.insert(
          TASK,
          payloads.map((data) => ({ data })),
        );
      },
      async enqueueBacklog(kind: BacklogKind, count: number): Promise<Backlog> {
        // pg-boss's queues are its tasks: a worker works one queue by name, with no task
        // within it. Another queue is the closest to both kinds of backlog: another queue
        // of the same jobs (`queue`), and jobs no running worker handles (`task`).
        await boss.createQueue(BACKLOG_QUEUE, { notify: true });
        for (let done = 0; done < count; done += BACKLOG_CHUNK) {
          const n = Math.min(BACKLOG_CHUNK, count - done);
          await boss.insert(
            BACKLOG_QUEUE,
            Array.from({ length: n }, () => ({ data: { i: BACKLOG_INDEX, t: 0 } })),
          );
        }
        const placement = `queue ${BACKLOG_QUEUE} (created like the worker's queue ${TASK}; pg-boss's queues are its tasks, so for either kind of backlog the closest is another queue), in the same job table (partition: false, the default)`;
        return { kind, jobs: count, placement };
      },
      close: () => boss.stop({ graceful: false, close: true }),
    };
  },

  async startWorker(url: string, settings: WorkerSettings): Promise<WorkerHandle> {
    const localConcurrency = loops(settings.concurrency);
    const boss = new PgBoss({
      connectionString: url,
      schema: SCHEMA,
      max: localConcurrency + 2,
      migrate: false,
      useListenNotify: true,
      ...quiet,
    });
    boss.on('error', settings.onError);
    await boss.start();
    await boss.work<Payload>(
      TASK,
      { batchSize: BATCH_SIZE, localConcurrency, burstWhenBatchFull: true, pollingIntervalSeconds: POLLING_INTERVAL_SECONDS },
      async (jobs) => {
        for (const job of jobs) settings.onJob(job.data);
      },
    );
    return { stop: () => boss.stop({ graceful: true, timeout: 2000, close: true }) };
  },

  async remaining(client: pg.Client): Promise<number> {
    // The own queue only (by the primary key's leading column, name), with a backlog or without.
    const res = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${SCHEMA}.job WHERE name = $1 AND state IN ('created', 'retry', 'active')`,
      [TASK],
    );
    return res.rows[0]?.n ?? 0;
  },

  workerConfig(concurrency: number): Record<string, unknown> {
    return {
      useListenNotify: true,
      queue: { notify: true, policy: 'standard' },
      work: {
        batchSize: BATCH_SIZE,
        localConcurrency: loops(concurrency),
        burstWhenBatchFull: true,
        pollingIntervalSeconds: POLLING_INTERVAL_SECONDS,
      },
      max: loops(concurrency) + 2,
      schedule: false,
      supervise: false,
      source: 'https://pgboss.io/api/workers',
    };
  },

  workerConnections(concurrency: number): number {
    return loops(concurrency) + 2 + 1;
  },
};
