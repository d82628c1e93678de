import type pg from 'pg';
// The compiled package (npm run bench builds it first), as users run it; not the sources
// through the tsx loader, whose transform adds work of its own (esbuild's keepNames wrapper).
import { Producer, Worker, createPool, migrate } from '../../dist/src/index.js';
import { BACKLOG_INDEX, type BacklogKind, type Payload, type SystemName } from '../lib/common.js';
import {
  BACKLOG_CHUNK,
  BACKLOG_QUEUE,
  BACKLOG_TASK,
  type Backlog,
  type ProducerHandle,
  type SystemAdapter,
  TASK,
  type WorkerHandle,
  type WorkerSettings,
} from './types.js';
import { installedVersion } from './version.js';

const SCHEMA = 'skiplock';
/** skiplock's default queue: the benchmark's own jobs go there. */
const OWN_QUEUE = 'default';

/** What the bench sets on top of skiplock's library defaults; an option left out keeps the library's default. */
interface SkiplockTuning {
  /** WorkerOptions.prefetch. */
  prefetch?: number;
  /** WorkerOptions.keepSucceededMs. */
  keepSucceededMs?: number;
  /** ProducerOptions.synchronousCommit. */
  synchronousCommit?: boolean;
  /** For the result line. */
  note: string;
}

/** Drops the options left undefined, so the library applies its own defaults. */
function defined<T extends Record<string, unknown>>(record: T): Partial<T> {
  return Object.fromEntries(Object.entries(record).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * skiplock through its public API only: NOTIFY wake-ups, a 2 s fallback poll, a worker pool
 * of concurrency + 4 connections plus one listener (library defaults), with `tuning` on top.
 */
function skiplockAdapter(name: SystemName, tuning: SkiplockTuning): SystemAdapter {
  const workerTuning = defined({ prefetch: tuning.prefetch, keepSucceededMs: tuning.keepSucceededMs });
  const producerTuning = defined({ synchronousCommit: tuning.synchronousCommit });
  return {
    name,
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
      const producer = new Producer({ connectionString: url, max: poolSize, schema: SCHEMA, ...producerTuning });
      return {
        async enqueue(payload: Payload): Promise<void> {
          await producer.enqueue(TASK, payload);
        },
        async enqueueMany(payloads: readonly Payload[]): Promise<void> {
          await producer.enqueueMany(payloads.map((payload) => ({ task: TASK, payload })));
        },
        async enqueueBacklog(kind: BacklogKind, count: number): Promise<Backlog> {
          const spec = kind === 'queue' ? { task: TASK, queue: BACKLOG_QUEUE } : { task: BACKLOG_TASK, queue: OWN_QUEUE };
          for (let done = 0; done < count; done += BACKLOG_CHUNK) {
            const n = Math.min(BACKLOG_CHUNK, count - done);
            await producer.enqueueMany(Array.from({ length: n }, () => ({ ...spec, payload: { i: BACKLOG_INDEX, t: 0 } })));
          }
          const placement =
            kind === 'queue'
              ? `task ${TASK} in queue ${BACKLOG_QUEUE}; the worker takes queue ${OWN_QUEUE} only (queues: ['${OWN_QUEUE}'])`
              : `task ${BACKLOG_TASK} (no handler) in queue ${OWN_QUEUE}, the worker's own`;
          return { kind, jobs: count, placement };
        },
        close: () => producer.close(),
      };
    },

    async startWorker(url: string, settings: WorkerSettings): Promise<WorkerHandle> {
      const worker = new Worker({
        connectionString: url,
        schema: SCHEMA,
        concurrency: settings.concurrency,
        // A worker serves every queue unless told otherwise: behind a backlog of its task in
        // another queue, it names its own.
        ...(settings.isolation === 'queue' ? { queues: [OWN_QUEUE] } : {}),
        ...workerTuning,
        tasks: {
          [TASK]: async (payload: Payload) => {
            settings.onJob(payload);
          },
        },
      });
      await worker.start();
      return { stop: () => worker.stop({ graceMs: 2000 }) };
    },

    async remaining(client: pg.Client, backlog?: Backlog): Promise<number> {
      if (backlog === undefined) {
        const res = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${SCHEMA}.jobs WHERE status IN ('queued', 'running')`);
        return res.rows[0]?.n ?? 0;
      }
      // Own jobs only, through the claim index (queue, task, ...) WHERE queued and the
      // running index (queue, id) WHERE running: neither reads the backlog.
      const res = await client.query<{ n: number }>(
        `SELECT (SELECT count(*) FROM ${SCHEMA}.jobs WHERE status = 'queued' AND queue = $1 AND task = $2)::int
              + (SELECT count(*) FROM ${SCHEMA}.jobs WHERE status = 'running' AND queue = $1 AND task = $2)::int AS n`,
        [OWN_QUEUE, TASK],
      );
      return res.rows[0]?.n ?? 0;
    },

    workerConfig(concurrency: number, isolation?: BacklogKind): Record<string, unknown> {
      return {
        concurrency,
        prefetch: tuning.prefetch ?? 'library default (1,000, or 10 x concurrency when more)',
        keepSucceededMs: tuning.keepSucceededMs ?? 'library default (24 h)',
        ...(isolation === 'queue' ? { queues: [OWN_QUEUE] } : {}),
        pool_max: concurrency + 4,
        listen: true,
        pollIntervalMs: 2000,
        producerSynchronousCommit: tuning.synchronousCommit ?? 'library default (true)',
        note: tuning.note,
      };
    },

    workerConnections(concurrency: number): number {
      return concurrency + 4 + 1;
    },
  };
}

/**
 * The bench's skiplock: library defaults but `prefetch: 1000` (the ceiling of the adaptive
 * buffer, docs/performance.md "Throughput"; now also the default) and `keepSucceededMs: 0`
 * (succeeded jobs deleted in the statement that records them, "Retention").
 * SKIPLOCK_BENCH_PREFETCH and SKIPLOCK_BENCH_KEEP_MS override them; SKIPLOCK_BENCH_SYNC_COMMIT=off
 * has the producers commit asynchronously (ProducerOptions.synchronousCommit).
 */
export const skiplock: SystemAdapter = skiplockAdapter('skiplock', {
  prefetch: Number(process.env.SKIPLOCK_BENCH_PREFETCH ?? 1000),
  keepSucceededMs: Number(process.env.SKIPLOCK_BENCH_KEEP_MS ?? 0),
  synchronousCommit: process.env.SKIPLOCK_BENCH_SYNC_COMMIT !== 'off',
  note: 'library defaults but prefetch and keepSucceededMs',
});

/** skiplock as it comes: no option beyond connection, schema, concurrency and tasks (drain scenarios only). */
export const skiplockDefaults: SystemAdapter = skiplockAdapter('skiplock-defaults', { note: 'library defaults' });
