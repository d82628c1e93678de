import { Logger, type Runner, type WorkerUtils, makeWorkerUtils, run, runMigrations } from 'graphile-worker';
import type pg from 'pg';
import type { Payload } from '../lib/common.js';
import { type ProducerHandle, type SystemAdapter, TASK, type WorkerHandle, type WorkerSettings } from './types.js';
import { installedVersion } from './version.js';

/**
 * The configuration graphile-worker's performance page reports its figures with
 * (https://worker.graphile.org/docs/performance): a local queue that fetches and locks
 * 500 jobs per query, completions and failures batched (delay 0: flushed on the next
 * tick), and a pool of concurrency + 1 connections.
 */
const LOCAL_QUEUE_SIZE = 500;
const COMPLETE_JOB_BATCH_DELAY = 0;
const FAIL_JOB_BATCH_DELAY = 0;

function quietLogger(onError: (err: unknown) => void): Logger {
  return new Logger(() => (level, message) => {
    if (level === 'error') onError(new Error(`graphile-worker: ${message}`));
  });
}

function reportToStderr(err: unknown): void {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
}

export const graphileWorker: SystemAdapter = {
  name: 'graphile-worker',
  version: installedVersion('graphile-worker'),

  async setup(url: string): Promise<void> {
    await runMigrations({ connectionString: url, maxPoolSize: 1, logger: quietLogger(reportToStderr) });
  },

  async producer(url: string, poolSize: number): Promise<ProducerHandle> {
    const utils: WorkerUtils = await makeWorkerUtils({ connectionString: url, maxPoolSize: poolSize, logger: quietLogger(reportToStderr) });
    return {
      async enqueue(payload: Payload): Promise<void> {
        await utils.addJob(TASK, payload);
      },
      async enqueueMany(payloads: readonly Payload[]): Promise<void> {
        await utils.addJobs(payloads.map((payload) => ({ identifier: TASK, payload })));
      },
      async close(): Promise<void> {
        await utils.release();
      },
    };
  },

  async startWorker(url: string, settings: WorkerSettings): Promise<WorkerHandle> {
    const runner: Runner = await run({
      connectionString: url,
      concurrency: settings.concurrency,
      maxPoolSize: settings.concurrency + 1,
      noHandleSignals: true,
      logger: quietLogger(settings.onError),
      taskList: {
        [TASK]: async (payload) => {
          settings.onJob(payload as Payload);
        },
      },
      preset: {
        worker: {
          localQueue: { size: LOCAL_QUEUE_SIZE },
          completeJobBatchDelay: COMPLETE_JOB_BATCH_DELAY,
          failJobBatchDelay: FAIL_JOB_BATCH_DELAY,
        },
      },
    });
    runner.promise.catch(settings.onError);
    return { stop: () => runner.stop() };
  },

  async remaining(client: pg.Client): Promise<number> {
    // Finished jobs are deleted; whatever is left is queued or locked.
    const res = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker._private_jobs');
    return res.rows[0]?.n ?? 0;
  },

  workerConfig(concurrency: number): Record<string, unknown> {
    return {
      concurrentJobs: concurrency,
      maxPoolSize: concurrency + 1,
      localQueue: { size: LOCAL_QUEUE_SIZE },
      completeJobBatchDelay: COMPLETE_JOB_BATCH_DELAY,
      failJobBatchDelay: FAIL_JOB_BATCH_DELAY,
      pollInterval: 2000,
      source: 'https://worker.graphile.org/docs/performance',
    };
  },

  workerConnections(concurrency: number): number {
    return concurrency + 1;
  },
};
