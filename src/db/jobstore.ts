import type pg from 'pg';
import { channelFor } from '../config.js';
import { type AttemptRecord, ClaimedJob, type ClaimedRow, type JobRecord, type NormalizedJob } from '../job.js';
import { idArray, idList, parseIdArray, tokenArray } from './arrays.js';
import type { Queryable } from './pool.js';
import { type Queries, loadQueries } from './queries.js';

/** A claim's identity for fenced writes: the job and the lease token its writes must match. */
export interface Claim {
  readonly id: string;
  readonly token: string;
}

/** A result to record: success, or a failure retried after delayMs while attempts are left. */
export interface Result extends Claim {
  readonly ok: boolean;
  readonly delayMs: number;
  readonly error: string | null;
}

/** A job's status after its result was recorded. */
export type FinishedStatus = 'succeeded' | 'queued' | 'failed';

export interface ReapedRow {
  id: string;
  queue: string;
  task: string;
  attempts: number;
  status: 'queued' | 'failed';
}

export interface Waiter {
  workerId: string;
  channel: string;
  tasks: readonly string[];
  queues: readonly string[] | undefined;
  leaseMs: number;
  slots: number;
  ttlMs: number;
  received: number;
}

export interface TransitionRow {
  previous: string;
  changed: boolean;
}

export interface JobStoreOptions {
  /** Delete succeeded jobs in the statement that records their success (retention 0). */
  deleteSucceeded?: boolean;
  /**
   * Whether enqueues this store commits itself wait for their WAL to reach disk (default
   * true). Enqueues on a caller's client follow the caller's choice (see enqueue's `asyncCommit`).
   */
  synchronousCommit?: boolean;
}

/** Result batches up to this size are written by a prepared statement (see completeMany). */
const PREPARED_BATCH = 32;

const SERIALIZATION_FAILURE = '40001';
const NO_ACTIVE_TRANSACTION = '25P01';

function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** getJob's row: the columns of JobRecord, with the stored part of the history. */
type JobRow = Omit<JobRecord, 'attempt_history'> & { attempt_log: AttemptRecord[] };

/**
 * The whole record of a job: the stored history (attempts that ended badly), then the
 * attempt that is running or that succeeded, read off the row.
 */
export function jobRecord(row: JobRow): JobRecord {
  const { attempt_log: log, ...rest } = row;
  const history = [...log];
  if ((row.status === 'running' || row.status === 'succeeded') && row.attempts > 0) {
    history.push({
      attempt: row.attempts,
      worker: row.locked_by,
      started_at: row.started_at?.toISOString() ?? null,
      ended_at: row.status === 'succeeded' ? (row.finished_at?.toISOString() ?? null) : null,
      outcome: row.status,
      error: null,
      retry_at: null,
    });
  }
  return { ...rest, attempt_history: history };
}

const claimedJobs = (rows: ClaimedRow[]): ClaimedJob[] => rows.map((row) => new ClaimedJob(row));

