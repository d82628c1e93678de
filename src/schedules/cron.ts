import { Cron } from 'croner';
import { SkiplockError, errorMessage } from '../errors.js';
import { LATE_SLOT_MS } from '../job.js';

/**
 * The slot arithmetic of schedules, pure functions of a cron expression, a time zone and
 * instants given by the caller (the database clock: nothing here reads the local clock).
 * Parsing, time zones and daylight saving are croner's. An expression with one value in each
 * of its second, minute and hour fields (a fixed time of day, such as `30 2 * * *`) fires
 * once on each day: on a spring-forward day a time in the skipped hour fires at the first
 * instant after the gap (03:00 CEST for 02:30 in Europe/Berlin), and on a fall-back day a
 * time in the repeated hour fires in its first pass only. Any other expression (`0,30 2 * * *`,
 * `30 2,14 * * *`) has no slot in the skipped hour and fires in both passes of the repeated
 * one. test/unit/cron.test.ts pins these instants.
 */

/** Field ranges, for errors (croner's own messages count days and months from 0). */
const FIELD_RANGES: Record<string, string> = {
  second: '0-59',
  minute: '0-59',
  hour: '0-23',
  day: '1-31',
  month: '1-12 or JAN-DEC',
  weekday: '0-7 or SUN-SAT',
};

/** One field of a cron expression: digits, names, and * ? , / - # L W (never a date's colon). */
const FIELD_RE = /^[0-9A-Za-z*?,/#-]+$/;

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
    const fields = text.split(/\s+/);
    const bad = (why: string): SkiplockError => new SkiplockError(`invalid cron expression ${JSON.stringify(expression)}: ${why}`);
    if (text.startsWith('@')) {
      if (fields.length !== 1) throw bad('a nickname such as @hourly stands alone');
    } else {
      if (fields.length !== 5 && fields.length !== 6) {
        throw bad(`expected 5 fields (minute hour day month weekday) or 6 (with seconds first), got ${fields.length}`);
      }
      // croner would take a text with a colon for a date to run once
      const odd = fields.find((f) => !FIELD_RE.test(f));
      if (odd !== undefined) throw bad(`field ${JSON.stringify(odd)} is not a cron field (digits, names, * ? , / - # L W)`);
    }
    try {
      this.cron = new Cron(text, { timezone, paused: true });
      // croner checks some things only when it computes a run
      this.cron.nextRun(new Date(0));
    } catch (err) {
      const message = errorMessage(err).replace(/^CronPattern: /, '');
      const range = /^Invalid value for (\w+)/.exec(message);
      const field = range?.[1];
      throw bad(field !== undefined && FIELD_RANGES[field] !== undefined ? `${field} value out of range (${FIELD_RANGES[field]})` : message);
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

  /** The latest `count` slots in [from, to], oldest first (found backwards from `to`: a long gap before them costs nothing). */
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
  /** Due slots left out by the catch-up policy (at most MAX_COUNTED: a longer gap counts as that many). */
  readonly skipped: number;
  /** The schedule's next slot after `now` (null: the expression has no more). */
  readonly next: Date | null;
}

/**
 * Late slots counted one by one for `skipped` (a longer gap counts as this many), and the
 * largest maxCatchUp: a scheduler walks at most this many slots of a schedule per round.
 */
export const MAX_COUNTED = 1000;

/**
 * The slots a schedule whose next slot is `nextSlot` enqueues at `now` (database time).
 * Due slots are those in [nextSlot, now]. A slot is late when `now` is more than
 * LATE_SLOT_MS past it (the workers were down, or could not reach the database), as
 * ScheduledSlot.late says of its job; the others are on time and always enqueued. Late slots follow the policy: `all` enqueues the most
 * recent `maxCatchUp` of them, `latest` the most recent one unless an on-time slot is
 * enqueued anyway, `none` none.
 */
export function planSlots(schedule: CronSchedule, nextSlot: Date, now: Date, catchUp: CatchUp, maxCatchUp: number): SlotPlan {
  if (nextSlot.getTime() > now.getTime()) return { fire: [], skipped: 0, next: nextSlot };
  const next = schedule.next(now);
  // late: more than LATE_SLOT_MS before now
  const lateEnd = new Date(now.getTime() - LATE_SLOT_MS - 1);
  const onTimeFrom = new Date(Math.max(nextSlot.getTime(), lateEnd.getTime() + 1));
  const onTime = schedule.between(onTimeFrom, now, MAX_COUNTED);
  let late: Date[] = [];
  let lateCount = 0;
  if (nextSlot.getTime() <= lateEnd.getTime()) {
    const keep = catchUp === 'all' ? maxCatchUp : catchUp === 'latest' && onTime.length === 0 ? 1 : 0;
    lateCount = schedule.between(nextSlot, lateEnd, MAX_COUNTED + keep).length;
    if (keep > 0) late = schedule.latest(nextSlot, lateEnd, keep);
  }
  return { fire: [...late, ...onTime], skipped: Math.max(0, lateCount - late.length), next };
}
