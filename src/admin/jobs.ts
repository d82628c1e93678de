import type pg from 'pg';
import { DEFAULT_SCHEMA, checkAge, checkInteger, checkJobId, validateName, validateSchema } from '../config.js';
import {
  ACTS_ON,
  AdminStore,
  type BulkAction,
  type JobFilter,
  type JobSummary,
  type TaskQueue,
  type TaskStats,
  type WorkerInfo,
} from '../db/adminstore.js';
import { JobStore } from '../db/jobstore.js';
import { type ConnectionOptions, type Queryable, createPool, dbErrorDescriber, describingErrors } from '../db/pool.js';
import { SkiplockError } from '../errors.js';
import type { JobRecord, JobStatus } from '../job.js';
import { type Diagnosis, diagnose } from './why.js';

export type { BulkAction, JobFilter, JobSummary, TaskQueue, TaskStats, WorkerInfo } from '../db/adminstore.js';
export type { Diagnosis, WhyReason } from './why.js';

export const JOB_STATUSES: readonly JobStatus[] = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

/** Jobs per statement of a bulk action or a prune. */
export const BULK_BATCH = 1000;
/** The largest page `list` returns. */
export const MAX_PAGE = 1000;

export interface JobsOptions extends ConnectionOptions {
  /** Use this pool instead of opening one (it is not closed by close()). */
  pool?: pg.Pool;
  /** Schema of the jobs table (default "skiplock"). */
  schema?: string;
}

/** One page of a list: the jobs, and the cursor of the next page (null: this was the last). */
export interface JobPage {
  readonly jobs: JobSummary[];
  readonly next: string | null;
}

export interface BulkOptions {
  /** Count what would change; change nothing. */
  dryRun?: boolean;
  /** Jobs per statement (default 1000). */
  batchSize?: number;
  /** After each batch: jobs changed so far, and how many the filter named at the start. */
  onProgress?: (changed: number, total: number) => void;
}

export interface BulkResult {
  /** Jobs the filter named in the statuses the action acts on, counted at the start. */
  readonly matched: number;
  /** Jobs changed (0 on a dry run). The others had moved on meanwhile, or (retry) their dedupe key was held. */
  readonly changed: number;
}

/** Ages past which finished jobs are deleted, per status (absent: that status is kept). */
export interface PruneAges {
  succeededMs?: number;
  failedMs?: number;
  cancelledMs?: number;
}

/** The result of a single-job change: the status before, and whether it changed. */
export interface JobChange {
  readonly previous: JobStatus | undefined;
  readonly changed: boolean;
}

const UNIQUE_VIOLATION = '23505';

/** Validates a filter: known statuses, valid names, a non-negative age. */
export function checkFilter(filter: JobFilter): JobFilter {
  for (const s of filter.statuses ?? []) {
    if (!JOB_STATUSES.includes(s)) throw new SkiplockError(`invalid status ${JSON.stringify(s)}: expected one of ${JOB_STATUSES.join(', ')}`);
  }
  if (filter.statuses !== undefined && filter.statuses.length === 0) throw new SkiplockError('invalid status filter: name at least one status');
  if (filter.queue !== undefined) validateName('queue', filter.queue);
  if (filter.task !== undefined) validateName('task', filter.task);
  if (filter.schedule !== undefined) validateName('schedule', filter.schedule);
  if (filter.olderThanMs !== undefined) checkAge(filter.olderThanMs, 'age');
  return filter;
}

/** The statuses an action touches under a filter: its own, narrowed by the filter's. */
export function actingStatuses(action: BulkAction, filter: JobFilter): JobStatus[] {
  const own = ACTS_ON[action];
  return filter.statuses === undefined ? [...own] : own.filter((s) => filter.statuses!.includes(s));
}

function pgCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Jobs as an operator sees them: list by filter (newest first, keyset pages that stay fast on
 * millions of rows), read one with its attempt history, change one or every job of a filter
 * (retry, cancel, delete: the transitions and fencing of the single-job forms, in batches of
 * 1000, each its own statement), prune finished jobs, statistics per queue and task, why a
 * job is not running, and the live workers. The CLI and the dashboard are built on it.
 */
export class Jobs {
  readonly schema: string;
  private readonly pool: pg.Pool;
  private readonly ownsPool: boolean;
  private readonly store: AdminStore;
  private readonly jobStore: JobStore;
  private readonly describe: (err: unknown) => Error;

  constructor(options: JobsOptions = {}) {
    this.schema = validateSchema(options.schema ?? DEFAULT_SCHEMA);
    this.describe = dbErrorDescriber(options.connectionString);
    this.ownsPool = options.pool === undefined;
    this.pool = options.pool ?? createPool({ max: 2, ...options });
    this.store = new AdminStore(this.pool, this.schema);
    this.jobStore = new JobStore(this.pool, this.schema);
  }

