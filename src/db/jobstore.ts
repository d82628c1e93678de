import type pg from 'pg';
import type { Job } from '../worker/types.js';
import type { Queryable } from './pool.js';
import type { Queries } from './queries.js';

/** A claimed job with the fencing token its later writes must match. */
export interface ClaimedJob {
  readonly job: ClaimedJobRecord;
  readonly token: string;
}

/**
 * A row of the claim query, as an array (rowMode 'array': no object per row to build from
 * field names), in the column order of sql/queries/jobs.sql, claim.
 */
export type ClaimRow = [
  id: string,
  queue: string,
  task: string,
  payload: unknown,
  priority: number,
  attempts: number,
  maxAttempts: number,
  leaseToken: string,
  timeoutMs: number | null,
  dedupeKey: string | null,
  concurrencyKey: string | null,
  runAtMs: number,
  createdAtMs: number,
  startedAtMs: number,
];

export interface ReapedRow {
  id: string;
  queue: string;
  task: string;
  attempts: number;
  status: 'queued' | 'failed';
}

/**
 * An array literal of ids or lease tokens, written directly: ids are digits and tokens are
 * uuids from the database, so neither needs quoting (cheaper than pg's generic array encoder).
 */
function arrayLiteral<T>(items: readonly T[], field: (item: T) => string): string {
  let text = '{';
  for (let i = 0; i < items.length; i++) text += (i === 0 ? '' : ',') + field(items[i]!);
  return `${text}}`;
}

/** Ids from a bigint[] sent as text ("{1,2,3}"). */
function parseIdArray(text: string | null | undefined): string[] {
  return text && text.length > 2 ? text.slice(1, -1).split(',') : [];
}

const idArray = (claims: ReadonlyArray<{ id: string }>): string => arrayLiteral(claims, (c) => c.id);
const tokenArray = (claims: ReadonlyArray<{ token: string }>): string => arrayLiteral(claims, (c) => c.token);

/** A claimed job; its Dates are made on first use (a busy worker's handlers rarely read them). */
export class ClaimedJobRecord implements Job {
  readonly id: string;
  readonly queue: string;
  readonly task: string;
  readonly payload: unknown;
  readonly priority: number;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly timeoutMs: number | null;
  readonly dedupeKey: string | null;
  readonly concurrencyKey: string | null;
  /** run_at, created_at and started_at in epoch ms (database clock). */
  readonly runAtMs: number;
  readonly createdAtMs: number;
  readonly startedAtMs: number;
  private dates: { runAt: Date; createdAt: Date; startedAt: Date } | undefined;

  constructor(row: ClaimRow) {
    this.id = row[0];
    this.queue = row[1];
    this.task = row[2];
    this.payload = row[3];
    this.priority = row[4];
    this.attempt = row[5];
    this.maxAttempts = row[6];
    this.timeoutMs = row[8];
    this.dedupeKey = row[9];
    this.concurrencyKey = row[10];
    this.runAtMs = row[11];
    this.createdAtMs = row[12];
    this.startedAtMs = row[13];
  }

  private get times(): { runAt: Date; createdAt: Date; startedAt: Date } {
    this.dates ??= { runAt: new Date(this.runAtMs), createdAt: new Date(this.createdAtMs), startedAt: new Date(this.startedAtMs) };
    return this.dates;
  }

  get runAt(): Date {
    return this.times.runAt;
  }

  get createdAt(): Date {
    return this.times.createdAt;
  }

  get startedAt(): Date {
    return this.times.startedAt;
  }

  /** The job as a plain object (for JSON and logs). */
  toJSON(): Job {
    const { id, queue, task, payload, priority, runAt, attempt, maxAttempts, createdAt, startedAt, timeoutMs, dedupeKey, concurrencyKey } = this;
    return { id, queue, task, payload, priority, runAt, attempt, maxAttempts, createdAt, startedAt, timeoutMs, dedupeKey, concurrencyKey };
  }
}

/**
 * Every statement the worker runs on the jobs table. Writes after the claim are fenced:
 * they match the job's id, its lease token and status = 'running', and report whether
 * they changed anything.
 */
