import { Cron } from 'croner';
import { SkiplockError, errorMessage } from '../errors.js';
import { LATE_SLOT_MS } from '../job.js';

/**
 * The slot arithmetic of schedules, pure functions of a cron expression, a time zone and
 * instants given by the caller (the database clock: nothing here reads the local clock).
 * Parsing, time zones and daylight saving are croner's: on a spring-forward day a time in
 * the skipped hour fires at the first instant after the gap (a daily 02:30 in Europe/Berlin
 * runs at 03:00 CEST), and on a fall-back day a time in the repeated hour fires once, in
 * its first pass (02:30 CEST), for expressions that name the hour.
 */

/** What to do with slots that were missed (see planSlots). */
export type CatchUp = 'latest' | 'none' | 'all';
export const CATCH_UP_POLICIES: readonly CatchUp[] = ['latest', 'none', 'all'];

/** A checked cron expression in its time zone. */
export class CronSchedule {
  private readonly cron: Cron;

  /** Throws SkiplockError for an expression croner rejects, a field count other than 5 or 6, or an unknown zone. */
  constructor(
    readonly expression: string,
    readonly timezone: string,
  ) {
    checkTimezone(timezone);
    const text = expression.trim();
    const fields = text.split(/\s+/).length;
    if (!text.startsWith('@') && fields !== 5 && fields !== 6) {
      throw new SkiplockError(
        `invalid cron expression ${JSON.stringify(expression)}: expected 5 fields (minute hour day month weekday) or 6 (with seconds first), got ${fields}`,
      );
    }
    try {
      this.cron = new Cron(text, { timezone, paused: true });
      // croner checks some things only when it computes a run
      this.cron.nextRun(new Date(0));
    } catch (err) {
      throw new SkiplockError(`invalid cron expression ${JSON.stringify(expression)}: ${errorMessage(err).replace(/^CronPattern: /, '')}`);
    }
  }

  /** The first slot strictly after `after`; null when the expression has no more. */
  next(after: Date): Date | null {
    return this.cron.nextRun(after);
  }

  /** Up to `limit` slots in [from, to], oldest first. */
  between(from: Date, to: Date, limit: number): Date[] {
    const out: Date[] = [];
    let slot = this.cron.nextRun(new Date(from.getTime() - 1));
    while (slot !== null && slot.getTime() <= to.getTime() && out.length < limit) {
      out.push(slot);
      slot = this.cron.nextRun(slot);
    }
    return out;
  }

  /** The latest `count` slots in [from, to], oldest first (found backwards, so a long gap costs nothing). */
  latest(from: Date, to: Date, count: number): Date[] {
    // previousRuns gives slots before its reference; one second on, then filter, covers a slot exactly at `to`.
    const runs = this.cron.previousRuns(count + 1, new Date(to.getTime() + 1000));
    return runs
      .filter((d) => d.getTime() <= to.getTime() && d.getTime() >= from.getTime())
      .slice(0, count)
      .reverse();
  }
}

/** Throws SkiplockError unless `timezone` is an IANA zone this Node.js knows (or UTC). */
export function checkTimezone(timezone: string): string {
  if (typeof timezone !== 'string' || timezone === '') throw new SkiplockError('invalid time zone: expected an IANA name such as Europe/Berlin');
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  } catch {
    throw new SkiplockError(`unknown time zone ${JSON.stringify(timezone)}: expected an IANA name such as Europe/Berlin or UTC`);
  }
  return timezone;
}

/** What one evaluation of a due schedule does. */
export interface SlotPlan {
  /** Slots to enqueue now, oldest first (one job each). */
  readonly fire: Date[];
  /** Due slots left out by the catch-up policy (at least; a long gap is not counted past MAX_COUNTED). */
  readonly skipped: number;
  /** The schedule's next slot after `now` (null: the expression has no more). */
  readonly next: Date | null;
}

/** Late slots counted one by one for `skipped`; a longer gap reports this many. */
export const MAX_COUNTED = 10_000;

/**
 * The slots a schedule whose next slot is `nextSlot` enqueues at `now` (database time).
 * Due slots are those in [nextSlot, now]. A slot is late when `now` is more than
 * LATE_SLOT_MS past it (the workers were down, or could not reach the database); the others
 * are on time and always enqueued. Late slots follow the policy: `all` enqueues the most
 * recent `maxCatchUp` of them, `latest` the most recent one unless an on-time slot is
 * enqueued anyway, `none` none.
 */
export function planSlots(schedule: CronSchedule, nextSlot: Date, now: Date, catchUp: CatchUp, maxCatchUp: number): SlotPlan {
  const next = schedule.next(now);
  if (nextSlot.getTime() > now.getTime()) return { fire: [], skipped: 0, next: nextSlot };
  const lateEnd = new Date(now.getTime() - LATE_SLOT_MS);
  const onTimeFrom = new Date(Math.max(nextSlot.getTime(), lateEnd.getTime() + 1));
  const onTime = schedule.between(onTimeFrom, now, MAX_COUNTED);
  let late: Date[] = [];
  let lateCount = 0;
  if (nextSlot.getTime() <= lateEnd.getTime()) {
    lateCount = schedule.between(nextSlot, lateEnd, MAX_COUNTED).length;
    const keep = catchUp === 'all' ? maxCatchUp : catchUp === 'latest' && onTime.length === 0 ? 1 : 0;
    if (keep > 0) late = schedule.latest(nextSlot, lateEnd, keep);
  }
  return { fire: [...late, ...onTime], skipped: lateCount - late.length, next };
}
