import type pg from 'pg';
import { DEFAULT_SCHEMA, checkInteger, checkJobId, validateSchema } from '../config.js';
import { JobStore } from '../db/jobstore.js';
import { type ConnectionOptions, type Queryable, createPool, dbErrorDescriber, describingErrors } from '../db/pool.js';
import { SkiplockError } from '../errors.js';
import type { JobOptions, JobRecord, JobSpec, NormalizedJob } from '../job.js';
import { Tracing } from '../observability/tracing.js';
import { EnqueueCoalescer } from './coalescer.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, normalizeJob } from './jobspec.js';
import { type ScheduleInfo, type ScheduleOptions, Schedules } from './schedules.js';

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
  /**
   * Whether an enqueue waits until its commit is on disk before it resolves (default true).
   * `false` commits with PostgreSQL's `synchronous_commit = off` for that transaction only:
   * an enqueue resolves without waiting for the WAL flush, so if the server crashes, the
   * enqueues of its last moments (at most about three times wal_writer_delay, 0.6 s by
   * default) are lost, as if they had never been made; nothing is ever corrupted or half
   * written. Applies to the statements the producer commits itself; on your own `client`
   * your transaction decides (see EnqueueCallOptions.synchronousCommit).
   */
  synchronousCommit?: boolean;
  /**
   * OpenTelemetry spans (default true): when `@opentelemetry/api` can be loaded and an SDK is
   * registered, a PRODUCER span `send <queue>` per enqueue call, whose W3C trace context is
   * stored with its jobs so that each attempt's span links to it. With no SDK registered
   * nothing is recorded or stored.
   */
  tracing?: boolean;
}

/** Payloads up to this size (JSON text, bytes) may be handed off: the row must fit a NOTIFY payload (8000 bytes). */
const MAX_HANDOFF_PAYLOAD_BYTES = 3000;

export interface EnqueueCallOptions {
  /**
   * Run the insert on this client, e.g. inside the caller's transaction: the job then
   * commits or rolls back with it, and its wake-up is sent only at commit.
   */
  client?: Queryable;
  /**
   * `false`: commit this insert without waiting for the WAL flush (see
   * ProducerOptions.synchronousCommit). With `client`, it sets synchronous_commit off for
   * the rest of your transaction. Default: the producer's setting without `client`, the
   * server's on your `client`. A call that sets it is not merged with others.
   */
  synchronousCommit?: boolean;
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

const DEDUPE_ROUNDS = 20;
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
 * many jobs; concurrent single-job calls share statements), look jobs up, cancel and retry
 * them. Its statements are the store's (src/db/jobstore.ts); this class holds the logic
 * around them: checking, coalescing, hand-off eligibility and idempotent insert.
 */
export class Producer {
  readonly schema: string;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly store: JobStore;
  /** One line for a database error, without secrets. */
  private readonly describe: (err: unknown) => Error;
  private readonly maxPayloadBytes: number;
  private readonly coalescer: EnqueueCoalescer | undefined;
  private readonly handoff: boolean;
  private readonly tracing: Tracing | undefined;
  private schedulesApi: Schedules | undefined;

  constructor(options: ProducerOptions = {}) {
    this.schema = validateSchema(options.schema ?? DEFAULT_SCHEMA);
    this.describe = dbErrorDescriber(options.connectionString);
    this.maxPayloadBytes = checkInteger(options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES, 'maxPayloadBytes', 2, 256 * 1024 * 1024);
    this.ownsPool = options.pool === undefined;
    this.pool = options.pool ?? createPool(options);
    this.store = new JobStore(this.pool, this.schema, { synchronousCommit: options.synchronousCommit ?? true });
    this.handoff = options.handoff ?? true;
    this.tracing = Tracing.create(options.tracing ?? true);
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
    const { client, synchronousCommit, ...jobOptions } = options;
    if (client === undefined && synchronousCommit === undefined && this.coalescer !== undefined && (jobOptions.dedupeKey ?? null) === null) {
      const coalescer = this.coalescer;
      const [id] = await this.traced([this.normalize({ ...jobOptions, task, payload })], async ([job]) => [await coalescer.add(job!)]);
      return { id: id!, created: true };
    }
    const result = await this.enqueueMany([{ ...jobOptions, task, payload }], { client, synchronousCommit });
    const id = result.ids[0];
    if (id === undefined) throw new Error('enqueue returned no id');
    return { id, created: result.created[0] ?? true };
  }

  /** Enqueues many jobs in one statement (all or none) and returns their ids in order. */
  async enqueueMany(jobs: readonly JobSpec[], options: EnqueueCallOptions = {}): Promise<EnqueueResult> {
    const asyncCommit = options.synchronousCommit === undefined ? undefined : !options.synchronousCommit;
    const normalized = jobs.map((job) => this.normalize(job));
    let result: EnqueueResult | undefined;
    await this.traced(normalized, async (traced) => {
      result = await this.insertNormalized(traced, options.client, asyncCommit);
      return result.ids;
    });
    return result!;
  }

