import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import pino from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type DueSchedule, type FireDecision, ScheduleStore } from '../src/db/schedulestore.js';
import {
  CronSchedule,
  LATE_SLOT_MS,
  Producer,
  type ScheduleOptions,
  type ScheduledSlot,
  SkiplockError,
  type TaskList,
  UnknownScheduleError,
  type Worker,
  planSlots,
} from '../src/index.js';
import { Scheduler } from '../src/maintenance/scheduler.js';
import { silentLogger } from '../src/observability/logger.js';
import { failure } from './helpers/failure.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

/**
 * Recurring schedules (migration 0009, sql/queries/schedules.sql, ScheduleStore.fireDue, the
 * Scheduler of every worker): each slot becomes exactly one job however many schedulers race,
 * with the row lock alone (a naive read-then-write fire is shown to duplicate slots, so the
 * race is real); the catch-up policies after downtime; redefinition, removal, pause and
 * resume; definitions checked before any query; the schedule metrics.
 *
 * Connections: the file's pool holds at most 5; the racing test adds 8 pools of one, the
 * three-worker test 3 x (2 pooled + 1 LISTEN), the removal test a pool of 3.
 */
const { db, producer, workers } = useTestSchema('sched', { max: 5 });
const S = `"${db.schema}"`;

afterEach(async () => {
  await workers.stopAll();
  // Schedules of one test must not be fired by the next one's workers.
  await db.pool.query(`DELETE FROM ${S}.schedules`);
});

// ---------------------------------------------------------------------------------------------
// helpers

const parsedCrons = new Map<string, CronSchedule>();
function cronOf(expression: string, timezone: string): CronSchedule {
  const key = `${timezone} ${expression}`;
  let cron = parsedCrons.get(key);
  if (cron === undefined) {
    cron = new CronSchedule(expression, timezone);
    parsedCrons.set(key, cron);
  }
  return cron;
}

/** What the Scheduler decides for due schedules (maintenance/scheduler.ts decide, without metrics). */
function decide(due: readonly DueSchedule[], now: Date): FireDecision[] {
  return due.map((s) => {
    const plan = planSlots(cronOf(s.cron, s.timezone), s.nextSlot, now, s.catchUp, s.maxCatchUp);
    return { name: s.name, slots: plan.fire, next: plan.next };
  });
}

/** A Scheduler whose round the test runs by hand: exactly one, no timer. */
class OneRoundScheduler extends Scheduler {
  runRound(): Promise<void> {
    return this.round();
  }
}

async function dbNow(): Promise<Date> {
  return (await db.rows<{ now: Date }>('SELECT now() AS now'))[0]!.now;
}

interface SlotJob {
  id: string;
  slot: Date;
  created_at: Date;
}

/** The jobs a schedule enqueued, by slot. */
function jobsOf(name: string): Promise<SlotJob[]> {
  return db.rows<SlotJob>(`SELECT id, schedule_slot AS slot, created_at FROM ${S}.jobs WHERE schedule_name = $1 ORDER BY schedule_slot, id`, [name]);
}

interface ScheduleRow {
  next_slot: Date;
  last_slot: Date | null;
  paused: boolean;
}

async function scheduleRow(name: string): Promise<ScheduleRow | undefined> {
  return (await db.rows<ScheduleRow>(`SELECT next_slot, last_slot, paused FROM ${S}.schedules WHERE name = $1`, [name]))[0];
}

async function setNextSlot(name: string, at: Date): Promise<void> {
  const res = await db.pool.query(`UPDATE ${S}.schedules SET next_slot = $2 WHERE name = $1`, [name, at]);
  expect(res.rowCount).toBe(1);
}

