import type pg from 'pg';
import { channelFor } from '../config.js';
import type { JobRecord, JobStatus } from '../job.js';
import type { Queryable } from './pool.js';
import { type NamedQuery, loadQueryFile } from './queries.js';

const ADMIN_QUERIES = [
  'listJobs',
  'countJobs',
  'retryBatch',
  'cancelBatch',
  'deleteBatch',
  'deleteJob',
  'stats',
  'why',
  'registerWorker',
  'touchWorker',
  'removeWorker',
  'listWorkers',
  'unhandledTasks',
] as const;
type AdminQuery = (typeof ADMIN_QUERIES)[number];

/** Which jobs an operator means; an absent field leaves its filter out. */
export interface JobFilter {
  /** Any of these statuses. */
  readonly statuses?: readonly JobStatus[];
  readonly queue?: string;
  readonly task?: string;
  /** Jobs enqueued by this schedule. */
  readonly schedule?: string;
  /** Created more than this many ms ago. */
  readonly olderThanMs?: number;
}

/** One job in a list (`jobs list`): the row without its payload; last_error cut at 300 characters. */
export type JobSummary = Pick<
  JobRecord,
  | 'id'
  | 'queue'
  | 'task'
  | 'status'
  | 'priority'
  | 'run_at'
  | 'attempts'
  | 'max_attempts'
  | 'locked_by'
  | 'last_error'
  | 'created_at'
  | 'started_at'
  | 'finished_at'
  | 'schedule_name'
>;

/** What one batch of a bulk action did. */
export interface BatchResult {
  /** The lowest id the batch looked at: the next batch starts below it (null: none left). */
  cursor: string | null;
  /** Jobs of the filter the batch looked at. */
  seen: number;
  /** Jobs it changed (the others had left the statuses it acts on meanwhile). */
  changed: number;
}

export type BulkAction = 'retry' | 'cancel' | 'delete';

/** The statuses each bulk action acts on: the same transitions as the single-job forms. */
export const ACTS_ON: Readonly<Record<BulkAction, readonly JobStatus[]>> = {
  retry: ['failed', 'cancelled'],
  cancel: ['queued', 'running'],
  delete: ['queued', 'succeeded', 'failed', 'cancelled'],
};

/** Per queue and task (`skiplock stats`); times in ms. */
export interface TaskStats {
  queue: string;
  task: string;
  queued: number;
  scheduled: number;
  running: number;
  succeeded: number;
  failed: number;
  cancelled: number;
  oldest_wait_ms: number | null;
  succeeded_1m: number;
  succeeded_1h: number;
  failed_1m: number;
  failed_1h: number;
  /** Attempts that ended in an error or an expired lease in the last hour. */
  errors_1h: number;
  started_1h: number;
  wait_p50_ms: number | null;
  wait_p95_ms: number | null;
  wait_p99_ms: number | null;
}

/** The facts `jobs why` weighs (sql/queries/admin.sql, why). */
export interface WhyFacts
  extends Pick<
    JobRecord,
    | 'id'
    | 'queue'
    | 'task'
    | 'status'
    | 'priority'
    | 'run_at'
    | 'attempts'
    | 'max_attempts'
    | 'locked_by'
    | 'lease_expires_at'
    | 'last_error'
    | 'started_at'
    | 'finished_at'
    | 'concurrency_key'
    | 'concurrency_limit'
  > {
  now: Date;
  queue_paused: boolean;
  queue_concurrency_limit: number | null;
  queue_rate_limit: number | null;
  queue_rate_window_ms: number | null;
  queue_running: number;
  queue_recent_starts: number | null;
  queue_rate_frees_at: Date | null;
  key_holders: string[] | null;
  key_running: number | null;
  live_workers: number;
  all_live_workers: number;
  due_ahead: number | null;
}

/** A task and the queue its job goes to. */
export interface TaskQueue {
  readonly task: string;
  readonly queue: string;
}

/** A worker's presence row. */
export interface WorkerPresence {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly version: string;
  readonly tasks: readonly string[];
  /** undefined: every queue. */
  readonly queues: readonly string[] | undefined;
  readonly concurrency: number;
  /** A row not renewed within this long counts as a dead worker's. */
  readonly ttlMs: number;
}

/** A worker as `workers` lists it. */
export interface WorkerInfo {
  id: string;
  host: string;
  pid: number;
  version: string;
  tasks: string[];
  queues: string[] | null;
  concurrency: number;
  started_at: Date;
  seen_at: Date;
  /** Seen within its ttl. */
  alive: boolean;
  /** Jobs it holds running now. */
  running: number;
}

