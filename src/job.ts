/**
 * The shapes of a job, from the producer's input to the row an operator reads. Every layer
 * (producer, store, worker, CLI) takes its job types from here:
 *
 *   JobSpec ──normalizeJob──▶ NormalizedJob ──insert──▶ row ──claim / hand-off──▶ ClaimedJob
 *   (what a caller asks for)  (statement values)              (what a handler sees: Job)
 *
 * and JobRecord is the whole row, as `jobs show` and getJob() return it.
 */

/** Options of one enqueued job. */
export interface JobOptions {
  /** Queue name (default "default"). */
  queue?: string;
  /** Lower runs first (default 0); a 32-bit integer. */
  priority?: number;
  /** When the job may run: a Date or an ISO 8601 text. Exclusive with delay. */
  runAt?: Date | string;
  /** Run no sooner than this long after enqueue, by the database clock: ms or "30s", "5m". */
  delay?: number | string;
  /** Attempts before the job is failed (default 25). */
  maxAttempts?: number;
  /**
   * Idempotency key: while a job with this key is queued or running, enqueueing the key
   * again returns that job's id (created: false) and inserts nothing.
   */
  dedupeKey?: string;
  /** At most concurrencyLimit jobs with this key run at once, across all workers. */
  concurrencyKey?: string;
  /** With concurrencyKey: how many may run at once (default 1). */
  concurrencyLimit?: number;
  /** Run time limit for this job (ms or "30s"); overrides the task's timeout. */
  timeout?: number | string;
}

/** One job as a caller asks for it (enqueue, bulk enqueue, a line of `enqueue --stdin`). */
export interface JobSpec extends JobOptions {
  task: string;
  payload?: unknown;
}

/** A checked job, ready for the enqueue statement's arrays (see normalizeJob). */
export interface NormalizedJob {
  queue: string;
  task: string;
  /** JSON text. */
  payload: string;
  priority: number;
  runAt: Date | null;
  delayMs: number;
  maxAttempts: number;
  dedupeKey: string | null;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  timeoutMs: number | null;
  /** W3C trace context of the enqueue's span (set by the producer when tracing records). */
  traceparent: string | null;
}

/** A claimed job as a handler sees it (ctx.job). */
export interface Job<P = unknown> {
  readonly id: string;
  readonly queue: string;
  readonly task: string;
  readonly payload: P;
  readonly priority: number;
  readonly runAt: Date;
  /** 1 on the first run, 2 on the first retry, ... */
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly createdAt: Date;
  readonly startedAt: Date;
  /** This job's own time limit in ms, if it has one. */
  readonly timeoutMs: number | null;
  readonly dedupeKey: string | null;
  readonly concurrencyKey: string | null;
  /** The schedule that enqueued this job, and for which slot; null for other jobs. */
  readonly schedule: ScheduledSlot | null;
}

/** What a job enqueued by a schedule knows of it (ctx.job.schedule). */
export interface ScheduledSlot {
  /** The schedule's name. */
  readonly name: string;
  /** The slot (the time the cron expression named) this job is for. */
  readonly slot: Date;
  /**
   * A catch-up run: enqueued more than LATE_SLOT_MS after its slot (no worker was running
   * then, or the schedule was evaluated late), not on time.
   */
  readonly late: boolean;
}

/**
 * A slot enqueued more than this long after its time is late: a catch-up run after
 * downtime. Schedulers evaluate every second, so an on-time slot is enqueued well within it.
 */
export const LATE_SLOT_MS = 10_000;

export type JobStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** A whole row of the jobs table (getJob, `skiplock jobs show`). */
export interface JobRecord {
  id: string;
  queue: string;
  task: string;
  payload: unknown;
  status: JobStatus;
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
  schedule_name: string | null;
  schedule_slot: Date | null;
  /**
   * The job's attempts, oldest first: the last 10 that ended badly (an error, an expired
   * lease, a cancel while running), then the one running now or the one that succeeded.
   */
  attempt_history: AttemptRecord[];
}

/** How an attempt ended (AttemptRecord.outcome); `running`: it has not ended yet. */
export type AttemptOutcome = 'error' | 'lease_expired' | 'cancelled' | 'succeeded' | 'running';

/** One attempt of a job (JobRecord.attempt_history); times as ISO 8601 texts. */
export interface AttemptRecord {
  /** 1 for the first run; counting starts again after a manual retry. */
  attempt: number;
  /** The worker that ran it (jobs.locked_by). */
  worker: string | null;
  started_at: string | null;
  /** null while it runs. */
  ended_at: string | null;
  outcome: AttemptOutcome;
  /** The handler's error (error), or why the attempt ended (lease_expired). */
  error: string | null;
  /** When the job was due again after it (null: not retried, failed for good). */
  retry_at: string | null;
}