/** Claim order: priority, run_at, id (ids are int8 as text: shorter is smaller). */
function claimOrder(a: ClaimedJob, b: ClaimedJob): number {
  return a.priority - b.priority || a.runAtMs - b.runAtMs || a.id.length - b.id.length || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/**
 * The claim's rows in claim order, the order the worker starts them in. The claim's UPDATE
 * returns them as it finds them (by id), which is claim order already in a FIFO queue of
 * one priority: then this is one pass; otherwise a sort of the batch (cheaper here than an
 * ORDER BY in the claim, whose plan then went wrong).
 */
function inClaimOrder(jobs: ClaimedJob[]): ClaimedJob[] {
  for (let i = 1; i < jobs.length; i++) {
    if (claimOrder(jobs[i - 1]!, jobs[i]!) > 0) return jobs.sort(claimOrder);
  }
  return jobs;
}

/**
 * Every statement skiplock runs on its tables, for producers, workers, maintenance and the
 * CLI alike: the one place where SQL (sql/queries/jobs.sql) meets the pool. Writes after a
 * claim are fenced: they match the job's id, its lease token and status = 'running', and
 * report whether they changed anything. Errors are passed on as the driver raised them.
 */
export class JobStore {
  readonly schema: string;
  /** The schema's shared NOTIFY channel: enqueues and hand-backs wake idle workers on it. */
  readonly channel: string;
  private readonly queries: Queries;
  private readonly deleteSucceeded: boolean;
  private readonly synchronousCommit: boolean;

  constructor(
    private readonly pool: pg.Pool,
    schema: string,
    options: JobStoreOptions = {},
  ) {
    this.schema = schema;
    this.channel = channelFor(schema);
    this.queries = loadQueries(schema);
    this.deleteSucceeded = options.deleteSucceeded ?? false;
    this.synchronousCommit = options.synchronousCommit ?? true;
  }

  /**
   * The enqueue statements' commit mode parameter: 'off' for an asynchronous commit, NULL
   * for the server's setting. On a caller's client only the caller decides (asyncCommit),
   * since the setting then holds for the caller's whole transaction.
   */
  private commitMode(client: Queryable | undefined, asyncCommit: boolean | undefined): string | null {
    const async = asyncCommit ?? (client === undefined && !this.synchronousCommit);
    return async ? 'off' : null;
  }

  // ---- enqueue -------------------------------------------------------------------------

  /**
   * Inserts jobs without dedupe keys in one statement (one NOTIFY); ids in input order.
   * `asyncCommit`: commit without waiting for the WAL flush (default: the store's setting,
   * or the server's on a caller's client).
   */
  async enqueue(jobs: readonly NormalizedJob[], client?: Queryable, asyncCommit?: boolean): Promise<string[]> {
    const res = await (client ?? this.pool).query<{ ids: string[] }>({
      ...this.queries.enqueue,
      values: [...this.columns(jobs), this.commitMode(client, asyncCommit), jobs.map((j) => j.traceparent)],
    });
    return res.rows[0]?.ids ?? [];
  }

  /**
   * Inserts one due job, handed straight to an idle worker when one waits (see
   * sql/queries/jobs.sql, enqueueHandoff). Returns its id.
   */
  async enqueueHandoff(job: NormalizedJob, asyncCommit?: boolean): Promise<string | undefined> {
    const res = await this.pool.query<{ id: string }>({
      ...this.queries.enqueueHandoff,
      values: [
        job.queue,
        job.task,
        job.payload,
        job.priority,
        job.maxAttempts,
        job.timeoutMs,
        this.channel,
        this.commitMode(undefined, asyncCommit),
        job.traceparent,
      ],
    });
    return res.rows[0]?.id;
  }

  /**
   * One idempotent insert statement: jobs whose dedupe key is taken are skipped. Returns the
   * rows inserted, in input order. On a caller's client it runs under a savepoint, so that a
   * serialization failure (REPEATABLE READ: the key's holder committed after the caller's
   * snapshot) leaves the caller's transaction usable; it then returns undefined.
   */
  async enqueueDedupe(
    jobs: readonly NormalizedJob[],
    client?: Queryable,
    asyncCommit?: boolean,
  ): Promise<Array<{ id: string; key: string | null }> | undefined> {
    const query = {
      ...this.queries.enqueueDedupe,
      values: [...this.columns(jobs), jobs.map((j) => j.dedupeKey), this.commitMode(client, asyncCommit), jobs.map((j) => j.traceparent)],
    };
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

  /** The queued or running job holding each of these dedupe keys, by key. */
  async findByDedupeKey(keys: readonly string[], client: Queryable = this.pool): Promise<Map<string, string>> {
    const res = await client.query<{ id: string; dedupe_key: string }>({ ...this.queries.findByDedupeKey, values: [keys] });
    return new Map(res.rows.map((r) => [r.dedupe_key, r.id]));
  }

  /** The enqueue statements' column arrays, then the channel. */
  private columns(jobs: readonly NormalizedJob[]): unknown[] {
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

  // ---- one job: look-up and operator transitions ----------------------------------------

  /** The job's row, or undefined. */
  async getJob(id: string, client: Queryable = this.pool): Promise<JobRecord | undefined> {
    const res = await client.query<JobRow>({ ...this.queries.getJob, values: [id] });
    const row = res.rows[0];
    return row === undefined ? undefined : jobRecord(row);
  }

  /** A job's status now (undefined if there is no such job). */
  async statusOf(id: string): Promise<string | undefined> {
    return (await this.getJob(id))?.status;
  }

  /** queued|running -> cancelled; undefined when there is no such job. */
  async cancel(id: string, client: Queryable = this.pool): Promise<TransitionRow | undefined> {
    return (await client.query<TransitionRow>({ ...this.queries.cancel, values: [id] })).rows[0];
  }

  /** failed|cancelled -> queued, attempts reset, due now; undefined when there is no such job. */
  async retry(id: string, client: Queryable = this.pool): Promise<TransitionRow | undefined> {
    return (await client.query<TransitionRow>({ ...this.queries.retry, values: [id, this.channel] })).rows[0];
  }

  // ---- the claim and a claim's fenced writes ---------------------------------------------

  /**
   * Claims up to `limit` due jobs of the given tasks (and queues) in one statement; a queue
   * with a limit gives at most `free` of them (the slots that could start a job now).
   */
  async claim(params: {
    tasks: readonly string[];
    queues: readonly string[] | undefined;
    limit: number;
    free: number;
    leaseMs: number;
    workerId: string;
  }): Promise<ClaimedJob[]> {
    const res = await this.pool.query<ClaimedRow>({
      ...this.queries.claim,
      values: [params.tasks, params.queues ?? null, params.limit, Math.max(0, params.free), params.leaseMs, params.workerId],
    });
    return inClaimOrder(claimedJobs(res.rows));
  }

  /**
   * Marks a job succeeded (or deletes it, with retention 0); false when the lease was no
   * longer ours. On `client` it joins that client's transaction (ctx.transaction).
   */
  async complete(claim: Claim, client: Queryable = this.pool): Promise<boolean> {
    const query = this.deleteSucceeded ? this.queries.deleteCompleted : this.queries.complete;
    const res = await client.query({ ...query, values: [claim.id, claim.token] });
    return res.rowCount === 1;
  }

  /**
   * Records many successes in one statement, each fenced by its token. Returns whether a job
   * was written: a job that was not was no longer ours.
   */
  async completeMany(claims: readonly Claim[]): Promise<(id: string) => boolean> {
    const query = this.deleteSucceeded ? this.queries.deleteCompletedMany : this.queries.completeMany;
    // A large batch runs unprepared: planned for the actual arrays, the token check is hashed
    // (see sql/queries/jobs.sql, completeMany). A small one (many worker processes each
    // write a few results at a time) runs prepared: planning would cost more than the
    // generic plan's token comparisons (at most PREPARED_BATCH^2). One row comes back.
    const values = [idArray(claims), tokenArray(claims)];
    const res = await this.pool.query<{ written: number; ids: string | null }>(
      claims.length <= PREPARED_BATCH ? { ...query, values } : { text: query.text, values },
    );
    const row = res.rows[0];
    if (row !== undefined && row.written === claims.length) return () => true;
    const written = new Set(parseIdArray(row?.ids));
    return (id) => written.has(id);
  }

  /** Records many results in one statement, each fenced by its token: the new status of every job written. */
  async finishMany(results: readonly Result[]): Promise<Map<string, FinishedStatus>> {
    const res = await this.pool.query<{ id: string; status: FinishedStatus }>({
      ...this.queries.finishMany,
      values: [
        results.map((r) => r.id),
        results.map((r) => r.token),
        results.map((r) => r.ok),
        results.map((r) => r.delayMs),
        results.map((r) => r.error),
      ],
    });
    return new Map(res.rows.map((r) => [r.id, r.status]));
  }

  /**
   * Renews the leases of these claims in one statement. Returns the jobs no longer held,
   * each with its status now (e.g. 'cancelled'; undefined if the row is gone).
   */
  async renew(claims: readonly Claim[], leaseMs: number): Promise<Map<string, string | undefined>> {
    const lost = new Map<string, string | undefined>();
    if (claims.length === 0) return lost;
    const sorted = [...claims].sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
    const res = await this.pool.query<{ id: string; held: boolean; status: string | null }>({
      ...this.queries.heartbeat,
      values: [idArray(sorted), tokenArray(sorted), leaseMs],
    });
    for (const row of res.rows) if (!row.held) lost.set(row.id, row.status ?? undefined);
    return lost;
  }

  /** Puts unfinished claims back to queued at once (no attempt used up); returns the ids handed back. */
  async handBack(claims: readonly Claim[]): Promise<Set<string>> {
    if (claims.length === 0) return new Set();
    const res = await this.pool.query<{ ids: string }>({ ...this.queries.handBack, values: [idArray(claims), tokenArray(claims), this.channel] });
    return new Set(parseIdArray(res.rows[0]?.ids));
  }

  // ---- hand-off waiters (sql/migrations/0006_handoff.sql) ----------------------------------

  /** Offers hand-off slots for this worker until ttlMs from now; returns the slots the row offers afterwards. */
  async registerWaiter(w: Waiter): Promise<number> {
    const res = await this.pool.query<{ slots: number }>({
      ...this.queries.registerWaiter,
      values: [w.workerId, w.channel, w.tasks, w.queues ?? null, w.leaseMs, w.slots, w.ttlMs, w.received],
    });
    return res.rows[0]?.slots ?? 0;
  }

  /** Takes this worker's hand-off offer back (slots = 0); returns how many hand-offs its row has made (undefined: no row). */
  async withdrawWaiter(workerId: string): Promise<number | undefined> {
    const res = await this.pool.query<{ handed: string }>({ ...this.queries.withdrawWaiter, values: [workerId] });
    const handed = res.rows[0]?.handed;
    return handed === undefined ? undefined : Number(handed);
  }

  /** Deletes this worker's waiter row (shutdown). */
  async dropWaiter(workerId: string): Promise<void> {
    await this.pool.query({ ...this.queries.dropWaiter, values: [workerId] });
  }

  /** Jobs handed to this worker that it does not know (their notification was lost). */
  async adoptHandoffs(workerId: string, known: readonly string[]): Promise<ClaimedJob[]> {
    const res = await this.pool.query<ClaimedRow>({ ...this.queries.adoptHandoffs, values: [workerId, idList(known)] });
    return claimedJobs(res.rows);
  }

  /** Hands back every running job claimed for this worker that it does not know; returns their ids. */
  async handBackUnknown(workerId: string, known: readonly string[]): Promise<string[]> {
    const res = await this.pool.query<{ ids: string }>({ ...this.queries.handBackUnknown, values: [workerId, idList(known), this.channel] });
    return parseIdArray(res.rows[0]?.ids);
  }

  // ---- maintenance -----------------------------------------------------------------------

  /** Requeues or fails up to `limit` jobs whose lease expired. */
  async reap(limit: number): Promise<ReapedRow[]> {
    return (await this.pool.query<ReapedRow>({ ...this.queries.reap, values: [limit] })).rows;
  }

  /** Deletes up to `limit` jobs in these statuses that finished more than olderThanMs ago; the status of each deleted. */
  async prune(statuses: readonly string[], olderThanMs: number, limit: number): Promise<string[]> {
    const res = await this.pool.query<{ status: string }>({ ...this.queries.prune, values: [statuses, olderThanMs, limit] });
    return res.rows.map((r) => r.status);
  }
}
