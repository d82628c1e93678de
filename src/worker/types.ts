import type pg from 'pg';
import type { Logger } from 'pino';
import type { Job } from '../job.js';
import type { ScheduleOptions } from '../producer/schedulespec.js';
import type { BackoffOptions } from './backoff.js';

/** What a handler gets beside its payload. */
export interface TaskContext {
  readonly job: Job;
  /** Fires when the job must stop: its lease was lost, it was cancelled, or the worker is shutting down. */
  readonly signal: AbortSignal;
  /** A pino child logger bound to the job's id, task, queue and attempt. */
  readonly logger: Logger;
  /** The worker's pool, for the handler's own queries. */
  readonly pool: pg.Pool;
  /**
   * Runs `fn` in a transaction that also marks this job succeeded, fenced by the claim:
   * the handler's writes and the completion commit together, exactly once. If the lease
   * was lost (reaped, re-claimed, cancelled), everything rolls back and a JobAbortedError
   * is thrown. Call it at most once, as the handler's last step.
   */
  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
}

/** A task handler: resolve to succeed, throw or reject to fail (and maybe retry). */
export type TaskHandler<P = unknown> = (payload: P, ctx: TaskContext) => unknown;

/** Per-task settings, exported by a task module as `options`. */
export interface TaskOptions {
  /** Retry delays for this task; fields left out take the worker's. */
  backoff?: Partial<BackoffOptions>;
  /**
   * Time limit per run in ms (a job's own timeout wins). At the limit the AbortSignal
   * fires and the attempt fails (and is retried while attempts are left).
   */
  timeoutMs?: number;
}

/**
 * A recurring schedule declared with its task (`export const schedule` in a task file): a
 * cron expression, or the expression with the schedule's options. The worker creates or
 * updates it at start (a schedule named after the task unless `name` is given), so
 * schedules go through code review with their handlers.
 */
export type TaskSchedule = string | (ScheduleOptions & { cron: string; name?: string; payload?: unknown });

export interface TaskDefinition<P = unknown> {
  handler: TaskHandler<P>;
  options?: TaskOptions;
  /** A schedule of this task, created or updated when the worker starts. */
  schedule?: TaskSchedule;
}

/**
 * Handlers by task name. Each handler declares its own payload type, so the list holds them
 * as taking `never`: the worker hands each the payload stored with its job.
 */
export type TaskList = Readonly<Record<string, TaskHandler<never> | TaskDefinition<never>>>;
