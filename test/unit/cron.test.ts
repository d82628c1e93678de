// Slot arithmetic of schedules (src/schedules/cron.ts): croner behind CronSchedule, daylight
// saving, validation (with normalizeSchedule), and planSlots' catch-up policies. Pure
// functions of instants given here: no database, no clock.
import { describe, expect, it, vi } from 'vitest';
import { SkiplockError } from '../../src/errors.js';
import { LATE_SLOT_MS } from '../../src/job.js';
import { type ScheduleSpec, normalizeSchedule } from '../../src/producer/schedulespec.js';
import { type CatchUp, CATCH_UP_POLICIES, CronSchedule, MAX_COUNTED, checkTimezone, planSlots } from '../../src/schedules/cron.js';

// Everything here is arithmetic: fail fast rather than at the 120 s default (the long-gap
// tests, which walk MAX_COUNTED slots with croner, set their own limit).
vi.setConfig({ testTimeout: 5000 });

const at = (text: string): Date => new Date(text);
const iso = (dates: readonly Date[]): string[] => dates.map((d) => d.toISOString());
const SEC = 1000;

/** planSlots with ISO strings in and out. */
function plan(schedule: CronSchedule, nextSlot: string | Date, now: string | Date, catchUp: CatchUp, maxCatchUp = 100) {
  const p = planSlots(schedule, new Date(nextSlot), new Date(now), catchUp, maxCatchUp);
  return { fire: iso(p.fire), skipped: p.skipped, next: p.next === null ? null : p.next.toISOString() };
}

/** The local calendar day (YYYY-MM-DD) of each instant in `zone`. */
function localDays(dates: readonly Date[], zone: string): string[] {
  const fmt = new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' });
  return dates.map((d) => fmt.format(d));
}

