import type pg from 'pg';
import { DEFAULT_SCHEMA, channelFor, validateSchema } from '../config.js';
import { type ConnectionOptions, type Queryable, createPool, describeDbError } from '../db/pool.js';
import { type Queries, loadQueries } from '../db/queries.js';
import { type JobOptions, type JobSpec, type NormalizedJob, normalizeJob } from './jobspec.js';

export interface ProducerOptions extends ConnectionOptions {
  /** Use this pool instead of opening one (it is not closed by close()). */
  pool?: pg.Pool;
  /** Schema of the jobs table (default "skiplock"). */
  schema?: string;
}

export interface EnqueueCallOptions {
  /**
   * Run the insert on this client, e.g. inside the caller's transaction: the job then
   * commits or rolls back with it, and its wake-up is sent only at commit.
   */
  client?: Queryable;
}

export interface EnqueueResult {
  /** Job ids (int8 as text), in input order. */
  ids: string[];
}

/** Enqueues jobs: one INSERT ... SELECT FROM unnest(...) and one NOTIFY per call. */
export class Producer {
  readonly schema: string;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly queries: Queries;
  private readonly channel: string;
  private readonly connectionString: string | undefined;

  constructor(options: ProducerOptions = {}) {
    this.schema = validateSchema(options.schema ?? DEFAULT_SCHEMA);
    this.queries = loadQueries(this.schema);
    this.channel = channelFor(this.schema);
    this.connectionString = options.connectionString;
    this.ownsPool = options.pool === undefined;
    this.pool = options.pool ?? createPool(options);
  }

  /** Enqueues one job and returns its id. */
  async enqueue(task: string, payload?: unknown, options: JobOptions & EnqueueCallOptions = {}): Promise<string> {
    const { client, ...jobOptions } = options;
    const { ids } = await this.enqueueMany([{ ...jobOptions, task, payload }], { client });
    const id = ids[0];
    if (id === undefined) throw new Error('enqueue returned no id');
    return id;
  }

  /** Enqueues many jobs in one statement (all or none) and returns their ids in order. */
  async enqueueMany(jobs: readonly JobSpec[], options: EnqueueCallOptions = {}): Promise<EnqueueResult> {
    const normalized = jobs.map(normalizeJob);
    return this.insertNormalized(normalized, options.client);
  }

  /** Inserts jobs that normalizeJob already checked. */
  async insertNormalized(jobs: readonly NormalizedJob[], client?: Queryable): Promise<EnqueueResult> {
    if (jobs.length === 0) return { ids: [] };
    const values = [
      jobs.map((j) => j.queue),
      jobs.map((j) => j.task),
      jobs.map((j) => j.payload),
      jobs.map((j) => j.priority),
      jobs.map((j) => j.runAt),
      jobs.map((j) => j.delayMs),
      jobs.map((j) => j.maxAttempts),
      this.channel,
    ];
    const db: Queryable = client ?? this.pool;
    try {
      const res = await db.query<{ ids: string[] }>({ ...this.queries.enqueue, values });
      return { ids: res.rows[0]?.ids ?? [] };
    } catch (err) {
      throw describeDbError(err, this.connectionString);
    }
  }

  /** Closes the pool if this producer opened it. */
  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }
}
