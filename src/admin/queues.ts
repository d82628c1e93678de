import type pg from 'pg';
import { DEFAULT_SCHEMA, type RateLimit, checkInteger, checkRateLimit, validateName, validateSchema } from '../config.js';
import { type ConnectionOptions, createPool, dbErrorDescriber, describingErrors } from '../db/pool.js';
import { type QueueChange, type QueueInfo, type QueueSettings, QueueStore } from '../db/queuestore.js';
import { SkiplockError } from '../errors.js';

export type { QueueInfo, QueueSettings } from '../db/queuestore.js';

export interface QueuesOptions extends ConnectionOptions {
  /** Use this pool instead of opening one (it is not closed by close()). */
  pool?: pg.Pool;
  /** Schema of the jobs table (default "skiplock"). */
  schema?: string;
}

/** Limits of a queue, across every worker; null clears one, an absent field stays as it is. */
export interface QueueLimits {
  /** At most this many of the queue's jobs running (claimed) at once. */
  concurrencyLimit?: number | null;
  /** At most `limit` jobs started (claimed) in any `windowMs`. */
  rateLimit?: RateLimit | null;
}

export interface QueueCreateOptions {
  /**
   * Configure a queue that has no jobs and no settings yet (default false: such a name is
   * refused as unknown, so that a typo cannot pause or limit a queue nobody uses).
   */
  create?: boolean;
}

/** A queue name with no jobs and no settings, without `create`. */
export class UnknownQueueError extends SkiplockError {
  constructor(readonly queue: string) {
    super(`unknown queue ${JSON.stringify(queue)}: it has no jobs and no settings (pass create to configure it before its first job)`);
  }
}

/**
 * Queues as objects: list them with their jobs by status, pause and resume them, and limit
 * how many of their jobs run at once or start per window, across every worker. Settings
 * live in the database (the queues table); workers learn of a change at once by NOTIFY and
 * at their next poll at the latest.
 *
 * - pause: no claim takes the queue's jobs once pause() has returned, and no job of it is
 *   handed off; a worker hands its buffered jobs of the queue back (not yet started) when it
 *   hears of the pause. Running jobs finish. Enqueues still succeed.
 * - concurrencyLimit: at most N of the queue's jobs running (claimed: a job is running
 *   from its claim to its result), whatever the number of workers.
 * - rateLimit: at most N of the queue's jobs claimed in any window of the given length.
 */
export class Queues {
  readonly schema: string;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly store: QueueStore;
  private readonly describe: (err: unknown) => Error;

  constructor(options: QueuesOptions = {}) {
    this.schema = validateSchema(options.schema ?? DEFAULT_SCHEMA);
    this.describe = dbErrorDescriber(options.connectionString);
    this.ownsPool = options.pool === undefined;
    this.pool = options.pool ?? createPool({ max: 2, ...options });
    this.store = new QueueStore(this.pool, this.schema);
  }

  /** Every queue with jobs or settings, its jobs by status and its oldest due job's wait. */
  list(): Promise<QueueInfo[]> {
    return this.run(() => this.store.list());
  }

  /** The settings of every queue that has a row (it was paused, resumed or limited once). */
  settings(): Promise<QueueSettings[]> {
    return this.run(() => this.store.settings());
  }

  /** Pauses a queue: no more claims or hand-offs of its jobs; running jobs finish. */
  async pause(queue: string, options: QueueCreateOptions = {}): Promise<QueueSettings> {
    return this.change(queue, { paused: true }, options.create ?? false);
  }

  /** Resumes a paused queue (workers claim its jobs at once). */
  async resume(queue: string): Promise<QueueSettings> {
    return this.change(queue, { paused: false }, false);
  }

  /** Sets or clears a queue's limits (see QueueLimits). */
  async setLimits(queue: string, limits: QueueLimits, options: QueueCreateOptions = {}): Promise<QueueSettings> {
    const { concurrencyLimit, rateLimit } = limits;
    if (concurrencyLimit === undefined && rateLimit === undefined) throw new SkiplockError('no limit given: set concurrencyLimit or rateLimit (null clears one)');
    return this.change(
      queue,
      {
        ...(concurrencyLimit !== undefined && { concurrencyLimit: concurrencyLimit === null ? null : checkInteger(concurrencyLimit, 'concurrency limit', 1, 2 ** 31 - 1) }),
        ...(rateLimit !== undefined && { rateLimit: rateLimit === null ? null : checkRateLimit(rateLimit) }),
      },
      options.create ?? false,
    );
  }

  /** Closes the pool if this object opened it. */
  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }

  private async change(queue: string, change: QueueChange, create: boolean): Promise<QueueSettings> {
    validateName('queue', queue);
    return this.run(async () => {
      if (!create && !(await this.store.known(queue))) throw new UnknownQueueError(queue);
      return this.store.change(queue, change);
    });
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    return describingErrors(fn, this.describe);
  }
}