/** One sample of a metric with a schedule label in Prometheus text; undefined when absent. */
function sample(text: string, metric: string, schedule: string): number | undefined {
  const prefix = `${metric}{schedule="${schedule}"} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(prefix.length));
}

/** Instants from `from` to `to` (inclusive) every `stepMs`, as epoch ms. */
function every(from: Date | number, to: Date | number, stepMs: number): number[] {
  const out: number[] = [];
  for (let t = Number(from); t <= Number(to); t += stepMs) out.push(t);
  return out;
}

/** A logger that keeps its lines (warnings and up). */
function capturingLogger(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) }), lines };
}

// ---------------------------------------------------------------------------------------------

describe('one job per slot, with the row lock alone', () => {
  it('8 schedulers racing fireDue for 3 s enqueue every slot of three per-second schedules exactly once; a naive fire without FOR UPDATE SKIP LOCKED duplicates slots', async () => {
    // The unique index jobs_schedule_slot_idx cannot simply be dropped: the fire statement's
    // ON CONFLICT (schedule_name, schedule_slot) needs it as its arbiter and fails without it
    // ("there is no unique or exclusion constraint matching the ON CONFLICT specification").
    // So it is neutralised instead: a trigger gives every scheduled job of this test a name of
    // its own (name~n) before the index sees it, so no insert can ever conflict and only the
    // schedule row lock stands between two schedulers and a duplicate. The trigger also sleeps
    // 20 ms per job, which keeps each fire transaction open long enough for the racers to meet
    // locked and just-moved rows.
    await db.pool.query(`
      CREATE SEQUENCE ${S}.unguard_seq;
      CREATE FUNCTION ${S}.unguard() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_sleep(0.02);
        NEW.schedule_name := NEW.schedule_name || '~' || nextval('${S}.unguard_seq');
        RETURN NEW;
      END $$;
      CREATE TRIGGER unguard BEFORE INSERT ON ${S}.jobs FOR EACH ROW
        WHEN (NEW.schedule_name LIKE 'race-%' OR NEW.schedule_name LIKE 'naive-%') EXECUTE FUNCTION ${S}.unguard();`);
    const pools = Array.from({ length: 8 }, () => new pg.Pool({ connectionString: db.connectionString, max: 1 }));
    try {
      const defs = [
        { name: 'race-1s', cron: '* * * * * *', timezone: 'Asia/Kolkata', stepMs: 1000 },
        { name: 'race-2s', cron: '*/2 * * * * *', timezone: 'America/St_Johns', stepMs: 2000 },
        { name: 'race-1s-b', cron: '* * * * * *', timezone: 'Australia/Eucla', stepMs: 1000 },
      ];
      const first = new Map<string, Date>();
      for (const d of defs) {
        const info = await producer.schedule(d.name, d.cron, 'race-task', { d: d.name }, { timezone: d.timezone });
        expect(info.timezone).toBe(d.timezone);
        expect(info.nextSlot!.getTime() % d.stepMs).toBe(0);
        first.set(d.name, info.nextSlot!);
      }
      await Promise.all(pools.map((p) => p.query('SELECT 1'))); // connected before the clock starts

      const stores = pools.map((p) => new ScheduleStore(p, db.schema));
      const enqueuedBy = stores.map(() => 0);
      let reportedDuplicates = 0;
      let calls = 0;
      const until = Date.now() + 3000;
      await Promise.all(
        stores.map(async (store, i) => {
          while (Date.now() < until) {
            const result = await store.fireDue(100, decide);
            calls += 1;
            for (const n of result.enqueued.values()) enqueuedBy[i]! += n;
            reportedDuplicates += result.duplicates;
          }
        }),
      );
      const end = await dbNow();

      const rows = await db.rows<{ name: string; slot: Date; n: number }>(
        `SELECT split_part(schedule_name, '~', 1) AS name, schedule_slot AS slot, count(*)::int AS n
         FROM ${S}.jobs WHERE schedule_name LIKE 'race-%' GROUP BY 1, 2 ORDER BY 1, 2`,
      );
      const [counts] = await db.rows<{ total: number; unguarded: number }>(
        `SELECT count(*)::int AS total, count(*) FILTER (WHERE schedule_name LIKE 'race-%~%')::int AS unguarded FROM ${S}.jobs WHERE schedule_name LIKE 'race-%'`,
      );
      const { total, unguarded } = counts!;
      console.info(`${calls} racing fireDue calls enqueued ${total} jobs; by caller: ${enqueuedBy.join(' ')}`);
      // Every job went through the trigger: the unique index could not have held anything back.
      expect(unguarded).toBe(total);
      expect(reportedDuplicates).toBe(0);
      // The race was one: several callers enqueued slots (and what they report is what is there).
      expect(enqueuedBy.filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
      expect(enqueuedBy.reduce((a, b) => a + b, 0)).toBe(total);
      for (const d of defs) {
        const mine = rows.filter((r) => r.name === d.name);
        // exactly one job per slot ...
        expect(mine.filter((r) => r.n !== 1), d.name).toEqual([]);
        // ... and every slot from the first to the last enqueued, none missing
        const row = (await scheduleRow(d.name))!;
        expect(row.last_slot, d.name).not.toBeNull();
        expect(mine.map((r) => r.slot.getTime()), d.name).toEqual(every(first.get(d.name)!, row.last_slot!, d.stepMs));
        // the schedulers kept up to the end of the race, and moved the schedule past its last slot
        expect(row.last_slot!.getTime(), d.name).toBeGreaterThanOrEqual(end.getTime() - d.stepMs - 1000);
        expect(row.next_slot.getTime(), d.name).toBe(row.last_slot!.getTime() + d.stepMs);
        expect(mine.length, d.name).toBeGreaterThanOrEqual(d.stepMs === 1000 ? 2 : 1);
      }

      // The negative control: the same race with a fire that reads next_slot with a plain
      // SELECT (no FOR UPDATE SKIP LOCKED), enqueues its due slots and moves it on, in one
      // transaction. Racers read the same next_slot and each enqueue it.
      await producer.schedule('naive-1s', '* * * * * *', 'race-task', {}, { timezone: 'Asia/Kolkata' });
      const naiveCron = new CronSchedule('* * * * * *', 'Asia/Kolkata');
      const naiveFire = async (client: pg.PoolClient): Promise<void> => {
        await client.query('BEGIN');
        try {
          const due = (
            await client.query<{ next_slot: Date; now: Date }>(
              `SELECT next_slot, now() AS now FROM ${S}.schedules WHERE name = 'naive-1s' AND NOT paused AND next_slot <= now()`,
            )
          ).rows[0];
          if (due !== undefined) {
            await client.query('SELECT pg_sleep(0.03)');
            const slots = naiveCron.between(due.next_slot, due.now, 100);
            await client.query(
              `INSERT INTO ${S}.jobs (queue, task, payload, schedule_name, schedule_slot)
               SELECT s.queue, s.task, s.payload, s.name, slot FROM ${S}.schedules AS s, unnest($1::timestamptz[]) AS slot WHERE s.name = 'naive-1s'`,
              [slots],
            );
            await client.query(`UPDATE ${S}.schedules SET next_slot = $1, last_slot = $2 WHERE name = 'naive-1s'`, [
              naiveCron.next(due.now),
              slots.at(-1) ?? null,
            ]);
          }
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      };
      const naiveUntil = Date.now() + 2500;
      await Promise.all(
        pools.map(async (pool) => {
          const client = await pool.connect();
          try {
            while (Date.now() < naiveUntil) await naiveFire(client);
          } finally {
            client.release();
          }
        }),
      );
      const [naive] = await db.rows<{ jobs: number; slots: number }>(
        `SELECT count(*)::int AS jobs, count(DISTINCT schedule_slot)::int AS slots FROM ${S}.jobs WHERE schedule_name LIKE 'naive-1s~%'`,
      );
      console.info(`naive fire: ${naive!.jobs} jobs for ${naive!.slots} slots (${naive!.jobs - naive!.slots} duplicates)`);
      expect(naive!.slots).toBeGreaterThanOrEqual(2);
      expect(naive!.jobs - naive!.slots).toBeGreaterThan(0); // the anomaly the row lock prevents
    } finally {
      await Promise.all(pools.map((p) => p.end()));
      await db.pool.query(`DROP TRIGGER IF EXISTS unguard ON ${S}.jobs`);
    }
  });

  it('3 workers (scheduler every 200 ms) enqueue each slot of a per-second schedule once; handlers see ctx.job.schedule and getJob shows it', async () => {
    const seen: Array<{ id: string; worker: number; payload: unknown; schedule: ScheduledSlot | null }> = [];
    const { logger, lines } = capturingLogger();
    const started: Worker[] = [];
    for (let i = 0; i < 3; i++) {
      const tasks: TaskList = {
        'w-task': (payload: unknown, ctx) => {
          seen.push({ id: ctx.job.id, worker: i, payload, schedule: ctx.job.schedule });
        },
      };
      started.push(await workers.start(tasks, { scheduleIntervalMs: 200, max: 2, concurrency: 2, logger, workerId: `sched-w${i}` }));
    }
    const info = await producer.schedule('w-1s', '* * * * * *', 'w-task', { hello: 'w' }, { timezone: 'Pacific/Chatham' });
    const first = info.nextSlot!;
    expect(info).toMatchObject({ name: 'w-1s', cron: '* * * * * *', timezone: 'Pacific/Chatham', task: 'w-task', paused: false, lastSlot: null });
    await delay(4000);

    // While it runs: the lag of the schedule is small, its last slot is reported.
    const live = await started[0]!.metrics.text();
    const lag = sample(live, 'skiplock_schedule_lag_seconds', 'w-1s');
    expect(lag).toBeDefined();
    expect(lag!).toBeGreaterThanOrEqual(0);
    expect(lag!).toBeLessThan(1.5);
    expect(sample(live, 'skiplock_schedule_last_slot_timestamp_seconds', 'w-1s')).toBeGreaterThanOrEqual(first.getTime() / 1000);

    // Pausing waits for a fire in progress (the row lock), so what is there now is final.
    const paused = await producer.pauseSchedule('w-1s');
    expect(paused.paused).toBe(true);
    const jobs = await jobsOf('w-1s');
    const row = (await scheduleRow('w-1s'))!;
    expect(jobs.length).toBeGreaterThanOrEqual(3);
    // One job per slot, every second from the first slot to the last, none late.
    expect(jobs.map((j) => j.slot.getTime())).toEqual(every(first, row.last_slot!, 1000));
    for (const j of jobs) expect(j.created_at.getTime() - j.slot.getTime()).toBeLessThan(LATE_SLOT_MS);
    // No scheduler met a slot already enqueued (the unique index never had to step in), and none failed.
    expect(lines.filter((l) => /already enqueued|scheduler round failed/.test(l))).toEqual([]);

    // The workers' counters add up to the jobs; the gauges read the row.
    const enqueuedSum = async (): Promise<number> => {
      let sum = 0;
      for (const w of started) sum += sample(await w.metrics.text(), 'skiplock_schedule_jobs_enqueued_total', 'w-1s') ?? 0;
      return sum;
    };
    await waitFor(async () => (await enqueuedSum()) === jobs.length, 2000, 'the enqueued counters to add up to the jobs');
    const byWorker: number[] = [];
    for (const w of started) {
      const text = await w.metrics.text();
      byWorker.push(sample(text, 'skiplock_schedule_jobs_enqueued_total', 'w-1s') ?? 0);
      expect(text).toContain('skiplock_schedule_errors_total 0');
      expect(sample(text, 'skiplock_schedule_last_slot_timestamp_seconds', 'w-1s')).toBe(row.last_slot!.getTime() / 1000);
      expect(sample(text, 'skiplock_schedule_lag_seconds', 'w-1s')).toBeUndefined(); // paused: no lag
    }
    console.info(`3 workers enqueued ${jobs.length} slots of w-1s: ${byWorker.join(' / ')}`);

    // Every job ran once, and its handler saw the schedule, the slot and late = false.
    await waitFor(async () => seen.length >= jobs.length || undefined, 10_000, 'the handlers to run every scheduled job');
    await delay(200);
    expect(seen.map((s) => s.id).sort()).toEqual(jobs.map((j) => j.id).sort());
    const slotOf = new Map(jobs.map((j) => [j.id, j.slot.getTime()]));
    for (const s of seen) {
      expect(s.payload).toEqual({ hello: 'w' });
      expect(s.schedule).not.toBeNull();
      expect(s.schedule!.name).toBe('w-1s');
      expect(s.schedule!.slot).toBeInstanceOf(Date);
      expect(s.schedule!.slot.getTime()).toBe(slotOf.get(s.id));
      expect(s.schedule!.late).toBe(false);
    }
    for (const j of jobs) {
      const record = (await producer.getJob(j.id))!;
      expect(record.schedule_name).toBe('w-1s');
      expect(record.schedule_slot).toBeInstanceOf(Date);
      expect(record.schedule_slot!.getTime()).toBe(j.slot.getTime());
      expect(record.task).toBe('w-task');
      expect(record.payload).toEqual({ hello: 'w' });
    }
    // A job enqueued by hand has no schedule.
    const { id: plainId } = await producer.enqueue('w-task', { hello: 'plain' });
    await waitFor(async () => seen.find((s) => s.id === plainId), 10_000, 'the plain job to run');
    expect(seen.find((s) => s.id === plainId)!.schedule).toBeNull();
    expect((await producer.getJob(plainId))!).toMatchObject({ schedule_name: null, schedule_slot: null });
  });
});

describe('catch-up after downtime', () => {
  it('one scheduler round: latest enqueues the most recent missed slot (late) or the on-time ones, none only on-time ones, all up to maxCatchUp; skipped slots are counted', async () => {
    // Minute schedules whose slots fall 30 s away from now: the last one passed ~30 s ago
    // (late), the next is ~30 s ahead, whatever the time the test runs at.
    const n0 = await dbNow();
    const second = (n0.getUTCSeconds() + 30) % 60;
    const minuteCron = `${second} * * * * *`;
    let last = Math.floor(n0.getTime() / 1000) * 1000;
    while (new Date(last).getUTCSeconds() !== second) last -= 1000; // the latest slot <= n0
    const zone = 'Asia/Kolkata';
    const opts = (o: ScheduleOptions): ScheduleOptions => ({ timezone: zone, ...o });
    await producer.schedule('cu-latest', minuteCron, 'cu-task', { s: 'latest' }, opts({ catchUp: 'latest' }));
    await producer.schedule('cu-none', minuteCron, 'cu-task', { s: 'none' }, opts({ catchUp: 'none' }));
    await producer.schedule('cu-all', minuteCron, 'cu-task', { s: 'all' }, opts({ catchUp: 'all', maxCatchUp: 5 }));
    await producer.schedule('cu-latest-1s', '* * * * * *', 'cu-task', { s: 'latest-1s' }, opts({}));
    await producer.schedule('cu-none-1s', '* * * * * *', 'cu-task', { s: 'none-1s' }, opts({ catchUp: 'none' }));
    // The downtime: each schedule's place is moved back.
    await setNextSlot('cu-latest', new Date(last - 120_000)); // 3 missed: last-2m, last-1m, last
    await setNextSlot('cu-none', new Date(last - 120_000)); // 3 missed
    await setNextSlot('cu-all', new Date(last - 420_000)); // 8 missed
    const perSecondFrom = Math.floor(n0.getTime() / 1000) * 1000 - 120_000;
    await setNextSlot('cu-latest-1s', new Date(perSecondFrom)); // ~110 late slots and 10 on time
    await setNextSlot('cu-none-1s', new Date(perSecondFrom));

    // A worker without a scheduler runs the jobs (and reads the gauges); one scheduler round
    // by hand, counting into the worker's metrics.
    const seen = new Map<string, ScheduledSlot | null>();
    const worker = await workers.start(
      { 'cu-task': (_p: unknown, ctx) => void seen.set(ctx.job.id, ctx.job.schedule) },
      { scheduleIntervalMs: 0, max: 3, concurrency: 4 },
    );
    const before = await worker.metrics.text();
    // The lag is the age of the oldest slot due: about 150 s for cu-latest, 120 s for the per-second ones.
    const lagBefore = sample(before, 'skiplock_schedule_lag_seconds', 'cu-latest')!;
    expect(lagBefore).toBeGreaterThan(145);
    expect(lagBefore).toBeLessThan(160);
    expect(sample(before, 'skiplock_schedule_lag_seconds', 'cu-latest-1s')!).toBeGreaterThanOrEqual(120);
    expect(sample(before, 'skiplock_schedule_last_slot_timestamp_seconds', 'cu-latest')).toBeUndefined();

    const scheduler = new OneRoundScheduler({
      store: new ScheduleStore(db.pool, db.schema),
      intervalMs: 1000,
      batch: 100,
      logger: silentLogger(),
      metrics: worker.metrics,
    });
    await scheduler.runRound();

    const all = await db.rows<{ created_at: Date }>(`SELECT DISTINCT created_at FROM ${S}.jobs WHERE schedule_name LIKE 'cu-%'`);
    expect(all).toHaveLength(1); // one transaction
    const fireNow = all[0]!.created_at.getTime();
    const lateEnd = fireNow - LATE_SLOT_MS;
    expect(last).toBeLessThan(lateEnd); // the minute schedules' slots are all late

    const slots = async (name: string): Promise<number[]> => (await jobsOf(name)).map((j) => j.slot.getTime());
    expect(await slots('cu-latest')).toEqual([last]);
    expect(await slots('cu-none')).toEqual([]);
    expect(await slots('cu-all')).toEqual(every(last - 240_000, last, 60_000));
    // Per second: the on-time slots (within 10 s of the round) are enqueued by either policy,
    // and with them latest leaves out every late one.
    const onTime = every(Math.floor(lateEnd / 1000) * 1000 + 1000, fireNow, 1000);
    expect(onTime).toHaveLength(10);
    const lateCount = every(perSecondFrom, lateEnd, 1000).length;
    expect(lateCount).toBeGreaterThan(100);
    expect(await slots('cu-latest-1s')).toEqual(onTime);
    expect(await slots('cu-none-1s')).toEqual(onTime);
    // Each schedule moved on to its first slot after the round.
    for (const name of ['cu-latest', 'cu-none', 'cu-all']) expect((await scheduleRow(name))!.next_slot.getTime(), name).toBe(last + 60_000);
    for (const name of ['cu-latest-1s', 'cu-none-1s']) expect((await scheduleRow(name))!.next_slot.getTime(), name).toBe(onTime.at(-1)! + 1000);
    expect((await scheduleRow('cu-none'))!.last_slot).toBeNull();

    const after = await worker.metrics.text();
    const skipped = (name: string): number | undefined => sample(after, 'skiplock_schedule_slots_skipped_total', name);
    const enqueued = (name: string): number => sample(after, 'skiplock_schedule_jobs_enqueued_total', name) ?? 0;
    expect(skipped('cu-latest')).toBe(2);
    expect(skipped('cu-none')).toBe(3);
    expect(skipped('cu-all')).toBe(3);
    expect(skipped('cu-latest-1s')).toBe(lateCount);
    expect(skipped('cu-none-1s')).toBe(lateCount);
    expect([enqueued('cu-latest'), enqueued('cu-none'), enqueued('cu-all'), enqueued('cu-latest-1s'), enqueued('cu-none-1s')]).toEqual([1, 0, 5, 10, 10]);
    expect(sample(after, 'skiplock_schedule_lag_seconds', 'cu-latest')).toBe(0);
    expect(sample(after, 'skiplock_schedule_lag_seconds', 'cu-none')).toBe(0);
    expect(sample(after, 'skiplock_schedule_last_slot_timestamp_seconds', 'cu-latest')).toBe(last / 1000);
    expect(sample(after, 'skiplock_schedule_last_slot_timestamp_seconds', 'cu-none')).toBeUndefined();

    // The handlers: the catch-up runs are late, the on-time ones are not.
    const total = 1 + 5 + 10 + 10;
    await waitFor(async () => seen.size >= total || undefined, 10_000, 'the catch-up jobs to run');
    for (const name of ['cu-latest', 'cu-all', 'cu-latest-1s', 'cu-none-1s']) {
      for (const j of await jobsOf(name)) {
        const s = seen.get(j.id);
        expect(s, `${name} ${j.slot.toISOString()}`).toEqual({ name, slot: j.slot, late: name === 'cu-latest' || name === 'cu-all' });
      }
    }

    // A second round catches nothing up again: the minute schedules are not due.
    await scheduler.runRound();
    expect(await slots('cu-latest')).toEqual([last]);
    expect(await slots('cu-all')).toHaveLength(5);
    expect(await slots('cu-none')).toEqual([]);
    expect(sample(await worker.metrics.text(), 'skiplock_schedule_slots_skipped_total', 'cu-latest')).toBe(2);
  });
});

describe('definitions: races and semantics', () => {
  it('two concurrent schedule() calls on one name leave one row with one of the two payloads', async () => {
    const other = new pg.Pool({ connectionString: db.connectionString, max: 1 });
    const producer2 = new Producer({ pool: other, schema: db.schema });
    try {
      for (let i = 0; i < 8; i++) {
        const name = `def-race-${i}`;
        // a first definition raced by two, then a redefinition raced by two
        for (const round of ['create', 'redefine']) {
          const [a, b] = await Promise.all([
            producer.schedule(name, '0 0 * * *', 'd-task', { from: 'a', round }, { timezone: 'Europe/Berlin' }),
            producer2.schedule(name, '0 0 * * *', 'd-task', { from: 'b', round }, { timezone: 'Europe/Berlin' }),
          ]);
          expect(a.payload).toEqual({ from: 'a', round });
          expect(b.payload).toEqual({ from: 'b', round });
          const rows = await db.rows<{ payload: unknown; next_slot: Date }>(`SELECT payload, next_slot FROM ${S}.schedules WHERE name = $1`, [name]);
          expect(rows).toHaveLength(1);
          expect([
            { from: 'a', round },
            { from: 'b', round },
          ]).toContainEqual(rows[0]!.payload);
          expect(rows[0]!.next_slot).toEqual(a.nextSlot);
        }
      }
      expect((await producer.listSchedules()).filter((s) => s.name.startsWith('def-race-'))).toHaveLength(8);
    } finally {
      await other.end();
    }
  });

  it('redefining with the same cron and zone keeps the place; a new zone or cron restarts at the first slot after now; resume of an active schedule changes nothing', async () => {
    const t0 = await dbNow();
    // Asia/Kathmandu is UTC+5:45: its hours start at :15 UTC.
    const a = await producer.schedule('place', '0 * * * *', 'p-task', { v: 1 }, { timezone: 'Asia/Kathmandu' });
    expect(a.nextSlot!.getUTCMinutes()).toBe(15);
    expect(a.nextSlot!.getUTCSeconds()).toBe(0);
    expect(a.nextSlot!.getTime()).toBeGreaterThan(t0.getTime());
    expect(a.nextSlot!.getTime() - t0.getTime()).toBeLessThanOrEqual(3_600_000);

    // Downtime: the schedule's place is three hours back. A redefinition with the same
    // expression and zone (a worker re-declaring it at start) keeps it, so it is caught up.
    const past = new Date(a.nextSlot!.getTime() - 3 * 3_600_000);
    await setNextSlot('place', past);
    const b = await producer.schedule('place', '0 * * * *', 'p-task', { v: 2 }, { timezone: 'Asia/Kathmandu', priority: 3, catchUp: 'all', maxCatchUp: 2 });
    expect(b.nextSlot).toEqual(past);
    expect(b).toMatchObject({ payload: { v: 2 }, priority: 3, catchUp: 'all', maxCatchUp: 2 });
    // Surrounding whitespace is not a new expression.
    const b2 = await producer.schedule('place', '  0 * * * *  ', 'p-task', { v: 2 }, { timezone: 'Asia/Kathmandu' });
    expect(b2.nextSlot).toEqual(past);
    expect(b2.cron).toBe('0 * * * *');

    // Resuming an active schedule changes nothing.
    const r = await producer.resumeSchedule('place');
    expect(r.nextSlot).toEqual(past);
    expect(r.updatedAt).toEqual(b2.updatedAt);
    expect(r.paused).toBe(false);

    // The same expression in another zone: the first slot after now, in that zone.
    const t1 = await dbNow();
    const c = await producer.schedule('place', '0 * * * *', 'p-task', { v: 3 }, { timezone: 'UTC' });
    expect(c.nextSlot!.getUTCMinutes()).toBe(0);
    expect(c.nextSlot!.getTime()).toBeGreaterThan(t1.getTime());
    expect(c.nextSlot!.getTime() - t1.getTime()).toBeLessThanOrEqual(3_600_000);

    // A new expression: the first slot after now.
    await setNextSlot('place', past);
    const t2 = await dbNow();
    const d = await producer.schedule('place', '30 * * * *', 'p-task', { v: 4 }, { timezone: 'UTC' });
    const t3 = await dbNow();
    const expected = [new CronSchedule('30 * * * *', 'UTC').next(t2)!.getTime(), new CronSchedule('30 * * * *', 'UTC').next(t3)!.getTime()];
    expect(expected).toContain(d.nextSlot!.getTime());
    expect(d.nextSlot!.getUTCMinutes()).toBe(30);
    expect(d.nextSlot!.getTime()).toBeGreaterThan(t2.getTime());

    const list = await producer.listSchedules();
    expect(list.filter((s) => s.name === 'place')).toHaveLength(1);
    expect(list.find((s) => s.name === 'place')).toMatchObject({ cron: '30 * * * *', timezone: 'UTC', payload: { v: 4 }, nextSlot: d.nextSlot });
  });

  it('unschedule while a fireDue transaction holds the schedule: it waits, no error, no duplicate, the schedule is gone', async () => {
    const side = new pg.Pool({ connectionString: db.connectionString, max: 3 });
    const blocker = await side.connect();
    const lockKey = db.schema;
    try {
      // The fire statement of rm-1s waits on an advisory lock the test holds: its
      // transaction has locked the schedule row (lockDue) and stays open until the test says.
      await db.pool.query(`
        CREATE FUNCTION ${S}.hold_fire() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_advisory_xact_lock(hashtext('${lockKey}')); RETURN NEW; END $$;
        CREATE TRIGGER hold_fire BEFORE INSERT ON ${S}.jobs FOR EACH ROW WHEN (NEW.schedule_name = 'rm-1s') EXECUTE FUNCTION ${S}.hold_fire();`);
      await blocker.query('SELECT pg_advisory_lock(hashtext($1))', [lockKey]);
      await producer.schedule('rm-1s', '* * * * * *', 'rm-task', {}, { timezone: 'Europe/Lisbon' });
      const from = Math.floor((await dbNow()).getTime() / 1000) * 1000 - 2000;
      await setNextSlot('rm-1s', new Date(from)); // three slots due, on time

      const store = new ScheduleStore(side, db.schema);
      const firing = store.fireDue(100, decide);
      const waitingOn = (what: string, like: string, event: string): Promise<true> =>
        waitFor(
          async () => {
            const [row] = await db.rows<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = $2 AND query LIKE $1`,
              [like, event],
            );
            return row!.n === 1 || undefined;
          },
          10_000,
          what,
        );
      await waitingOn('the fire statement to wait on the advisory lock', `%INSERT INTO ${S}.jobs%`, 'advisory');

      // Another scheduler passes the locked row over at once.
      const meanwhile = await new ScheduleStore(side, db.schema).fireDue(100, decide);
      expect(meanwhile).toEqual({ schedules: 0, enqueued: new Map(), duplicates: 0 });

      let removed = false;
      const removing = producer.unschedule('rm-1s').then(() => {
        removed = true;
      });
      await waitingOn('the DELETE to wait for the schedule row', `%DELETE FROM ${S}.schedules%`, 'transactionid');
      expect(removed).toBe(false);
      expect(await jobsOf('rm-1s')).toEqual([]);

      await blocker.query('SELECT pg_advisory_unlock(hashtext($1))', [lockKey]);
      const fired = await firing;
      await removing; // no error
      expect(removed).toBe(true);
      expect(fired.schedules).toBe(1);
      expect(fired.duplicates).toBe(0);
      const jobs = await jobsOf('rm-1s');
      expect(fired.enqueued.get('rm-1s')).toBe(jobs.length);
      expect(jobs.length).toBeGreaterThanOrEqual(3);
      expect(jobs.map((j) => j.slot.getTime())).toEqual(every(from, from + (jobs.length - 1) * 1000, 1000));
      expect(await scheduleRow('rm-1s')).toBeUndefined();
      expect((await producer.listSchedules()).map((s) => s.name)).not.toContain('rm-1s');

      // Gone for good: later rounds enqueue nothing of it, and it cannot be removed twice.
      await delay(1100);
      expect(await store.fireDue(100, decide)).toMatchObject({ schedules: 0 });
      expect(await jobsOf('rm-1s')).toHaveLength(jobs.length);
      expect(await failure(() => producer.unschedule('rm-1s'))).toBeInstanceOf(UnknownScheduleError);
    } finally {
      await blocker.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
      blocker.release();
      await side.end();
      await db.pool.query(`DROP TRIGGER IF EXISTS hold_fire ON ${S}.jobs`);
    }
  });

  it('pause stops enqueueing while workers run; resume starts at the first slot after now, without the paused slots', async () => {
    const ran: string[] = [];
    await workers.start({ 'pz-task': (_p: unknown, ctx) => void ran.push(ctx.job.id) }, { scheduleIntervalMs: 200, max: 3, concurrency: 2 });
    await producer.schedule('pz-1s', '* * * * * *', 'pz-task', { p: 1 }, { timezone: 'America/Sao_Paulo' });
    await waitFor(async () => (await jobsOf('pz-1s')).length >= 2 || undefined, 10_000, 'two slots of pz-1s');

    const paused = await producer.pauseSchedule('pz-1s');
    expect(paused.paused).toBe(true);
    const atPause = await jobsOf('pz-1s');
    const lastBefore = atPause.at(-1)!.slot.getTime();
    expect((await producer.listSchedules()).find((s) => s.name === 'pz-1s')!.paused).toBe(true);
    await delay(2500); // ~12 scheduler rounds
    expect(await jobsOf('pz-1s')).toEqual(atPause);

    // Resume: the first slot after now. The paused slots are a few seconds old (on time, not
    // late), so a resume that kept the place would enqueue them all.
    const t = await dbNow();
    const resumed = await producer.resumeSchedule('pz-1s');
    expect(resumed.paused).toBe(false);
    expect(resumed.nextSlot!.getTime()).toBeGreaterThan(t.getTime());
    expect(resumed.nextSlot!.getTime() - t.getTime()).toBeLessThanOrEqual(1100);
    expect(resumed.nextSlot!.getTime() - lastBefore).toBeGreaterThanOrEqual(3000);
    await waitFor(async () => (await jobsOf('pz-1s')).length >= atPause.length + 2 || undefined, 10_000, 'two slots after the resume');
    await producer.pauseSchedule('pz-1s');
    const afterResume = (await jobsOf('pz-1s')).slice(atPause.length).map((j) => j.slot.getTime());
    expect(afterResume[0]).toBe(resumed.nextSlot!.getTime());
    expect(afterResume).toEqual(every(resumed.nextSlot!, afterResume.at(-1)!, 1000));
    // The jobs ran: pausing a schedule does not pause its jobs.
    await waitFor(async () => ran.length >= atPause.length + afterResume.length || undefined, 10_000, 'the jobs to run');
  });
});

