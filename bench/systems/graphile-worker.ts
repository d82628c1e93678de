import { Logger, type Runner, type WorkerUtils, makeWorkerUtils, run, runMigrations } from 'graphile-worker';
import type pg from 'pg';
import { BACKLOG_INDEX, type BacklogKind, type Payload } from '../lib/common.js';
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
      async enqueueBacklog(kind: BacklogKind, count: number): Promise<Backlog> {
        // `queue`: graphile-worker has no per-worker choice of queues (a worker runs every
        // job of the tasks it has handlers for; a named queue only makes its jobs run one at
        // a time). So the backlog goes to a named queue of the same task whose lock is held,
        // as when another worker is running its head job (the "stuck jobs in named queues"
        // case graphile-worker's get_jobs comments benchmark); the benchmark's own jobs stay
        // without a queue name, as in every other scenario. With the queue unlocked, each
        // fetch of 500 comes back with its one head job (one job per named queue per fetch),
        // the worker takes backlog jobs one at a time and the drain crawls (bench/README.md).
        const spec = kind === 'queue' ? { identifier: TASK, queueName: BACKLOG_QUEUE } : { identifier: BACKLOG_TASK };
        let lastId = 0n;
        for (let done = 0; done < count; done += BACKLOG_CHUNK) {
          const n = Math.min(BACKLOG_CHUNK, count - done);
          const jobs = await utils.addJobs(Array.from({ length: n }, () => ({ ...spec, payload: { i: BACKLOG_INDEX, t: 0 } })));
          for (const job of jobs) if (BigInt(job.id) > lastId) lastId = BigInt(job.id);
        }
        if (kind === 'queue') {
          // What get_jobs does when it takes a named queue's job (set locked_at, locked_by);
          // a worker resets such locks only after 4 hours.
          await utils.withPgClient((client) =>
            client.query("UPDATE graphile_worker._private_job_queues SET locked_at = now(), locked_by = 'bench: another worker' WHERE queue_name = $1", [
              BACKLOG_QUEUE,
            ]),
          );
        }
        const placement =
          kind === 'queue'
            ? `identifier ${TASK} with queueName ${BACKLOG_QUEUE}, that queue locked as by another worker running its head job (graphile-worker cannot keep a worker off a queue); own jobs without a queue name`
            : `identifier ${BACKLOG_TASK} (no handler in the worker's taskList), no queue name, like the own jobs`;
        return { kind, jobs: count, placement, lastId: lastId.toString() };
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

  async remaining(client: pg.Client, backlog?: Backlog): Promise<number> {
    // Finished jobs are deleted; whatever is left is queued or locked.
    if (backlog === undefined) {
      const res = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker._private_jobs');
      return res.rows[0]?.n ?? 0;
    }
    // Own jobs only: they were all added after the backlog, so their ids are higher (a range
    // of the primary key; no index of graphile-worker's covers locked jobs by queue or task).
    if (backlog.lastId === undefined) throw new Error('graphile-worker: the backlog has no last id');
    const res = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM graphile_worker._private_jobs WHERE id > $1', [backlog.lastId]);
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
