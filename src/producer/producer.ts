import type pg from 'pg';
import { DEFAULT_SCHEMA, channelFor, checkInteger, validateSchema } from '../config.js';
import { type ConnectionOptions, type Queryable, createPool, describeDbError } from '../db/pool.js';
import { type Queries, loadQueries } from '../db/queries.js';
import { SkiplockError } from '../errors.js';
import { EnqueueCoalescer } from './coalescer.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, type JobOptions, type JobSpec, type NormalizedJob, normalizeJob } from './jobspec.js';

export interface ProducerOptions extends ConnectionOptions {
  /** Use this pool instead of opening one (it is not closed by close()). */
  pool?: pg.Pool;
  /** Schema of the jobs table (default "skiplock"). */
  schema?: string;
  /** Largest payload JSON accepted, in bytes (default 1 MiB). */
  maxPayloadBytes?: number;
  /**
   * Merge enqueue() calls made at once (without a client or dedupe key) into one INSERT
   * (default true). Each call still gets its own id, committed when it resolves.
   */
  coalesce?: boolean;
  /**
   * Hand a single due job straight to an idle worker when one waits (default true): it is
   * inserted already claimed for that worker, which starts it without a claim round trip.
   * Jobs with a delay, a dedupe or concurrency key, a large payload, or inserted on the
   * caller's client are always queued.
   */
  handoff?: boolean;
}

/** Payloads up to this size (JSON text, bytes) may be handed off: the row must fit a NOTIFY payload (8000 bytes). */
const MAX_HANDOFF_PAYLOAD_BYTES = 3000;

export interface EnqueueCallOptions {
  /**
   * Run the insert on this client, e.g. inside the caller's transaction: the job then
   * commits or rolls back with it, and its wake-up is sent only at commit.
   */
  client?: Queryable;
}

export interface EnqueuedJob {
  id: string;
  /** false when a job with the same dedupe key was already queued or running: id is that job's. */
  created: boolean;
}

export interface EnqueueResult {
  /** Job ids (int8 as text), in input order. */
  ids: string[];
  /** Per input: whether a new job was inserted (false: deduplicated onto an existing one). */
  created: boolean[];
}

export interface TransitionResult {
  /** Whether this call changed the job. */
  changed: boolean;
  /** The job's status before the call; undefined when there is no such job. */
  previous: string | undefined;
}

export interface JobRecord {
  id: string;
  queue: string;
  task: string;
  payload: unknown;
  status: 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  priority: number;
  run_at: Date;
  attempts: number;
  max_attempts: number;
  lease_expires_at: Date | null;
  locked_by: string | null;
  last_error: string | null;
  created_at: Date;
  started_at: Date | null;
  finished_at: Date | null;
  dedupe_key: string | null;
  concurrency_key: string | null;
  concurrency_limit: number | null;
  timeout_ms: number | null;
}

const DEDUPE_ROUNDS = 20;
const SERIALIZATION_FAILURE = '40001';
const NO_ACTIVE_TRANSACTION = '25P01';
const UNIQUE_VIOLATION = '23505';

/** Whether a job may be handed straight to an idle worker (see ProducerOptions.handoff). */
function canHandOff(job: NormalizedJob): boolean {
  return (
    job.dedupeKey === null &&
    job.concurrencyKey === null &&
    job.runAt === null &&
    job.delayMs === 0 &&
    Buffer.byteLength(job.payload) <= MAX_HANDOFF_PAYLOAD_BYTES
  );
}

function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The client side of the queue: enqueue (one statement and one NOTIFY per call, however
 * many jobs; concurrent single-job calls share statements), look jobs up, cancel and retry them.
 */
export class Producer {
  readonly schema: string;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly queries: Queries;
  private readonly channel: string;
  private readonly connectionString: string | undefined;
  private readonly maxPayloadBytes: number;
  private readonly coalescer: EnqueueCoalescer | undefined;
  private readonly handoff: boolean;

  constructor(options: ProducerOptions = {}) {
    this.schema = validateSchema(options.schema ?? DEFAULT_SCHEMA);
    this.queries = loadQueries(this.schema);
    this.channel = channelFor(this.schema);
    this.connectionString = options.connectionString;
    this.maxPayloadBytes = checkInteger(options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES, 'maxPayloadBytes', 2, 256 * 1024 * 1024);
    this.ownsPool = options.pool === undefined;
    this.pool = options.pool ?? createPool(options);
    this.handoff = options.handoff ?? true;
    if (options.coalesce ?? true) {
      this.coalescer = new EnqueueCoalescer(async (jobs) => (await this.insertNormalized(jobs)).ids);
    }
  }

