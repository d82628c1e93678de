import type pg from 'pg';
import { validateName } from '../config.js';
import { type ScheduleInfo, ScheduleStore } from '../db/schedulestore.js';
import { describingErrors } from '../db/pool.js';
import { SkiplockError } from '../errors.js';
import { type ScheduleOptions, type ScheduleSpec, normalizeSchedule } from './schedulespec.js';
import { CronSchedule } from '../schedules/cron.js';

/** A schedule's name is not there (unschedule, pause, resume). */
export class UnknownScheduleError extends SkiplockError {
  constructor(readonly schedule: string) {
    super(`unknown schedule ${JSON.stringify(schedule)}: see skiplock schedules list`);
  }
}

/**
 * Defining schedules (producer.schedule and friends, `skiplock schedules`): every check
 * happens here, at definition (the expression, the zone, the job's options), so a scheduler
 * never meets a bad one. The first slot is computed from the database clock.
 */
export class Schedules {
  private readonly store: ScheduleStore;

  constructor(
    pool: pg.Pool,
    schema: string,
    private readonly describe: (err: unknown) => Error,
  ) {
    this.store = new ScheduleStore(pool, schema);
  }

  /**
   * Creates or redefines a schedule. Redefining it with the same expression and zone keeps its
   * place (slots due meanwhile are still caught up); a new expression or zone starts from the
   * first slot after now.
   */
  async define(spec: ScheduleSpec): Promise<{ schedule: ScheduleInfo; created: boolean }> {
    const { schedule, cron } = normalizeSchedule(spec);
    return this.run(async () => {
      const first = cron.next(await this.store.now());
      if (first === null) throw new SkiplockError(`cron expression ${JSON.stringify(spec.cron)} names no future time`);
      return this.store.upsert(schedule, first);
    });
  }

  list(): Promise<ScheduleInfo[]> {
    return this.run(() => this.store.list());
  }

  /** Deletes a schedule (its jobs already enqueued stay); UnknownScheduleError when there is none. */
  async remove(name: string): Promise<void> {
    validateName('schedule', name);
    if (!(await this.run(() => this.store.remove(name)))) throw new UnknownScheduleError(name);
  }

  /** Stops enqueuing a schedule's slots until resume(); UnknownScheduleError when there is none. */
  async pause(name: string): Promise<ScheduleInfo> {
    validateName('schedule', name);
    const found = await this.run(() => this.store.pause(name));
    if (found === undefined) throw new UnknownScheduleError(name);
    return found;
  }

  /** Resumes a paused schedule at its first slot after now (slots of the pause are not caught up). */
  async resume(name: string): Promise<ScheduleInfo> {
    validateName('schedule', name);
    const found = await this.run(async () => {
      const existing = await this.store.get(name);
      if (existing === undefined) return undefined;
      const first = new CronSchedule(existing.cron, existing.timezone).next(await this.store.now());
      return this.store.resume(name, first);
    });
    if (found === undefined) throw new UnknownScheduleError(name);
    return found;
  }

  private run<T>(fn: () => Promise<T>): Promise<T> {
    return describingErrors(fn, this.describe);
  }
}

export type { ScheduleInfo, ScheduleOptions, ScheduleSpec };