describe('a schedule with no more slots', () => {
  it("is listed with nextSlot null ('infinity' in the table), and pause and resume still answer", async () => {
    await producer.schedule('no-more', '0 0 1 1 *', 't', {});
    await db.rows(`UPDATE ${S}.schedules SET next_slot = 'infinity' WHERE name = 'no-more'`);
    const listed = (await producer.listSchedules()).find((s) => s.name === 'no-more');
    expect(listed?.nextSlot).toBeNull();
    expect((await producer.pauseSchedule('no-more')).nextSlot).toBeNull();
    expect((await producer.resumeSchedule('no-more')).nextSlot).toBeInstanceOf(Date);
    await producer.unschedule('no-more');
  });
});

describe('bad definitions', () => {
  it('are refused with SkiplockError before any query; unknown names get UnknownScheduleError', async () => {
    // A producer whose pool counts what it is asked (and could not connect anyway).
    const offline = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/none', max: 1, connectionTimeoutMillis: 2000 });
    const queried = vi.spyOn(offline, 'query');
    const connected = vi.spyOn(offline, 'connect');
    const offlineProducer = new Producer({ pool: offline, schema: db.schema });
    const bad: Array<[string, string, ScheduleOptions | Record<string, unknown>, RegExp]> = [
      ['bad-cron', 'every minute', {}, /invalid cron expression/],
      ['bad-cron-range', '61 * * * *', {}, /invalid cron expression/],
      ['bad-7-fields', '0 * * * * * 2030', {}, /expected 5 fields .* or 6 .*got 7/],
      ['bad-4-fields', '* * * *', {}, /got 4/],
      ['bad-zone', '* * * * *', { timezone: 'Mars/Olympus_Mons' }, /unknown time zone "Mars\/Olympus_Mons"/],
      ['bad-max-1', '* * * * *', { maxCatchUp: 5 }, /maxCatchUp goes with catchUp "all"/],
      ['bad-max-2', '* * * * *', { catchUp: 'latest', maxCatchUp: 5 }, /maxCatchUp goes with catchUp "all"/],
      ['bad-max-3', '* * * * *', { catchUp: 'none', maxCatchUp: 5 }, /maxCatchUp goes with catchUp "all"/],
      ['bad-max-4', '* * * * *', { catchUp: 'all', maxCatchUp: 0 }, /maxCatchUp/],
      ['bad-policy', '* * * * *', { catchUp: 'some' }, /invalid catch-up policy "some"/],
      ['bad-field', '* * * * *', { catchup: 'all' }, /unknown schedule field "catchup"/],
      ['bad-field-2', '* * * * *', { every: '5m' }, /unknown schedule field "every"/],
      ['bad name', '* * * * *', {}, /invalid schedule name/],
    ];
    for (const [name, cron, options, message] of bad) {
      for (const p of [producer, offlineProducer]) {
        const err = await failure(() => p.schedule(name, cron, 't', {}, options as ScheduleOptions));
        expect(err, `${name}: ${err.message}`).toBeInstanceOf(SkiplockError);
        expect(err).not.toBeInstanceOf(UnknownScheduleError);
        expect(err.message, name).toMatch(message);
      }
    }
    expect(queried).not.toHaveBeenCalled();
    expect(connected).not.toHaveBeenCalled();
    expect(await db.rows(`SELECT name FROM ${S}.schedules`)).toEqual([]);
    // The control: a good definition does go to that pool (and fails there).
    const err = await failure(() => offlineProducer.schedule('good', '* * * * *', 't'));
    expect(err).not.toBeInstanceOf(UnknownScheduleError);
    expect(queried.mock.calls.length + connected.mock.calls.length).toBeGreaterThan(0);
    await offline.end();

    for (const call of [() => producer.unschedule('missing-x'), () => producer.pauseSchedule('missing-x'), () => producer.resumeSchedule('missing-x')]) {
      const e = await failure(call);
      expect(e).toBeInstanceOf(UnknownScheduleError);
      expect(e).toBeInstanceOf(SkiplockError);
      expect((e as UnknownScheduleError).schedule).toBe('missing-x');
    }
    expect(await db.rows(`SELECT name FROM ${S}.schedules`)).toEqual([]);
  });
});

