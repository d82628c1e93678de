import { checkInteger, validateName } from '../config.js';
import { SkiplockError } from '../errors.js';
import type { JobOptions } from '../job.js';
import { CATCH_UP_POLICIES, type CatchUp, CronSchedule, MAX_COUNTED } from '../schedules/cron.js';
import { normalizeJob } from './jobspec.js';

/** How a schedule's jobs are made and what it does after downtime (producer.schedule). */
export interface ScheduleOptions extends Pick<JobOptions, 'queue' | 'priority' | 'maxAttempts' | 'concurrencyKey' | 'concurrencyLimit' | 'timeout'> {
  /** IANA time zone the expression is read in (default "UTC"). */
  timezone?: string;
  /**
   * Slots missed while no worker ran (late by more than 10 s): "latest" (default) enqueues
   * the most recent one once, "none" none, "all" each of them, up to maxCatchUp.
   */
  catchUp?: CatchUp;
  /** With catchUp "all": at most this many missed slots, the most recent (default 100, at most 1000). */
  maxCatchUp?: number;
}

/** A schedule as a caller defines it. */
export interface ScheduleSpec extends ScheduleOptions {
  name: string;
  /** 5 fields (minute hour day-of-month month day-of-week) or 6 (seconds first), or a nickname such as @hourly. */
  cron: string;
  task: string;
  payload?: unknown;
}

/** A checked schedule, as the upsert statement takes it. */
export interface NormalizedSchedule {
  name: string;
  cron: string;
  timezone: string;
  task: string;
  /** JSON text. */
  payload: string;
  queue: string;
  priority: number;
  maxAttempts: number;
  timeoutMs: number | null;
  concurrencyKey: string | null;
  concurrencyLimit: number | null;
  catchUp: CatchUp;
  maxCatchUp: number;
}

const KNOWN_FIELDS = new Set([
  'name',
  'cron',
  'task',
  'payload',
  'timezone',
  'catchUp',
  'maxCatchUp',
  'queue',
  'priority',
  'maxAttempts',
  'concurrencyKey',
  'concurrencyLimit',
  'timeout',
]);

/** Checks a schedule (expression, zone, job options) at definition time; throws SkiplockError when it is bad. */
export function normalizeSchedule(spec: ScheduleSpec): { schedule: NormalizedSchedule; cron: CronSchedule } {
  if (spec === null || typeof spec !== 'object') throw new SkiplockError('a schedule must be an object');
  for (const key of Object.keys(spec)) {
    if (!KNOWN_FIELDS.has(key)) throw new SkiplockError(`unknown schedule field ${JSON.stringify(key)}`);
  }
  const name = validateName('schedule', spec.name);
  if (typeof spec.cron !== 'string') throw new SkiplockError('a schedule needs a cron expression');
  const cron = new CronSchedule(spec.cron, spec.timezone ?? 'UTC');
  const catchUp = spec.catchUp ?? 'latest';
  if (!CATCH_UP_POLICIES.includes(catchUp)) {
    throw new SkiplockError(`invalid catch-up policy ${JSON.stringify(catchUp)}: expected ${CATCH_UP_POLICIES.join(', ')}`);
  }
  if (spec.maxCatchUp !== undefined && catchUp !== 'all') throw new SkiplockError('maxCatchUp goes with catchUp "all"');
  const maxCatchUp = checkInteger(spec.maxCatchUp ?? 100, 'maxCatchUp', 1, MAX_COUNTED);
  const { task, payload, queue, priority, maxAttempts, timeoutMs, concurrencyKey, concurrencyLimit } = normalizeJob({
    task: spec.task,
    payload: spec.payload,
    ...(spec.queue !== undefined ? { queue: spec.queue } : {}),
    ...(spec.priority !== undefined ? { priority: spec.priority } : {}),
    ...(spec.maxAttempts !== undefined ? { maxAttempts: spec.maxAttempts } : {}),
    ...(spec.concurrencyKey !== undefined ? { concurrencyKey: spec.concurrencyKey } : {}),
    ...(spec.concurrencyLimit !== undefined ? { concurrencyLimit: spec.concurrencyLimit } : {}),
    ...(spec.timeout !== undefined ? { timeout: spec.timeout } : {}),
  });
  return {
    schedule: {
      name,
      cron: cron.expression.trim(),
      timezone: cron.timezone,
      task,
      payload,
      queue,
      priority,
      maxAttempts,
      timeoutMs,
      concurrencyKey,
      concurrencyLimit,
      catchUp,
      maxCatchUp,
    },
    cron,
  };
}