  /**
   * Runs an insert of these jobs inside the enqueue call's span when tracing records: the
   * jobs carry its trace context, and the span ends with their ids or the error.
   */
  private async traced(jobs: NormalizedJob[], insert: (jobs: NormalizedJob[]) => Promise<readonly string[]>): Promise<readonly string[]> {
    const first = jobs[0];
    const span = first === undefined ? undefined : this.tracing?.startEnqueue(first.queue, first.task, jobs.length);
    if (span === undefined) return insert(jobs);
    try {
      const ids = await insert(jobs.map((job) => ({ ...job, traceparent: span.traceparent })));
      span.end({ ids });
      return ids;
    } catch (err) {
      span.end({ error: err });
      throw err;
    }
  }

  /** Inserts jobs that normalize() already checked; `asyncCommit` undefined: the store's default. */
  private async insertNormalized(jobs: readonly NormalizedJob[], client?: Queryable, asyncCommit?: boolean): Promise<EnqueueResult> {
    if (jobs.length === 0) return { ids: [], created: [] };
    try {
      const only = jobs.length === 1 ? jobs[0] : undefined;
      if (only !== undefined && client === undefined && this.handoff && canHandOff(only)) {
        const id = await this.store.enqueueHandoff(only, asyncCommit);
        return { ids: id === undefined ? [] : [id], created: [true] };
      }
      if (jobs.every((j) => j.dedupeKey === null)) {
        const ids = await this.store.enqueue(jobs, client, asyncCommit);
        return { ids, created: ids.map(() => true) };
      }
      return await this.insertDeduplicated(jobs, client, asyncCommit);
    } catch (err) {
      throw this.describe(err);
    }
  }

  /**
   * Idempotent insert: ON CONFLICT DO NOTHING on the dedupe index, then a look-up of the
   * jobs that hold the keys; a key whose job finished between the two statements is
   * inserted again, until one side wins. Never raises a unique violation and never
   * rewrites the existing row.
   */
  private async insertDeduplicated(jobs: readonly NormalizedJob[], client: Queryable | undefined, asyncCommit: boolean | undefined): Promise<EnqueueResult> {
    const ids: Array<string | undefined> = jobs.map(() => undefined);
    const created = jobs.map(() => false);
    let pending = jobs.map((_, i) => i);
    for (let round = 0; pending.length > 0; round++) {
      if (round >= DEDUPE_ROUNDS) throw new SkiplockError('dedupe enqueue did not settle: the keyed jobs keep finishing; try again');
      const batch = pending.map((i) => jobs[i] as NormalizedJob);
      const inserted = await this.store.enqueueDedupe(batch, client, asyncCommit);
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
        const found = await this.store.findByDedupeKey(missingKeys, inserted === undefined ? undefined : client);
        for (const [key, id] of found) byKey.set(key, id);
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

  /** The job's row, or undefined. */
  async getJob(id: string, client?: Queryable): Promise<JobRecord | undefined> {
    return this.store.getJob(checkJobId(id), client).catch((err: unknown) => {
      throw this.describe(err);
    });
  }

  /**
   * queued|running -> cancelled. A running job's handler sees its AbortSignal fire at its
   * worker's next heartbeat. Of concurrent cancels of one job, exactly one reports changed.
   */
  async cancel(id: string, client?: Queryable): Promise<TransitionResult> {
    return this.transition(() => this.store.cancel(checkJobId(id), client));
  }

  /** failed|cancelled -> queued, with attempts reset, due now. */
  async retry(id: string, client?: Queryable): Promise<TransitionResult> {
    try {
      return await this.transition(() => this.store.retry(checkJobId(id), client));
    } catch (err) {
      if (pgCode((err as Error).cause) === UNIQUE_VIOLATION || pgCode(err) === UNIQUE_VIOLATION) {
        throw new SkiplockError(`cannot retry job ${id}: another job with its dedupe key is queued or running`);
      }
      throw err;
    }
  }

  private async transition(run: () => Promise<{ previous: string; changed: boolean } | undefined>): Promise<TransitionResult> {
    const row = await describingErrors(run, this.describe);
    return { changed: row?.changed ?? false, previous: row?.previous };
  }

  private get schedules(): Schedules {
    this.schedulesApi ??= new Schedules(this.pool, this.schema, this.describe);
    return this.schedulesApi;
  }

  /**
   * Creates or redefines the schedule `name`: at each slot of `cron` (5 fields, or 6 with
   * seconds first, read in options.timezone, default UTC) one job of `task` with `payload` is
   * enqueued by whichever worker gets there first. Bad expressions and zones throw here.
   * Redefining a schedule with the same expression and zone keeps its place.
   */
  async schedule(name: string, cron: string, task: string, payload?: unknown, options: ScheduleOptions = {}): Promise<ScheduleInfo> {
    return (await this.schedules.define({ ...options, name, cron, task, payload })).schedule;
  }

  /** Deletes a schedule (jobs it enqueued stay); throws UnknownScheduleError when there is none. */
  unschedule(name: string): Promise<void> {
    return this.schedules.remove(name);
  }

  /** Every schedule, by name. */
  listSchedules(): Promise<ScheduleInfo[]> {
    return this.schedules.list();
  }

  /** Pauses a schedule: no slot is enqueued until it is resumed. */
  pauseSchedule(name: string): Promise<ScheduleInfo> {
    return this.schedules.pause(name);
  }

  /** Resumes a paused schedule at its first slot after now. */
  resumeSchedule(name: string): Promise<ScheduleInfo> {
    return this.schedules.resume(name);
  }

  /** Closes the pool if this producer opened it. */
  async close(): Promise<void> {
    await this.coalescer?.idle();
    if (this.ownsPool) await this.pool.end();
  }
}