/** The filter as the statements' first five values. */
function filterValues(filter: JobFilter, statuses: readonly string[] | undefined = filter.statuses): unknown[] {
  return [statuses ?? null, filter.queue ?? null, filter.task ?? null, filter.schedule ?? null, filter.olderThanMs ?? null];
}

/**
 * The statements of the admin surfaces (sql/queries/admin.sql): listing and counting jobs
 * by filter, bulk transitions in batches, statistics, the facts behind `jobs why`, and the
 * workers' presence rows. Operator statements run unnamed, so each is planned with its
 * values (a filter left out costs nothing); the workers' own ones are prepared.
 */
export class AdminStore {
  readonly channel: string;
  private readonly queries: Readonly<Record<AdminQuery, NamedQuery>>;

  constructor(
    private readonly pool: pg.Pool,
    readonly schema: string,
  ) {
    this.channel = channelFor(schema);
    this.queries = loadQueryFile('admin.sql', ADMIN_QUERIES, schema);
  }

  /** Runs a query unnamed: planned with these values. */
  private unnamed<R extends pg.QueryResultRow>(query: AdminQuery, values: unknown[], client: Queryable = this.pool): Promise<pg.QueryResult<R>> {
    return client.query<R>({ text: this.queries[query].text, values });
  }

  /** One page of jobs, newest first, before id `before` (undefined: from the newest). */
  async list(filter: JobFilter, before: string | undefined, limit: number): Promise<JobSummary[]> {
    return (await this.unnamed<JobSummary>('listJobs', [...filterValues(filter), before ?? null, limit])).rows;
  }

  /** How many jobs the filter names (of `statuses` when given: an action's). */
  async count(filter: JobFilter, statuses?: readonly string[]): Promise<number> {
    const res = await this.unnamed<{ n: string }>('countJobs', filterValues(filter, statuses));
    return Number(res.rows[0]?.n ?? 0);
  }

  /** One batch of a bulk action over the filter's jobs in `statuses` (a subset of ACTS_ON[action]). */
  async actBatch(action: BulkAction, filter: JobFilter, statuses: readonly string[], before: string | undefined, batch: number): Promise<BatchResult> {
    const query = action === 'retry' ? 'retryBatch' : action === 'cancel' ? 'cancelBatch' : 'deleteBatch';
    const values = [...filterValues(filter, statuses), before ?? null, batch, ...(action === 'retry' ? [this.channel] : [])];
    const row = (await this.unnamed<BatchResult>(query, values)).rows[0];
    return row ?? { cursor: null, seen: 0, changed: 0 };
  }

  /** Deletes one job unless it is running; undefined when there is no such job. */
  async deleteJob(id: string): Promise<{ previous: JobStatus; changed: boolean } | undefined> {
    return (await this.unnamed<{ previous: JobStatus; changed: boolean }>('deleteJob', [id])).rows[0];
  }

  async stats(): Promise<TaskStats[]> {
    return (await this.unnamed<TaskStats>('stats', [])).rows;
  }

  /** The facts behind `jobs why`; undefined when there is no such job. */
  async why(id: string): Promise<WhyFacts | undefined> {
    return (await this.unnamed<WhyFacts>('why', [id])).rows[0];
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    return (await this.unnamed<WorkerInfo>('listWorkers', [])).rows;
  }

  /** Those of the (task, queue) pairs that no live worker takes. */
  async unhandledTasks(pairs: readonly TaskQueue[], client?: Queryable): Promise<TaskQueue[]> {
    if (pairs.length === 0) return [];
    const res = await this.unnamed<TaskQueue>('unhandledTasks', [pairs.map((p) => p.task), pairs.map((p) => p.queue)], client);
    return res.rows.map(({ task, queue }) => ({ task, queue }));
  }

  // ---- the worker's own presence row (prepared: it runs every few seconds) ---------------

  private presenceValues(w: WorkerPresence): unknown[] {
    return [w.id, w.host, w.pid, w.version, w.tasks, w.queues ?? null, w.concurrency, Math.ceil(w.ttlMs)];
  }

  async registerWorker(w: WorkerPresence): Promise<void> {
    await this.pool.query({ ...this.queries.registerWorker, values: this.presenceValues(w) });
  }

  async touchWorker(w: WorkerPresence): Promise<void> {
    await this.pool.query({ ...this.queries.touchWorker, values: this.presenceValues(w) });
  }

  async removeWorker(id: string): Promise<void> {
    await this.pool.query({ ...this.queries.removeWorker, values: [id] });
  }
}
