import type pg from 'pg';
// The compiled package (npm run bench builds it first), as users run it; not the sources
// through the tsx loader, whose transform adds work of its own (esbuild's keepNames wrapper).
import { Producer, Worker, createPool, migrate } from '../../dist/src/index.js';
import type { Payload } from '../lib/common.js';
import { type ProducerHandle, type SystemAdapter, TASK, type WorkerHandle, type WorkerSettings } from './types.js';
import { installedVersion } from './version.js';

const SCHEMA = 'skiplock';
/** Most claimed jobs buffered per worker on top of the running ones (docs/performance.md, "Throughput"). */
const PREFETCH = Number(process.env.SKIPLOCK_BENCH_PREFETCH ?? 1000);
/** Succeeded jobs are deleted in the statement that records them (docs/performance.md, "Retention"). */
const KEEP_SUCCEEDED_MS = Number(process.env.SKIPLOCK_BENCH_KEEP_MS ?? 0);
/** SKIPLOCK_BENCH_SYNC_COMMIT=off: producers commit asynchronously (ProducerOptions.synchronousCommit; docs/performance.md). */
const SYNCHRONOUS_COMMIT = process.env.SKIPLOCK_BENCH_SYNC_COMMIT !== 'off';

/**
 * skiplock through its public API only, with its documented defaults: NOTIFY wake-ups, a
 * 2 s fallback poll, a worker pool of concurrency + 4 connections plus one listener.
 */
export const skiplock: SystemAdapter = {
  name: 'skiplock',
  version: installedVersion('skiplock'),

  async setup(url: string): Promise<void> {
    const pool = createPool({ connectionString: url, max: 1 });
    try {
      await migrate(pool, SCHEMA);
    } finally {
      await pool.end();
    }
  },

  async producer(url: string, poolSize: number): Promise<ProducerHandle> {
    const producer = new Producer({ connectionString: url, max: poolSize, schema: SCHEMA, synchronousCommit: SYNCHRONOUS_COMMIT });
    return {
      async enqueue(payload: Payload): Promise<void> {
        await producer.enqueue(TASK, payload);
      },
      async enqueueMany(payloads: readonly Payload[]): Promise<void> {
        await producer.enqueueMany(payloads.map((payload) => ({ task: TASK, payload })));
      },
      close: () => producer.close(),
    };
  },

  async startWorker(url: string, settings: WorkerSettings): Promise<WorkerHandle> {
    const worker = new Worker({
      connectionString: url,
      schema: SCHEMA,
      concurrency: settings.concurrency,
      prefetch: PREFETCH,
      keepSucceededMs: KEEP_SUCCEEDED_MS,
      tasks: {
        [TASK]: async (payload: Payload) => {
          settings.onJob(payload);
        },
      },
    });
    await worker.start();
    return { stop: () => worker.stop({ graceMs: 2000 }) };
  },

  async remaining(client: pg.Client): Promise<number> {
    const res = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.jobs WHERE status IN ('queued', 'running')`);
    return res.rows[0]?.n ?? 0;
  },

  workerConfig(concurrency: number): Record<string, unknown> {
    return {
      concurrency,
      prefetch: PREFETCH,
      keepSucceededMs: KEEP_SUCCEEDED_MS,
      pool_max: concurrency + 4,
      listen: true,
      pollIntervalMs: 2000,
      producerSynchronousCommit: SYNCHRONOUS_COMMIT,
      note: 'library defaults but prefetch and keepSucceededMs',
    };
  },

  workerConnections(concurrency: number): number {
    return concurrency + 4 + 1;
  },
};