describe('metrics', () => {
  it("a worker's scheduler counts enqueued slots; last slot and lag gauges follow the schedule", async () => {
    const worker = await workers.start({ 'm-task': () => undefined }, { scheduleIntervalMs: 200, max: 3, concurrency: 2 });
    const enqueued = async (): Promise<number> => sample(await worker.metrics.text(), 'skiplock_schedule_jobs_enqueued_total', 'm-1s') ?? 0;
    expect(await enqueued()).toBe(0);
    await producer.schedule('m-1s', '* * * * * *', 'm-task', {}, { timezone: 'Asia/Tokyo' });
    const v1 = await waitFor(async () => (await enqueued()) || undefined, 5000, 'a first slot counted');
    const v2 = await waitFor(async () => {
      const v = await enqueued();
      return v > v1 ? v : undefined;
    }, 5000, 'the counter to grow');
    expect(v2).toBeGreaterThan(v1);

    const text = await worker.metrics.text();
    const row = (await scheduleRow('m-1s'))!;
    const lastSlot = sample(text, 'skiplock_schedule_last_slot_timestamp_seconds', 'm-1s')!;
    expect(Number.isInteger(lastSlot)).toBe(true);
    expect(row.last_slot!.getTime() / 1000 - lastSlot).toBeGreaterThanOrEqual(0);
    expect(row.last_slot!.getTime() / 1000 - lastSlot).toBeLessThanOrEqual(1);
    const lag = sample(text, 'skiplock_schedule_lag_seconds', 'm-1s')!;
    expect(lag).toBeGreaterThanOrEqual(0);
    expect(lag).toBeLessThan(1.5);

    // Frozen by a pause: the counter is the number of jobs, the lag is no longer reported.
    await producer.pauseSchedule('m-1s');
    const jobs = (await jobsOf('m-1s')).length;
    await waitFor(async () => (await enqueued()) === jobs || undefined, 2000, 'the counter to match the jobs');
    const frozen = await worker.metrics.text();
    expect(sample(frozen, 'skiplock_schedule_lag_seconds', 'm-1s')).toBeUndefined();
    expect(sample(frozen, 'skiplock_schedule_last_slot_timestamp_seconds', 'm-1s')).toBe((await scheduleRow('m-1s'))!.last_slot!.getTime() / 1000);
    expect(frozen).toContain('skiplock_schedule_errors_total 0');
    // Removed: both gauges drop it.
    await producer.unschedule('m-1s');
    const gone = await worker.metrics.text();
    expect(sample(gone, 'skiplock_schedule_last_slot_timestamp_seconds', 'm-1s')).toBeUndefined();
    expect(sample(gone, 'skiplock_schedule_lag_seconds', 'm-1s')).toBeUndefined();
    expect(sample(gone, 'skiplock_schedule_jobs_enqueued_total', 'm-1s')).toBe(jobs);
  });
});