/** The local wall-clock time (HH:MM) of each instant in `zone`. */
function localTimes(dates: readonly Date[], zone: string): string[] {
  const fmt = new Intl.DateTimeFormat('en-GB', { timeZone: zone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  return dates.map((d) => fmt.format(d));
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

/** Asserts fn throws a SkiplockError whose message matches `message`. */
function expectSkiplockError(fn: () => unknown, message: RegExp | string): void {
  const err = thrown(fn);
  expect(err).toBeInstanceOf(SkiplockError);
  expect((err as Error).message).toMatch(message);
}

describe('daylight saving: Europe/Berlin', () => {
  const BERLIN = 'Europe/Berlin';
  const daily = new CronSchedule('30 2 * * *', BERLIN);

  it('spring forward (2026-03-29, 02:00 CET -> 03:00 CEST): 02:30 runs once, at 03:00 CEST', () => {
    const slots = daily.between(at('2026-03-27T00:00:00Z'), at('2026-03-31T23:59:59.999Z'), 100);
    expect(iso(slots)).toEqual([
      '2026-03-27T01:30:00.000Z', // 02:30 CET
      '2026-03-28T01:30:00.000Z', // 02:30 CET
      '2026-03-29T01:00:00.000Z', // 02:30 does not exist: the first instant after the gap, 03:00 CEST
      '2026-03-30T00:30:00.000Z', // 02:30 CEST
      '2026-03-31T00:30:00.000Z', // 02:30 CEST
    ]);
    expect(localDays(slots, BERLIN)).toEqual(['2026-03-27', '2026-03-28', '2026-03-29', '2026-03-30', '2026-03-31']);
    expect(localTimes(slots, BERLIN)).toEqual(['02:30', '02:30', '03:00', '02:30', '02:30']);
    // Stepping with next() and walking backwards with latest() agree.
    expect(daily.next(at('2026-03-28T01:30:00Z'))?.toISOString()).toBe('2026-03-29T01:00:00.000Z');
    expect(daily.next(at('2026-03-29T01:00:00Z'))?.toISOString()).toBe('2026-03-30T00:30:00.000Z');
    expect(iso(daily.latest(at('2026-03-27T00:00:00Z'), at('2026-03-31T23:59:59.999Z'), 100))).toEqual(iso(slots));
  });

  it('fall back (2026-10-25, 03:00 CEST -> 02:00 CET): 02:30 runs once, in the first pass (CEST)', () => {
    const slots = daily.between(at('2026-10-23T00:00:00Z'), at('2026-10-27T23:59:59.999Z'), 100);
    expect(iso(slots)).toEqual([
      '2026-10-23T00:30:00.000Z', // 02:30 CEST
      '2026-10-24T00:30:00.000Z', // 02:30 CEST
      '2026-10-25T00:30:00.000Z', // 02:30 CEST, first pass; not again at 01:30Z (02:30 CET)
      '2026-10-26T01:30:00.000Z', // 02:30 CET
      '2026-10-27T01:30:00.000Z', // 02:30 CET
    ]);
    expect(localDays(slots, BERLIN)).toEqual(['2026-10-23', '2026-10-24', '2026-10-25', '2026-10-26', '2026-10-27']);
    expect(localTimes(slots, BERLIN)).toEqual(['02:30', '02:30', '02:30', '02:30', '02:30']);
    expect(daily.next(at('2026-10-25T00:30:00Z'))?.toISOString()).toBe('2026-10-26T01:30:00.000Z');
    expect(iso(daily.latest(at('2026-10-23T00:00:00Z'), at('2026-10-27T23:59:59.999Z'), 100))).toEqual(iso(slots));
  });

  it('a 6-field expression naming one second, minute and hour behaves the same', () => {
    const withSeconds = new CronSchedule('15 30 2 * * *', BERLIN);
    // In the gap: 03:00:00 CEST exactly (not 03:00:15).
    expect(iso(withSeconds.between(at('2026-03-28T23:00:00Z'), at('2026-03-29T03:00:00Z'), 10))).toEqual(['2026-03-29T01:00:00.000Z']);
    expect(iso(withSeconds.between(at('2026-10-24T23:00:00Z'), at('2026-10-25T03:00:00Z'), 10))).toEqual(['2026-10-25T00:30:15.000Z']);
  });

  it('planSlots across spring forward: the 03:00 CEST slot fires once, next is the following 02:30 CEST', () => {
    const slot = at('2026-03-29T01:00:00Z');
    const p = plan(daily, slot, new Date(slot.getTime() + 5 * SEC), 'latest');
    expect(p).toEqual({ fire: ['2026-03-29T01:00:00.000Z'], skipped: 0, next: '2026-03-30T00:30:00.000Z' });
    // The same evaluation under the other policies: it is on time, so always fired.
    for (const policy of CATCH_UP_POLICIES) {
      expect(plan(daily, slot, new Date(slot.getTime() + 5 * SEC), policy, 5)).toEqual(p);
    }
    // The day before: nextSlot 02:30 CET fires, next is the slot after the gap.
    expect(plan(daily, '2026-03-28T01:30:00Z', '2026-03-28T01:30:05Z', 'latest')).toEqual({
      fire: ['2026-03-28T01:30:00.000Z'],
      skipped: 0,
      next: '2026-03-29T01:00:00.000Z',
    });
  });

  it('planSlots across fall back: evaluated in the second pass of 02:30, the first-pass slot is late and fires once', () => {
    // Down from before the first 02:30 until the second 02:30 (CET) + 5 s.
    expect(plan(daily, '2026-10-25T00:30:00Z', '2026-10-25T01:30:05Z', 'latest')).toEqual({
      fire: ['2026-10-25T00:30:00.000Z'],
      skipped: 0,
      next: '2026-10-26T01:30:00.000Z',
    });
    expect(plan(daily, '2026-10-25T00:30:00Z', '2026-10-25T01:30:05Z', 'none')).toEqual({
      fire: [],
      skipped: 1,
      next: '2026-10-26T01:30:00.000Z',
    });
  });

  it('*/30 2 * * * on the fall-back day fires in both passes of the repeated hour (croner: not a fixed time)', () => {
    const halfHourly = new CronSchedule('*/30 2 * * *', BERLIN);
    const slots = halfHourly.between(at('2026-10-24T12:00:00Z'), at('2026-10-26T12:00:00Z'), 100);
    expect(iso(slots)).toEqual([
      '2026-10-25T00:00:00.000Z', // 02:00 CEST
      '2026-10-25T00:30:00.000Z', // 02:30 CEST
      '2026-10-25T01:00:00.000Z', // 02:00 CET (second pass)
      '2026-10-25T01:30:00.000Z', // 02:30 CET (second pass)
      '2026-10-26T01:00:00.000Z', // 02:00 CET
      '2026-10-26T01:30:00.000Z', // 02:30 CET
    ]);
    expect(iso(halfHourly.latest(at('2026-10-24T12:00:00Z'), at('2026-10-26T12:00:00Z'), 100))).toEqual(iso(slots));
    // Down through the whole repeated hour: the second pass's 02:30 is on time, the rest late.
    expect(plan(halfHourly, '2026-10-25T00:00:00Z', '2026-10-25T01:30:05Z', 'latest')).toEqual({
      fire: ['2026-10-25T01:30:00.000Z'],
      skipped: 3,
      next: '2026-10-26T01:00:00.000Z',
    });
  });

  it('*/30 2 * * * on the spring-forward day does not fire at all (croner skips non-fixed times in the gap)', () => {
    // Surprising next to `30 2 * * *`, which runs at 03:00 CEST that day.
    const halfHourly = new CronSchedule('*/30 2 * * *', BERLIN);
    expect(iso(halfHourly.between(at('2026-03-28T12:00:00Z'), at('2026-03-30T12:00:00Z'), 100))).toEqual([
      '2026-03-30T00:00:00.000Z',
      '2026-03-30T00:30:00.000Z',
    ]);
  });

  it('expressions with more than one value in a time field behave like */30: skipped in the gap, twice in the repeated hour', () => {
    // Pinned so that a change in croner's rule (only single-valued second/minute/hour
    // fields count as a "fixed time") is caught.
    const twiceADay = new CronSchedule('30 2,14 * * *', BERLIN);
    expect(iso(twiceADay.between(at('2026-03-28T23:00:00Z'), at('2026-03-29T03:00:00Z'), 10))).toEqual([]);
    expect(iso(twiceADay.between(at('2026-10-24T23:00:00Z'), at('2026-10-25T03:00:00Z'), 10))).toEqual([
      '2026-10-25T00:30:00.000Z',
      '2026-10-25T01:30:00.000Z',
    ]);
    const hourly = new CronSchedule('30 * * * *', BERLIN);
    // Every hour at :30: three on the short day around the gap, four around the long one (UTC-regular).
    expect(iso(hourly.between(at('2026-03-28T23:00:00Z'), at('2026-03-29T03:00:00Z'), 10))).toEqual([
      '2026-03-28T23:30:00.000Z',
      '2026-03-29T00:30:00.000Z',
      '2026-03-29T01:30:00.000Z',
      '2026-03-29T02:30:00.000Z',
    ]);
    expect(localTimes(hourly.between(at('2026-03-28T23:00:00Z'), at('2026-03-29T03:00:00Z'), 10), BERLIN)).toEqual([
      '00:30',
      '01:30',
      '03:30',
      '04:30',
    ]);
    expect(iso(hourly.between(at('2026-10-24T23:00:00Z'), at('2026-10-25T03:00:00Z'), 10))).toEqual([
      '2026-10-24T23:30:00.000Z',
      '2026-10-25T00:30:00.000Z',
      '2026-10-25T01:30:00.000Z',
      '2026-10-25T02:30:00.000Z',
    ]);
  });
});

describe('daylight saving: America/New_York', () => {
  const NY = 'America/New_York';
  const daily = new CronSchedule('30 2 * * *', NY);

  it('spring forward (2026-03-08, 02:00 EST -> 03:00 EDT): 02:30 runs at 03:00 EDT', () => {
    const slots = daily.between(at('2026-03-06T00:00:00Z'), at('2026-03-10T23:59:59.999Z'), 100);
    expect(iso(slots)).toEqual([
      '2026-03-06T07:30:00.000Z', // 02:30 EST
      '2026-03-07T07:30:00.000Z', // 02:30 EST
      '2026-03-08T07:00:00.000Z', // 03:00 EDT, the first instant after the gap
      '2026-03-09T06:30:00.000Z', // 02:30 EDT
      '2026-03-10T06:30:00.000Z', // 02:30 EDT
    ]);
    expect(localDays(slots, NY)).toEqual(['2026-03-06', '2026-03-07', '2026-03-08', '2026-03-09', '2026-03-10']);
    expect(localTimes(slots, NY)).toEqual(['02:30', '02:30', '03:00', '02:30', '02:30']);
    expect(plan(daily, '2026-03-08T07:00:00Z', '2026-03-08T07:00:05Z', 'latest')).toEqual({
      fire: ['2026-03-08T07:00:00.000Z'],
      skipped: 0,
      next: '2026-03-09T06:30:00.000Z',
    });
  });

  it('fall back (2026-11-01, 02:00 EDT -> 01:00 EST): 02:30 is not in the repeated hour and runs once, at 02:30 EST', () => {
    const slots = daily.between(at('2026-10-30T00:00:00Z'), at('2026-11-03T23:59:59.999Z'), 100);
    expect(iso(slots)).toEqual([
      '2026-10-30T06:30:00.000Z', // 02:30 EDT
      '2026-10-31T06:30:00.000Z', // 02:30 EDT
      '2026-11-01T07:30:00.000Z', // 02:30 EST
      '2026-11-02T07:30:00.000Z', // 02:30 EST
      '2026-11-03T07:30:00.000Z', // 02:30 EST
    ]);
    expect(localDays(slots, NY)).toEqual(['2026-10-30', '2026-10-31', '2026-11-01', '2026-11-02', '2026-11-03']);
    expect(localTimes(slots, NY)).toEqual(['02:30', '02:30', '02:30', '02:30', '02:30']);
  });

  it('fall back, the repeated hour (01:xx): 30 1 * * * runs once in the first pass; */30 1 * * * in both', () => {
    const oneThirty = new CronSchedule('30 1 * * *', NY);
    expect(iso(oneThirty.between(at('2026-10-31T00:00:00Z'), at('2026-11-02T23:59:59.999Z'), 100))).toEqual([
      '2026-10-31T05:30:00.000Z', // 01:30 EDT
      '2026-11-01T05:30:00.000Z', // 01:30 EDT, first pass only
      '2026-11-02T06:30:00.000Z', // 01:30 EST
    ]);
    const halfHourly = new CronSchedule('*/30 1 * * *', NY);
    expect(iso(halfHourly.between(at('2026-10-31T12:00:00Z'), at('2026-11-02T12:00:00Z'), 100))).toEqual([
      '2026-11-01T05:00:00.000Z', // 01:00 EDT
      '2026-11-01T05:30:00.000Z', // 01:30 EDT
      '2026-11-01T06:00:00.000Z', // 01:00 EST
      '2026-11-01T06:30:00.000Z', // 01:30 EST
      '2026-11-02T06:00:00.000Z',
      '2026-11-02T06:30:00.000Z',
    ]);
  });
});

describe('validation', () => {
  it('accepts 5 and 6 field expressions (seconds first), nicknames, names and surrounding space', () => {
    expect(iso(new CronSchedule('* * * * *', 'UTC').between(at('2026-01-01T00:00:00Z'), at('2026-01-01T00:02:00Z'), 10))).toEqual([
      '2026-01-01T00:00:00.000Z',
      '2026-01-01T00:01:00.000Z',
      '2026-01-01T00:02:00.000Z',
    ]);
    expect(iso(new CronSchedule('*/20 * * * * *', 'UTC').between(at('2026-01-01T00:00:00Z'), at('2026-01-01T00:01:00Z'), 10))).toEqual([
      '2026-01-01T00:00:00.000Z',
      '2026-01-01T00:00:20.000Z',
      '2026-01-01T00:00:40.000Z',
      '2026-01-01T00:01:00.000Z',
    ]);
    expect(new CronSchedule('@hourly', 'UTC').next(at('2026-01-01T00:00:00Z'))?.toISOString()).toBe('2026-01-01T01:00:00.000Z');
    expect(new CronSchedule('@daily', 'Europe/Berlin').next(at('2026-01-01T00:00:00Z'))?.toISOString()).toBe('2026-01-01T23:00:00.000Z');
    for (const nickname of ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly']) {
      expect(new CronSchedule(nickname, 'UTC').expression).toBe(nickname);
    }
    expect(new CronSchedule('0 12 * * MON-FRI', 'UTC').next(at('2026-01-02T12:00:00Z'))?.toISOString()).toBe('2026-01-05T12:00:00.000Z');
    expect(new CronSchedule(' 0\t12  * * * ', 'UTC').next(at('2026-01-01T00:00:00Z'))?.toISOString()).toBe('2026-01-01T12:00:00.000Z');
  });

  it('rejects 4 and 7 fields (and empty text) with a SkiplockError naming the field count', () => {
    expectSkiplockError(() => new CronSchedule('* * * *', 'UTC'), /expected 5 fields .* or 6 .*, got 4$/);
    expectSkiplockError(() => new CronSchedule('0 0 0 1 1 * 2030', 'UTC'), /got 7$/);
    expectSkiplockError(() => new CronSchedule('', 'UTC'), /got 1$/);
    expectSkiplockError(() => new CronSchedule('   ', 'UTC'), /got 1$/);
    // The message quotes the expression as given.
    expectSkiplockError(() => new CronSchedule('* * * *', 'UTC'), /^invalid cron expression "\* \* \* \*": /);
  });

  it('rejects out-of-range values and bad syntax with a SkiplockError (croner prefix stripped)', () => {
    const bad = ['60 * * * *', '* 24 * * *', '* * 32 * *', '* * 0 * *', '* * * 13 *', '* * * 0 *', '* * * * 8', '61 * * * * *', 'a b c d e', '*/0 * * * *', '5-1 * * * *', '@reboot', '@every 5m', '@hourly * *'];
    for (const expression of bad) {
      const err = thrown(() => new CronSchedule(expression, 'UTC'));
      expect(err, expression).toBeInstanceOf(SkiplockError);
      expect((err as Error).message, expression).toMatch(/^invalid cron expression /);
      expect((err as Error).message, expression).not.toMatch(/CronPattern:/);
    }
    expectSkiplockError(() => new CronSchedule('60 * * * *', 'UTC'), 'minute value out of range (0-59)');
    expectSkiplockError(() => new CronSchedule('* 24 * * *', 'UTC'), 'hour value out of range (0-23)');
    // croner counts day and month from 0 in its own messages; ours give the ranges users write.
    expectSkiplockError(() => new CronSchedule('* * 32 * *', 'UTC'), 'day value out of range (1-31)');
    expectSkiplockError(() => new CronSchedule('* * * 13 *', 'UTC'), 'month value out of range (1-12 or JAN-DEC)');
    // 7 is Sunday, as 0.
    expect(new CronSchedule('0 0 * * 7', 'UTC').next(at('2026-01-01T00:00:00Z'))?.toISOString()).toBe('2026-01-04T00:00:00.000Z');
  });

  it('accepts an expression that can never fire; next is null (surprising, see report)', () => {
    const feb30 = new CronSchedule('0 0 30 2 *', 'UTC');
    expect(feb30.next(at('2026-01-01T00:00:00Z'))).toBeNull();
    expect(plan(feb30, '2026-01-01T00:00:00Z', '2026-01-01T00:00:05Z', 'latest')).toEqual({ fire: [], skipped: 0, next: null });
  });

  it('a date text (croner would run it once) is not a cron expression', () => {
    // croner reads any pattern containing ":" as a date to run once; each field is checked first.
    for (const text of ['Tue Jan 1 2030 10:00:00', 'Jan 1 2020 10:00:00 GMT', '1 2 3 4 5:6']) {
      expectSkiplockError(() => new CronSchedule(text, 'UTC'), /is not a cron field/);
    }
  });

  it('checkTimezone: IANA zones and UTC pass through; unknown, empty and non-string zones throw', () => {
    expect(checkTimezone('UTC')).toBe('UTC');
    expect(checkTimezone('Europe/Berlin')).toBe('Europe/Berlin');
    expect(checkTimezone('America/New_York')).toBe('America/New_York');
    expect(checkTimezone('Etc/GMT+5')).toBe('Etc/GMT+5');
    // Intl matches names case-insensitively; the text is kept as given (not canonicalised).
    expect(checkTimezone('europe/berlin')).toBe('europe/berlin');
    expectSkiplockError(() => checkTimezone('Mars/Olympus'), 'unknown time zone "Mars/Olympus"');
    expectSkiplockError(() => checkTimezone('+01:00'), 'unknown time zone "+01:00"');
    expectSkiplockError(() => checkTimezone(''), /^invalid time zone/);
    expectSkiplockError(() => checkTimezone(undefined as unknown as string), /^invalid time zone/);
    expectSkiplockError(() => checkTimezone(42 as unknown as string), /^invalid time zone/);
  });

  it('CronSchedule rejects an unknown zone before the expression', () => {
    expectSkiplockError(() => new CronSchedule('0 12 * * *', 'Mars/Olympus'), 'unknown time zone "Mars/Olympus"');
    expectSkiplockError(() => new CronSchedule('* * * *', 'Mars/Olympus'), 'unknown time zone');
    expectSkiplockError(() => new CronSchedule('0 12 * * *', ''), /^invalid time zone/);
  });
});

describe('normalizeSchedule', () => {
  const base: ScheduleSpec = { name: 'nightly', cron: ' 30 2 * * * ', task: 'report' };

  it('fills the defaults: UTC, catchUp latest, maxCatchUp 100; the expression trimmed', () => {
    const { schedule, cron } = normalizeSchedule(base);
    expect(schedule).toMatchObject({ name: 'nightly', cron: '30 2 * * *', timezone: 'UTC', task: 'report', catchUp: 'latest', maxCatchUp: 100 });
    expect(cron).toBeInstanceOf(CronSchedule);
    expect(cron.timezone).toBe('UTC');
    const all = normalizeSchedule({ ...base, timezone: 'Europe/Berlin', catchUp: 'all', maxCatchUp: 5 }).schedule;
    expect(all).toMatchObject({ timezone: 'Europe/Berlin', catchUp: 'all', maxCatchUp: 5 });
    expect(normalizeSchedule({ ...base, catchUp: 'none' }).schedule.catchUp).toBe('none');
    expect(normalizeSchedule({ ...base, catchUp: 'all' }).schedule.maxCatchUp).toBe(100);
  });

  it('rejects unknown fields', () => {
    expectSkiplockError(() => normalizeSchedule({ ...base, every: '5m' } as unknown as ScheduleSpec), 'unknown schedule field "every"');
    expectSkiplockError(() => normalizeSchedule({ ...base, timeZone: 'UTC' } as unknown as ScheduleSpec), 'unknown schedule field "timeZone"');
    expectSkiplockError(() => normalizeSchedule(null as unknown as ScheduleSpec), 'a schedule must be an object');
  });

  it('rejects a bad catchUp, and maxCatchUp without catchUp "all" or out of range', () => {
    expectSkiplockError(() => normalizeSchedule({ ...base, catchUp: 'some' as CatchUp }), 'invalid catch-up policy "some": expected latest, none, all');
    expectSkiplockError(() => normalizeSchedule({ ...base, maxCatchUp: 5 }), 'maxCatchUp goes with catchUp "all"');
    expectSkiplockError(() => normalizeSchedule({ ...base, catchUp: 'latest', maxCatchUp: 5 }), 'maxCatchUp goes with catchUp "all"');
    expectSkiplockError(() => normalizeSchedule({ ...base, catchUp: 'none', maxCatchUp: 5 }), 'maxCatchUp goes with catchUp "all"');
    for (const maxCatchUp of [0, -1, 1.5, 1001, Number.NaN]) {
      expectSkiplockError(() => normalizeSchedule({ ...base, catchUp: 'all', maxCatchUp }), /^invalid maxCatchUp /);
    }
    expect(normalizeSchedule({ ...base, catchUp: 'all', maxCatchUp: 1000 }).schedule.maxCatchUp).toBe(1000);
  });

  it('rejects bad names, bad expressions, unknown zones and a missing expression', () => {
    for (const name of ['', '.hidden', ':x', '-x', 'a b', 'ä', 'x'.repeat(129)]) {
      expectSkiplockError(() => normalizeSchedule({ ...base, name }), /^invalid schedule name /);
    }
    expectSkiplockError(() => normalizeSchedule({ ...base, name: undefined as unknown as string }), /^invalid schedule name /);
    expect(normalizeSchedule({ ...base, name: 'x'.repeat(128) }).schedule.name).toHaveLength(128);
    expect(normalizeSchedule({ ...base, name: 'a_b.c:d-e' }).schedule.name).toBe('a_b.c:d-e');
    expectSkiplockError(() => normalizeSchedule({ ...base, cron: '* * * *' }), /got 4$/);
    expectSkiplockError(() => normalizeSchedule({ ...base, cron: undefined as unknown as string }), 'a schedule needs a cron expression');
    expectSkiplockError(() => normalizeSchedule({ ...base, timezone: 'Mars/Olympus' }), 'unknown time zone');
  });
});

describe('planSlots', () => {
  const perSecond = new CronSchedule('* * * * * *', 'UTC');
  const perMinute = new CronSchedule('* * * * *', 'UTC');

  it('LATE_SLOT_MS is 10 s', () => {
    expect(LATE_SLOT_MS).toBe(10_000);
  });

  it('nothing due (nextSlot in the future): fires nothing, next unchanged', () => {
    for (const policy of CATCH_UP_POLICIES) {
      expect(plan(perSecond, '2026-01-01T00:00:01Z', '2026-01-01T00:00:00.300Z', policy)).toEqual({
        fire: [],
        skipped: 0,
        next: '2026-01-01T00:00:01.000Z',
      });
    }
    // next is the stored nextSlot even when the expression would say otherwise.
    expect(plan(perMinute, '2026-01-01T05:00:00Z', '2026-01-01T00:00:00.300Z', 'latest').next).toBe('2026-01-01T05:00:00.000Z');
  });

  it('on time: 300 ms after a slot fires it, next is the following second', () => {
    for (const policy of CATCH_UP_POLICIES) {
      expect(plan(perSecond, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00.300Z', policy)).toEqual({
        fire: ['2026-01-01T00:00:00.000Z'],
        skipped: 0,
        next: '2026-01-01T00:00:01.000Z',
      });
    }
    // A slot exactly at now is due; next is strictly after now.
    expect(plan(perSecond, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 'none')).toEqual({
      fire: ['2026-01-01T00:00:00.000Z'],
      skipped: 0,
      next: '2026-01-01T00:00:01.000Z',
    });
  });

  it('two on-time slots due at once (a late tick): both fire under every policy', () => {
    for (const policy of CATCH_UP_POLICIES) {
      expect(plan(perSecond, '2026-01-01T00:00:00Z', '2026-01-01T00:00:01.200Z', policy, 1)).toEqual({
        fire: ['2026-01-01T00:00:00.000Z', '2026-01-01T00:00:01.000Z'],
        skipped: 0,
        next: '2026-01-01T00:00:02.000Z',
      });
    }
  });

  describe('per-minute schedule down for 2 minutes', () => {
    // Slots 00:01, 00:02 and 00:03 are due.
    const nextSlot = '2026-01-01T00:01:00Z';

    it('with an on-time slot (now 00:03:00.5): latest and none fire only it; all catches up', () => {
      const now = '2026-01-01T00:03:00.500Z';
      const onTimeOnly = { fire: ['2026-01-01T00:03:00.000Z'], skipped: 2, next: '2026-01-01T00:04:00.000Z' };
      expect(plan(perMinute, nextSlot, now, 'latest')).toEqual(onTimeOnly);
      expect(plan(perMinute, nextSlot, now, 'none')).toEqual(onTimeOnly);
      expect(plan(perMinute, nextSlot, now, 'all', 5)).toEqual({
        fire: ['2026-01-01T00:01:00.000Z', '2026-01-01T00:02:00.000Z', '2026-01-01T00:03:00.000Z'],
        skipped: 0,
        next: '2026-01-01T00:04:00.000Z',
      });
      expect(plan(perMinute, nextSlot, now, 'all', 1)).toEqual({
        fire: ['2026-01-01T00:02:00.000Z', '2026-01-01T00:03:00.000Z'],
        skipped: 1,
        next: '2026-01-01T00:04:00.000Z',
      });
    });

    it('all late (now 00:03:30): latest fires the most recent, none nothing, all up to maxCatchUp', () => {
      const now = '2026-01-01T00:03:30Z';
      const next = '2026-01-01T00:04:00.000Z';
      expect(plan(perMinute, nextSlot, now, 'latest')).toEqual({ fire: ['2026-01-01T00:03:00.000Z'], skipped: 2, next });
      expect(plan(perMinute, nextSlot, now, 'none')).toEqual({ fire: [], skipped: 3, next });
      expect(plan(perMinute, nextSlot, now, 'all', 5)).toEqual({
        fire: ['2026-01-01T00:01:00.000Z', '2026-01-01T00:02:00.000Z', '2026-01-01T00:03:00.000Z'],
        skipped: 0,
        next,
      });
      expect(plan(perMinute, nextSlot, now, 'all', 2)).toEqual({
        fire: ['2026-01-01T00:02:00.000Z', '2026-01-01T00:03:00.000Z'],
        skipped: 1,
        next,
      });
    });
  });

  describe('per-second schedule down for a minute', () => {
    // Slots 00:00:00 .. 00:01:00 (61) are due at 00:01:00.3; those <= 00:00:50.3 (51) are late.
    const nextSlot = '2026-01-01T00:00:00Z';
    const now = '2026-01-01T00:01:00.300Z';
    const seconds = (from: number, to: number): string[] =>
      Array.from({ length: to - from + 1 }, (_, i) => new Date(Date.parse(nextSlot) + (from + i) * SEC).toISOString());
    const onTime = seconds(51, 60);
    const next = '2026-01-01T00:01:01.000Z';

    it('latest and none fire only the 10 on-time slots; the 51 late ones are skipped', () => {
      expect(plan(perSecond, nextSlot, now, 'latest')).toEqual({ fire: onTime, skipped: 51, next });
      expect(plan(perSecond, nextSlot, now, 'none')).toEqual({ fire: onTime, skipped: 51, next });
    });

    it('all with maxCatchUp 5 fires the 5 most recent late slots, then the on-time ones', () => {
      expect(plan(perSecond, nextSlot, now, 'all', 5)).toEqual({ fire: [...seconds(46, 50), ...onTime], skipped: 46, next });
      expect(plan(perSecond, nextSlot, now, 'all', 100)).toEqual({ fire: seconds(0, 60), skipped: 0, next });
    });

    it('latest with no on-time slot due fires the most recent late slot only', () => {
      // The on-time window (now - 10 s, now] holds no slot of an every-20-seconds schedule at :15.
      const every20 = new CronSchedule('*/20 * * * * *', 'UTC');
      expect(plan(every20, '2026-01-01T00:00:00Z', '2026-01-01T00:01:15Z', 'latest')).toEqual({
        fire: ['2026-01-01T00:01:00.000Z'],
        skipped: 3,
        next: '2026-01-01T00:01:20.000Z',
      });
    });
  });

  it('boundary: a slot more than LATE_SLOT_MS old is late; exactly LATE_SLOT_MS old it is on time (as ScheduledSlot.late)', () => {
    const slot = at('2026-01-01T00:01:00Z');
    const exactlyLate = new Date(slot.getTime() + LATE_SLOT_MS + 1);
    const justOnTime = new Date(slot.getTime() + LATE_SLOT_MS);
    const next = '2026-01-01T00:02:00.000Z';
    expect(plan(perMinute, slot, exactlyLate, 'none')).toEqual({ fire: [], skipped: 1, next });
    expect(plan(perMinute, slot, justOnTime, 'none')).toEqual({ fire: ['2026-01-01T00:01:00.000Z'], skipped: 0, next });
    // Late but the latest: fired under 'latest' and 'all' as a catch-up.
    expect(plan(perMinute, slot, exactlyLate, 'latest')).toEqual({ fire: ['2026-01-01T00:01:00.000Z'], skipped: 0, next });
    expect(plan(perMinute, slot, exactlyLate, 'all', 1)).toEqual({ fire: ['2026-01-01T00:01:00.000Z'], skipped: 0, next });
    // Per second: at slot + 10.001 s the first due slot is late and 10 are on time.
    const p = planSlots(perSecond, slot, exactlyLate, 'none', 100);
    expect(p.fire).toHaveLength(10);
    expect(p.fire[0]?.toISOString()).toBe('2026-01-01T00:01:01.000Z');
    expect(p.skipped).toBe(1);
    expect(planSlots(perSecond, slot, justOnTime, 'none', 100)).toMatchObject({ skipped: 0 });
    expect(planSlots(perSecond, slot, justOnTime, 'none', 100).fire).toHaveLength(11);
  });

  describe('a very long gap: a per-second schedule down for 3 days', () => {
    // 259 201 slots are due; counting stops at MAX_COUNTED. Each evaluation walks up to
    // MAX_COUNTED slots forward with croner (about half a second here), hence the timeout.
    const nextSlot = at('2026-01-01T00:00:00Z');
    const now = at('2026-01-04T00:00:00.500Z');
    const next = '2026-01-04T00:00:01.000Z';
    const onTime = Array.from({ length: 10 }, (_, i) => new Date(now.getTime() - 500 - (9 - i) * SEC).toISOString());

    it('MAX_COUNTED is 1000', () => {
      expect(MAX_COUNTED).toBe(1000);
    });

    it('latest and none: only the on-time slots; skipped is MAX_COUNTED (the late count is capped)', { timeout: 60_000 }, () => {
      expect(onTime[0]).toBe('2026-01-03T23:59:51.000Z');
      expect(onTime[9]).toBe('2026-01-04T00:00:00.000Z');
      // skipped = MAX_COUNTED - late slots fired (0 here), not MAX_COUNTED - fired.
      expect(plan(perSecond, nextSlot, now, 'latest')).toEqual({ fire: onTime, skipped: MAX_COUNTED, next });
      expect(plan(perSecond, nextSlot, now, 'none')).toEqual({ fire: onTime, skipped: MAX_COUNTED, next });
    });

    it('all with maxCatchUp 5: the 5 latest late slots and the on-time ones; skipped capped at MAX_COUNTED', { timeout: 60_000 }, () => {
      const late = ['2026-01-03T23:59:46.000Z', '2026-01-03T23:59:47.000Z', '2026-01-03T23:59:48.000Z', '2026-01-03T23:59:49.000Z', '2026-01-03T23:59:50.000Z'];
      expect(plan(perSecond, nextSlot, now, "all", 5)).toEqual({ fire: [...late, ...onTime], skipped: MAX_COUNTED, next });
    });

    it('latest with no on-time slot due fires exactly the latest slot <= now - LATE_SLOT_MS; skipped capped at MAX_COUNTED', { timeout: 60_000 }, () => {
      // Every second of the first half of each minute: at :45.5 the on-time window
      // (:35.5, :45.5] is empty and the latest late slot is :29.
      const firstHalf = new CronSchedule('0-29 * * * * *', 'UTC');
      const at45 = at('2026-01-04T00:00:45.500Z');
      const latest = plan(firstHalf, nextSlot, at45, 'latest');
      expect(latest).toEqual({
        fire: ['2026-01-04T00:00:29.000Z'],
        skipped: MAX_COUNTED,
        next: '2026-01-04T00:01:00.000Z',
      });
      const latestLate = latest.fire[0] ?? '';
      expect(Date.parse(latestLate)).toBeLessThanOrEqual(at45.getTime() - LATE_SLOT_MS);
      expect(firstHalf.next(at(latestLate))?.getTime()).toBeGreaterThan(at45.getTime() - LATE_SLOT_MS);
      expect(plan(firstHalf, nextSlot, at45, 'none')).toEqual({ fire: [], skipped: MAX_COUNTED, next: '2026-01-04T00:01:00.000Z' });
    });

    it('with the largest maxCatchUp, skipped is still counted up to MAX_COUNTED, never negative', { timeout: 60_000 }, () => {
      // 6 h of per-second slots: 21 591 late, the latest 1000 kept, the rest counted up to MAX_COUNTED.
      const p = planSlots(perSecond, nextSlot, at('2026-01-01T06:00:00.500Z'), 'all', MAX_COUNTED);
      expect(p.fire).toHaveLength(MAX_COUNTED + 10);
      expect(p.skipped).toBe(MAX_COUNTED);
    });
  });
});

describe('CronSchedule.between and latest', () => {
  const perMinute = new CronSchedule('* * * * *', 'UTC');
  const from = at('2026-01-01T00:01:00Z');
  const to = at('2026-01-01T00:05:00Z');
  const all = ['2026-01-01T00:01:00.000Z', '2026-01-01T00:02:00.000Z', '2026-01-01T00:03:00.000Z', '2026-01-01T00:04:00.000Z', '2026-01-01T00:05:00.000Z'];

  it('between: inclusive bounds, oldest first, limit honoured (the oldest kept)', () => {
    expect(iso(perMinute.between(from, to, 100))).toEqual(all);
    expect(iso(perMinute.between(new Date(from.getTime() + 1), new Date(to.getTime() - 1), 100))).toEqual(all.slice(1, 4));
    expect(iso(perMinute.between(from, to, 2))).toEqual(all.slice(0, 2));
    expect(perMinute.between(from, to, 0)).toEqual([]);
    expect(iso(perMinute.between(from, from, 10))).toEqual([all[0]]);
    expect(perMinute.between(to, from, 10)).toEqual([]);
  });

  it('latest: inclusive bounds, oldest first, limit honoured (the newest kept)', () => {
    expect(iso(perMinute.latest(from, to, 100))).toEqual(all);
    expect(iso(perMinute.latest(new Date(from.getTime() + 1), new Date(to.getTime() - 1), 100))).toEqual(all.slice(1, 4));
    expect(iso(perMinute.latest(from, to, 2))).toEqual(all.slice(3));
    expect(perMinute.latest(from, to, 0)).toEqual([]);
    expect(iso(perMinute.latest(to, to, 10))).toEqual([all[4]]);
    expect(perMinute.latest(to, from, 10)).toEqual([]);
    // `to` just short of a per-second slot: that slot is left out.
    const perSecond = new CronSchedule('* * * * * *', 'UTC');
    expect(iso(perSecond.latest(at('2026-01-01T00:00:00Z'), at('2026-01-01T00:00:02.999Z'), 2))).toEqual([
      '2026-01-01T00:00:01.000Z',
      '2026-01-01T00:00:02.000Z',
    ]);
    expect(iso(perSecond.latest(at('2026-01-01T00:00:00Z'), at('2026-01-01T00:00:03Z'), 2))).toEqual([
      '2026-01-01T00:00:02.000Z',
      '2026-01-01T00:00:03.000Z',
    ]);
  });

  it('latest reaches back over a long gap cheaply and agrees with between', () => {
    const daily = new CronSchedule('0 9 * * *', 'Europe/Berlin');
    const a = at('2026-01-01T00:00:00Z');
    const b = at('2026-12-31T23:59:59Z');
    const forward = daily.between(a, b, 1000);
    expect(forward).toHaveLength(365);
    expect(iso(daily.latest(a, b, 3))).toEqual(iso(forward.slice(-3)));
    expect(iso(daily.latest(a, b, 1000))).toEqual(iso(forward));
    // A year of 09:00 Berlin: 08:00Z in winter, 07:00Z in summer.
    expect(iso(forward.slice(0, 1))).toEqual(['2026-01-01T08:00:00.000Z']);
    expect(daily.next(at('2026-07-01T00:00:00Z'))?.toISOString()).toBe('2026-07-01T07:00:00.000Z');
  });
});