  /** Checks a job spec against this producer's limits (throws SkiplockError). */
  normalize(spec: JobSpec): NormalizedJob {
    return normalizeJob(spec, { maxPayloadBytes: this.maxPayloadBytes });
  }

  /** Enqueues one job; with a dedupeKey already queued or running, returns that job instead. */
  async enqueue(task: string, payload?: unknown, options: JobOptions & EnqueueCallOptions = {}): Promise<EnqueuedJob> {
    const { client, ...jobOptions } = options;
    if (client === undefined && this.coalescer !== undefined && (jobOptions.dedupeKey ?? null) === null) {
      const job = this.normalize({ ...jobOptions, task, payload });
      return { id: await this.coalescer.add(job), created: true };
    }
    const result = await this.enqueueMany([{ ...jobOptions, task, payload }], { client });
    const id = result.ids[0];
    if (id === undefined) throw new Error('enqueue returned no id');
    return { id, created: result.created[0] ?? true };
  }

  /** Enqueues many jobs in one statement (all or none) and returns their ids in order. */
  async enqueueMany(jobs: readonly JobSpec[], options: EnqueueCallOptions = {}): Promise<EnqueueResult> {
    return this.insertNormalized(
      jobs.map((job) => this.normalize(job)),
      options.client,
    );
  }

  /** Inserts jobs that normalize() already checked. */
  async insertNormalized(jobs: readonly NormalizedJob[], client?: Queryable): Promise<EnqueueResult> {
    if (jobs.length === 0) return { ids: [], created: [] };
    try {
      const only = jobs.length === 1 ? jobs[0] : undefined;
      if (only !== undefined && client === undefined && this.handoff && canHandOff(only)) {
        const res = await this.pool.query<{ id: string }>({
          ...this.queries.enqueueHandoff,
          values: [only.queue, only.task, only.payload, only.priority, only.maxAttempts, only.timeoutMs, this.channel],
        });
        const id = res.rows[0]?.id;
        return { ids: id === undefined ? [] : [id], created: [true] };
      }
      if (jobs.every((j) => j.dedupeKey === null)) {
        const res = await (client ?? this.pool).query<{ ids: string[] }>({ ...this.queries.enqueue, values: this.values(jobs) });
        const ids = res.rows[0]?.ids ?? [];
        return { ids, created: ids.map(() => true) };
      }
      return await this.insertDeduplicated(jobs, client);
    } catch (err) {
      throw describeDbError(err, this.connectionString);
    }
  }

  private values(jobs: readonly NormalizedJob[]): unknown[] {
    return [
      jobs.map((j) => j.queue),
      jobs.map((j) => j.task),
      jobs.map((j) => j.payload),
      jobs.map((j) => j.priority),
      jobs.map((j) => j.runAt),
      jobs.map((j) => j.delayMs),
      jobs.map((j) => j.maxAttempts),
      jobs.map((j) => j.concurrencyKey),
      jobs.map((j) => j.concurrencyLimit),
      jobs.map((j) => j.timeoutMs),
      this.channel,
    ];
  }

  /**
   * Idempotent insert: ON CONFLICT DO NOTHING on the dedupe index, then a look-up of the
   * jobs that hold the keys; a key whose job finished between the two statements is
   * inserted again, until one side wins. Never raises a unique violation and never
   * rewrites the existing row.
   */
  private async insertDeduplicated(jobs: readonly NormalizedJob[], client: Queryable | undefined): Promise<EnqueueResult> {
    const ids: Array<string | undefined> = jobs.map(() => undefined);
    const created = jobs.map(() => false);
    let pending = jobs.map((_, i) => i);
    for (let round = 0; pending.length > 0; round++) {
      if (round >= DEDUPE_ROUNDS) throw new SkiplockError('dedupe enqueue did not settle: the keyed jobs keep finishing; try again');
      const batch = pending.map((i) => jobs[i] as NormalizedJob);
      const inserted = await this.tryInsert(batch, client);
      const byKey = new Map<string, string>();
      const unresolved: number[] = [];
      let next = 0;
      if (inserted !== undefined) {
        // Inserted rows come back in input order; walk both lists together.
        pending.forEach((i, n) => {
          const job = batch[n] as NormalizedJob;
          const row = inserted[next];
          if (row !== undefined && row.key === job.dedupeKey && (job.dedupeKey === null || !byKey.has(job.dedupeKey))) {
            ids[i] = row.id;
            created[i] = true;
            if (job.dedupeKey !== null) byKey.set(job.dedupeKey, row.id);
            next += 1;
          } else {
            unresolved.push(i);
          }
        });
      } else {
        unresolved.push(...pending);
      }
      const missingKeys = [...new Set(unresolved.map((i) => jobs[i]?.dedupeKey).filter((k): k is string => !!k && !byKey.has(k)))];
      if (missingKeys.length > 0) {
        // After a serialization failure (caller's REPEATABLE READ snapshot cannot see the
        // holder) read through our own pool, which sees what is committed now.
        const reader = inserted === undefined ? this.pool : (client ?? this.pool);
        const found = await reader.query<{ id: string; dedupe_key: string }>({ ...this.queries.findByDedupeKey, values: [missingKeys] });
        for (const row of found.rows) byKey.set(row.dedupe_key, row.id);
      }
      pending = [];
      for (const i of unresolved) {
        const key = jobs[i]?.dedupeKey;
        const holder = key ? byKey.get(key) : undefined;
        if (holder !== undefined) ids[i] = holder;
        else pending.push(i);
      }
    }
    return { ids: ids.map((id) => id ?? ''), created };
  }