export class JobStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly queries: Queries,
    /** Delete succeeded jobs when recording their success instead of keeping them. */
    private readonly deleteSucceeded = false,
    /** The schema's shared NOTIFY channel (jobs handed back to the queue wake idle workers). */
    private readonly channel = '',
  ) {}

  /** Claims up to `limit` due jobs of the given tasks (and queues) in one statement. */
  async claim(params: {
    tasks: readonly string[];
    queues: readonly string[] | undefined;
    limit: number;
    leaseMs: number;
    workerId: string;
  }): Promise<ClaimedJob[]> {
    const res = await this.pool.query<ClaimRow>({
      ...this.queries.claim,
      rowMode: 'array',
      values: [params.tasks, params.queues ?? null, params.limit, params.leaseMs, params.workerId],
    });
    return res.rows.map((row) => ({ token: row[7], job: new ClaimedJobRecord(row) }));
  }

  /**
   * Marks a job succeeded; false when the lease was no longer ours. On `client` it joins
   * that client's transaction, so the handler's writes and the completion commit together.
   */
  async complete(id: string, token: string, client: Queryable = this.pool): Promise<boolean> {
    const query = this.deleteSucceeded ? this.queries.deleteCompleted : this.queries.complete;
    const res = await client.query({ ...query, values: [id, token] });
    return res.rowCount === 1;
  }

  /**
   * Records many successes in one statement (marked succeeded, or deleted when this store
   * keeps no succeeded jobs), each fenced by its token. Returns whether a job was written:
   * a job that was not was no longer ours.
   */
  async completeMany(claims: ReadonlyArray<{ id: string; token: string }>): Promise<(id: string) => boolean> {
    const query = this.deleteSucceeded ? this.queries.deleteCompletedMany : this.queries.completeMany;
    // Unprepared on purpose: planned for the actual arrays, the token check is hashed
    // (see sql/queries/jobs.sql, completeMany). One row comes back, not one per job.
    const res = await this.pool.query<{ written: number; ids: string | null }>({
      text: query.text,
      values: [idArray(claims), tokenArray(claims)],
    });
    const row = res.rows[0];
    if (row !== undefined && row.written === claims.length) return () => true;
    const written = new Set(parseIdArray(row?.ids));
    return (id) => written.has(id);
  }

  /**
   * Deletes up to `limit` jobs in these statuses that finished more than `olderThanMs` ago.
   * Returns the status of each job deleted.
   */
  async prune(statuses: readonly string[], olderThanMs: number, limit: number): Promise<string[]> {
    const res = await this.pool.query<{ status: string }>({ ...this.queries.prune, values: [statuses, olderThanMs, limit] });
    return res.rows.map((r) => r.status);
  }

  /**
   * Records a failed attempt: requeued after `retryDelayMs` while attempts are left, else
   * failed. Returns the new status, or undefined when the lease was no longer ours.
   */
  async fail(id: string, token: string, retryDelayMs: number, error: string): Promise<'queued' | 'failed' | undefined> {
    const res = await this.pool.query<{ status: 'queued' | 'failed' }>({
      ...this.queries.fail,
      values: [id, token, retryDelayMs, error],
    });
    return res.rows[0]?.status;
  }

  /**
   * Records many results in one statement, each fenced by its token. Returns the new status
   * of every job written; a job missing from the map was no longer ours.
   */
  async finishMany(
    results: ReadonlyArray<{ id: string; token: string; ok: boolean; delayMs: number; error: string | null }>,
  ): Promise<Map<string, 'succeeded' | 'queued' | 'failed'>> {
    const res = await this.pool.query<{ id: string; status: 'succeeded' | 'queued' | 'failed' }>({
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
  async renew(claims: ReadonlyArray<{ id: string; token: string }>, leaseMs: number): Promise<Map<string, string | undefined>> {
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

  /**
   * Offers `slots` hand-off slots for this worker until `ttlMs` from now (see
   * sql/queries/jobs.sql, registerWaiter). Returns the slots the row offers afterwards.
   */
  async registerWaiter(waiter: {
    workerId: string;
    channel: string;
    tasks: readonly string[];
    queues: readonly string[] | undefined;
    leaseMs: number;
    slots: number;
    ttlMs: number;
    received: number;
  }): Promise<number> {
    const res = await this.pool.query<{ slots: number }>({
      ...this.queries.registerWaiter,
      values: [waiter.workerId, waiter.channel, waiter.tasks, waiter.queues ?? null, waiter.leaseMs, waiter.slots, waiter.ttlMs, waiter.received],
    });
    return res.rows[0]?.slots ?? 0;
  }

  /** Takes this worker's hand-off offer back (slots = 0). */
  async withdrawWaiter(workerId: string): Promise<void> {
    await this.pool.query({ ...this.queries.withdrawWaiter, values: [workerId] });
  }

  /** Deletes this worker's waiter row (shutdown). */
  async dropWaiter(workerId: string): Promise<void> {
    await this.pool.query({ ...this.queries.dropWaiter, values: [workerId] });
  }

  /** Jobs handed to this worker that it does not know (their notification was lost). */
  async adoptHandoffs(workerId: string, known: readonly string[]): Promise<ClaimedJob[]> {
    const res = await this.pool.query<ClaimRow>({
      ...this.queries.adoptHandoffs,
      rowMode: 'array',
      values: [workerId, `{${known.join(',')}}`],
    });
    return res.rows.map((row) => ({ token: row[7], job: new ClaimedJobRecord(row) }));
  }

  /**
   * Hands back to the queue every running job claimed for this worker that it does not know
   * (hand-offs whose notification never arrived). Returns their ids.
   */
  async handBackUnknown(workerId: string, known: readonly string[]): Promise<string[]> {
    const res = await this.pool.query<{ ids: string }>({
      ...this.queries.handBackUnknown,
      values: [workerId, `{${known.join(',')}}`, this.channel],
    });
    return parseIdArray(res.rows[0]?.ids);
  }

  /** Puts unfinished claims back to queued at once; returns the ids handed back. */
  async handBack(claims: ReadonlyArray<{ id: string; token: string }>): Promise<Set<string>> {
    if (claims.length === 0) return new Set();
    const res = await this.pool.query<{ ids: string }>({
      ...this.queries.handBack,
      values: [idArray(claims), tokenArray(claims), this.channel],
    });
    return new Set(parseIdArray(res.rows[0]?.ids));
  }

  /** Requeues or fails up to `limit` jobs whose lease expired. */
  async reap(limit: number): Promise<ReapedRow[]> {
    const res = await this.pool.query<ReapedRow>({ ...this.queries.reap, values: [limit] });
    return res.rows;
  }

  /** A job's status now (undefined if there is no such job). */
  async statusOf(id: string): Promise<string | undefined> {
    const res = await this.pool.query<{ status: string }>({ ...this.queries.getJob, values: [id] });
    return res.rows[0]?.status;
  }

  async queueDepth(): Promise<Array<{ queue: string; status: string; jobs: number }>> {
    const res = await this.pool.query<{ queue: string; status: string; jobs: string }>({ ...this.queries.queueDepth, values: [] });
    return res.rows.map((r) => ({ queue: r.queue, status: r.status, jobs: Number(r.jobs) }));
  }
}