/**
 * A claimed row as the database sends it, made by the one SQL function
 * sql/functions/claimed_job.sql for the claim, the hand-off (as JSON) and the adoption of
 * lost hand-offs alike; its columns are these fields. Times are epoch milliseconds by the
 * database clock.
 */
export interface ClaimedRow {
  id: string;
  queue: string;
  task: string;
  payload: unknown;
  priority: number;
  attempt: number;
  maxAttempts: number;
  /** The claim's lease token: every later write of the job must match it. */
  token: string;
  timeoutMs: number | null;
  dedupeKey: string | null;
  concurrencyKey: string | null;
  runAtMs: number;
  createdAtMs: number;
  startedAtMs: number;
  scheduleName: string | null;
  scheduleSlotMs: number | null;
  /** The enqueue's W3C trace context, when it was traced. */
  traceparent: string | null;
}

/** A job this worker holds a claim on: the handler's Job plus the claim's fencing token. */
export class ClaimedJob implements Job {
  readonly id: string;
  readonly queue: string;
  readonly task: string;
  readonly payload: unknown;
  readonly priority: number;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly token: string;
  readonly timeoutMs: number | null;
  readonly dedupeKey: string | null;
  readonly concurrencyKey: string | null;
  readonly runAtMs: number;
  readonly createdAtMs: number;
  readonly startedAtMs: number;
  readonly scheduleName: string | null;
  readonly scheduleSlotMs: number | null;
  readonly traceparent: string | null;
  // Dates are made on first use: a busy worker's handlers rarely read them.
  private dates: { runAt: Date; createdAt: Date; startedAt: Date } | undefined;

  constructor(row: ClaimedRow) {
    this.id = row.id;
    this.queue = row.queue;
    this.task = row.task;
    this.payload = row.payload;
    this.priority = row.priority;
    this.attempt = row.attempt;
    this.maxAttempts = row.maxAttempts;
    this.token = row.token;
    this.timeoutMs = row.timeoutMs;
    this.dedupeKey = row.dedupeKey;
    this.concurrencyKey = row.concurrencyKey;
    this.runAtMs = row.runAtMs;
    this.createdAtMs = row.createdAtMs;
    this.startedAtMs = row.startedAtMs;
    this.scheduleName = row.scheduleName ?? null;
    this.scheduleSlotMs = row.scheduleSlotMs ?? null;
    this.traceparent = row.traceparent ?? null;
  }

  get schedule(): ScheduledSlot | null {
    if (this.scheduleName === null || this.scheduleSlotMs === null) return null;
    // whole milliseconds, as the scheduler's clock (a Date) when it planned the slot
    const late = Math.floor(this.createdAtMs) - this.scheduleSlotMs > LATE_SLOT_MS;
    return { name: this.scheduleName, slot: new Date(this.scheduleSlotMs), late };
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

  /** The job as a handler's plain object (for JSON and logs): no token. */
  toJSON(): Job {
    const { id, queue, task, payload, priority, runAt, attempt, maxAttempts, createdAt, startedAt, timeoutMs, dedupeKey, concurrencyKey, schedule } = this;
    return { id, queue, task, payload, priority, runAt, attempt, maxAttempts, createdAt, startedAt, timeoutMs, dedupeKey, concurrencyKey, schedule };
  }
}

const isText = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number';
const isTextOrNull = (v: unknown): boolean => v === null || isText(v);

/**
 * A claimed row received from outside the claim statement (a hand-off notification), checked
 * field by field; undefined when the value is not one.
 */
export function parseClaimedRow(value: unknown): ClaimedJob | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const r = value as Record<keyof ClaimedRow, unknown>;
  const ok =
    isText(r.id) &&
    /^\d{1,19}$/.test(r.id) &&
    isText(r.queue) &&
    isText(r.task) &&
    'payload' in r &&
    isNumber(r.priority) &&
    isNumber(r.attempt) &&
    isNumber(r.maxAttempts) &&
    isText(r.token) &&
    (r.timeoutMs === null || isNumber(r.timeoutMs)) &&
    isTextOrNull(r.dedupeKey) &&
    isTextOrNull(r.concurrencyKey) &&
    isNumber(r.runAtMs) &&
    isNumber(r.createdAtMs) &&
    isNumber(r.startedAtMs) &&
    // absent in a notification from a worker of an older version
    (r.scheduleName === undefined || isTextOrNull(r.scheduleName)) &&
    (r.scheduleSlotMs === undefined || r.scheduleSlotMs === null || isNumber(r.scheduleSlotMs)) &&
    (r.traceparent === undefined || isTextOrNull(r.traceparent));
  return ok ? new ClaimedJob(r as ClaimedRow) : undefined;
}