  /**
   * One enqueueDedupe statement. On a caller's client it runs under a savepoint, so that
   * a serialization failure (REPEATABLE READ: the key's holder committed after the caller's
   * snapshot) leaves the caller's transaction usable; it then returns undefined.
   */
  private async tryInsert(
    batch: readonly NormalizedJob[],
    client: Queryable | undefined,
  ): Promise<Array<{ id: string; key: string | null }> | undefined> {
    const query = { ...this.queries.enqueueDedupe, values: [...this.values(batch), batch.map((j) => j.dedupeKey)] };
    const read = (res: pg.QueryResult<{ ids: string[]; keys: Array<string | null> }>) => {
      const row = res.rows[0];
      return (row?.ids ?? []).map((id, n) => ({ id, key: row?.keys[n] ?? null }));
    };
    if (client === undefined) return read(await this.pool.query(query));
    let savepoint = true;
    try {
      await client.query({ text: 'SAVEPOINT skiplock_enqueue' });
    } catch (err) {
      if (pgCode(err) !== NO_ACTIVE_TRANSACTION) throw err;
      savepoint = false; // autocommit client: nothing to protect
    }
    try {
      const res = read(await client.query(query));
      if (savepoint) await client.query({ text: 'RELEASE SAVEPOINT skiplock_enqueue' });
      return res;
    } catch (err) {
      if (!savepoint) throw err;
      await client.query({ text: 'ROLLBACK TO SAVEPOINT skiplock_enqueue' });
      await client.query({ text: 'RELEASE SAVEPOINT skiplock_enqueue' });
      if (pgCode(err) === SERIALIZATION_FAILURE) return undefined;
      throw err;
    }
  }

  /** The job's row, or undefined. */
  async getJob(id: string, client?: Queryable): Promise<JobRecord | undefined> {
    const res = await (client ?? this.pool).query<JobRecord>({ ...this.queries.getJob, values: [id] }).catch((err: unknown) => {
      throw describeDbError(err, this.connectionString);
    });
    return res.rows[0];
  }

  /**
   * queued|running -> cancelled. A running job's handler sees its AbortSignal fire at its
   * worker's next heartbeat. Of concurrent cancels of one job, exactly one reports changed.
   */
  async cancel(id: string, client?: Queryable): Promise<TransitionResult> {
    return this.transition('cancel', [id], client);
  }

  /** failed|cancelled -> queued, with attempts reset, due now. */
  async retry(id: string, client?: Queryable): Promise<TransitionResult> {
    try {
      return await this.transition('retry', [id, this.channel], client);
    } catch (err) {
      if (pgCode((err as Error).cause) === UNIQUE_VIOLATION || pgCode(err) === UNIQUE_VIOLATION) {
        throw new SkiplockError(`cannot retry job ${id}: another job with its dedupe key is queued or running`);
      }
      throw err;
    }
  }

  private async transition(name: 'cancel' | 'retry', values: unknown[], client?: Queryable): Promise<TransitionResult> {
    if (!/^\d{1,19}$/.test(String(values[0]))) throw new SkiplockError(`invalid job id ${JSON.stringify(values[0])}`);
    try {
      const res = await (client ?? this.pool).query<{ previous: string; changed: boolean }>({ ...this.queries[name], values });
      const row = res.rows[0];
      return { changed: row?.changed ?? false, previous: row?.previous };
    } catch (err) {
      throw describeDbError(err, this.connectionString);
    }
  }

  /** Closes the pool if this producer opened it. */
  async close(): Promise<void> {
    await this.coalescer?.idle();
    if (this.ownsPool) await this.pool.end();
  }
}