  /** One page of the filter's jobs, newest first; `after` is the previous page's `next`. */
  async list(filter: JobFilter = {}, page: { after?: string; limit?: number } = {}): Promise<JobPage> {
    checkFilter(filter);
    const limit = checkInteger(page.limit ?? 50, 'limit', 1, MAX_PAGE);
    const after = page.after === undefined ? undefined : checkJobId(page.after, 'cursor');
    return this.run(async () => {
      const jobs = await this.store.list(filter, after, limit);
      return { jobs, next: jobs.length === limit ? jobs[jobs.length - 1]!.id : null };
    });
  }

  /** How many jobs the filter names. */
  async count(filter: JobFilter = {}): Promise<number> {
    checkFilter(filter);
    return this.run(() => this.store.count(filter));
  }

  /** A job with its attempt history, or undefined. */
  async get(id: string): Promise<JobRecord | undefined> {
    checkJobId(id);
    return this.run(() => this.jobStore.getJob(id));
  }

  /** Deletes one job that is not running (cancel a running one first). */
  async delete(id: string): Promise<JobChange> {
    checkJobId(id);
    const row = await this.run(() => this.store.deleteJob(id));
    return { previous: row?.previous, changed: row?.changed ?? false };
  }

  /**
   * Retries, cancels or deletes every job of the filter that the action applies to (retry:
   * failed and cancelled; cancel: queued and running; delete: all but running), in batches
   * of its own statement each, newest first. Jobs that change status meanwhile are left as
   * they are: each batch locks its rows and re-checks them, as the single-job forms do.
   */
  async bulk(action: BulkAction, filter: JobFilter, options: BulkOptions = {}): Promise<BulkResult> {
    checkFilter(filter);
    const statuses = actingStatuses(action, filter);
    const batchSize = checkInteger(options.batchSize ?? BULK_BATCH, 'batch size', 1, 10_000);
    if (statuses.length === 0) return { matched: 0, changed: 0 };
    const matched = await this.run(() => this.store.count(filter, statuses));
    if (options.dryRun || matched === 0) return { matched, changed: 0 };
    let changed = 0;
    let cursor: string | undefined;
    for (;;) {
      const before = cursor;
      const batch = await this.run(() => this.batchWithRetry(action, filter, statuses, before, batchSize));
      changed += batch.changed;
      options.onProgress?.(changed, matched);
      if (batch.cursor === null || batch.seen < batchSize) break;
      cursor = batch.cursor;
    }
    return { matched, changed };
  }

  /** One batch; a retry batch that met an enqueue of the same dedupe key runs again. */
  private async batchWithRetry(action: BulkAction, filter: JobFilter, statuses: readonly string[], before: string | undefined, batchSize: number) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.store.actBatch(action, filter, statuses, before, batchSize);
      } catch (err) {
        if (action !== 'retry' || pgCode(err) !== UNIQUE_VIOLATION || attempt >= 5) throw err;
      }
    }
  }

  /**
   * Deletes finished jobs older than the given ages, oldest first, in batches (the workers'
   * pruner, on demand). Returns how many were deleted per status.
   */
  async prune(ages: PruneAges, onProgress?: (deleted: number) => void): Promise<Record<'succeeded' | 'failed' | 'cancelled', number>> {
    const groups: Array<['succeeded' | 'failed' | 'cancelled', number | undefined]> = [
      ['succeeded', ages.succeededMs],
      ['failed', ages.failedMs],
      ['cancelled', ages.cancelledMs],
    ];
    for (const [status, ms] of groups) if (ms !== undefined) checkAge(ms, `age of ${status} jobs`);
    const deleted = { succeeded: 0, failed: 0, cancelled: 0 };
    let total = 0;
    for (const [status, ms] of groups) {
      if (ms === undefined) continue;
      for (;;) {
        const rows = await this.run(() => this.jobStore.prune([status], ms, BULK_BATCH));
        deleted[status] += rows.length;
        total += rows.length;
        if (rows.length > 0) onProgress?.(total);
        if (rows.length < BULK_BATCH) break;
      }
    }
    return deleted;
  }

  /** Per queue and task: jobs by status, recent throughput and failures, wait percentiles. */
  async stats(): Promise<TaskStats[]> {
    return this.run(() => this.store.stats());
  }

  /** Why the job is where it is (undefined: no such job). */
  async why(id: string): Promise<Diagnosis | undefined> {
    checkJobId(id);
    const facts = await this.run(() => this.store.why(id));
    return facts === undefined ? undefined : diagnose(facts);
  }

  /** The workers that have a presence row: live ones first. */
  async workers(): Promise<WorkerInfo[]> {
    return this.run(() => this.store.listWorkers());
  }

  /**
   * Those of the (task, queue) pairs that no live worker takes (none of the workers' rows,
   * renewed within its ttl, handles that task on that queue): the enqueue warning. On
   * `client` when given (a caller's connection), else on the pool.
   */
  async unhandledTasks(pairs: readonly TaskQueue[], client?: Queryable): Promise<TaskQueue[]> {
    for (const p of pairs) {
      validateName('task', p.task);
      validateName('queue', p.queue);
    }
    return this.run(() => this.store.unhandledTasks(pairs, client));
  }

  /** Closes the pool if this object opened it. */
  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    return describingErrors(fn, this.describe);
  }
}
