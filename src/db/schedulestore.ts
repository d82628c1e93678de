import type pg from 'pg';
import { channelFor } from '../config.js';
import type { NormalizedSchedule } from '../producer/schedulespec.js';
import type { CatchUp } from '../schedules/cron.js';
import { checkout } from './pool.js';
import { type NamedQuery, loadQueryFile } from './queries.js';

const SCHEDULE_QUERIES = ['now', 'upsert', 'list', 'get', 'remove', 'pause', 'resume', 'anyDue', 'lockDue', 'fire'] as const;

/** A schedule as stored (`skiplock schedules list`, producer.listSchedules()). */
export interface ScheduleInfo {
  readonly name: string;
  readonly cron: string;
  readonly timezone: string;
  readonly task: string;
  readonly payload: unknown;
  readonly queue: string;
  readonly priority: number;
  readonly maxAttempts: number;
  readonly timeoutMs: number | null;
  readonly concurrencyKey: string | null;
  readonly concurrencyLimit: number | null;
  readonly catchUp: CatchUp;
  readonly maxCatchUp: number;
  readonly paused: boolean;
  /** The next slot to enqueue (null: the expression has no more). */
  readonly nextSlot: Date | null;
  /** The last slot enqueued, and when (null: none yet). */
  readonly lastSlot: Date | null;
  readonly lastEnqueuedAt: Date | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

interface ScheduleRow {
  name: string;
  cron: string;
  timezone: string;
  task: string;
  payload: unknown;
  queue: string;
  priority: number;
  max_attempts: number;
  timeout_ms: number | null;
  concurrency_key: string | null;
  concurrency_limit: number | null;
  catch_up: CatchUp;
  max_catch_up: number;
  paused: boolean;
  /** 'infinity' (an expression with no more slots) comes back from pg as the number Infinity. */
  next_slot: Date | number;
  last_slot: Date | null;
  last_enqueued_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

function infoOf(row: ScheduleRow): ScheduleInfo {
  const next = row.next_slot instanceof Date ? row.next_slot : null;
  const nextSlot = next !== null && Number.isFinite(next.getTime()) ? next : null;
  return {
    name: row.name,
    cron: row.cron,
    timezone: row.timezone,
    task: row.task,
    payload: row.payload,
    queue: row.queue,
    priority: row.priority,
    maxAttempts: row.max_attempts,
    timeoutMs: row.timeout_ms,
    concurrencyKey: row.concurrency_key,
    concurrencyLimit: row.concurrency_limit,
    catchUp: row.catch_up,
    maxCatchUp: row.max_catch_up,
    paused: row.paused,
    nextSlot,
    lastSlot: row.last_slot,
    lastEnqueuedAt: row.last_enqueued_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** A due schedule, locked by the caller's transaction (ScheduleStore.fireDue). */
export interface DueSchedule {
  readonly name: string;
  readonly cron: string;
  readonly timezone: string;
  readonly catchUp: CatchUp;
  readonly maxCatchUp: number;
  readonly nextSlot: Date;
}

/** What a scheduler decided for one due schedule. */
export interface FireDecision {
  readonly name: string;
  /** Slots to enqueue, one job each. */
  readonly slots: readonly Date[];
  /** Its next slot after now; null when the expression has no more. */
  readonly next: Date | null;
}

/** What one fireDue call did. */
export interface FireResult {
  /** Schedules locked and moved on. */
  readonly schedules: number;
  /** Jobs enqueued per schedule name. */
  readonly enqueued: ReadonlyMap<string, number>;
  /** Slots asked for but already there (held back by the unique index). */
  readonly duplicates: number;
}

/**
 * The statements on schedules (sql/queries/schedules.sql): definitions for the producer and
 * the CLI, and the schedulers' one transaction that turns due slots into jobs.
 */
export class ScheduleStore {
  private readonly queries: Readonly<Record<(typeof SCHEDULE_QUERIES)[number], NamedQuery>>;
  private readonly jobsChannel: string;

  constructor(
    private readonly pool: pg.Pool,
    readonly schema: string,
  ) {
    this.queries = loadQueryFile('schedules.sql', SCHEDULE_QUERIES, schema);
    this.jobsChannel = channelFor(schema);
  }

  /** The database clock. */
  async now(): Promise<Date> {
    return (await this.pool.query<{ now: Date }>(this.queries.now)).rows[0]!.now;
  }

  /** Creates or redefines a schedule; `firstSlot` applies when it is new or its expression or zone changed. */
  async upsert(s: NormalizedSchedule, firstSlot: Date | null): Promise<{ schedule: ScheduleInfo; created: boolean }> {
    const res = await this.pool.query<ScheduleRow & { created: boolean }>({
      ...this.queries.upsert,
      values: [
        s.name,
        s.cron,
        s.timezone,
        s.task,
        s.payload,
        s.queue,
        s.priority,
        s.maxAttempts,
        s.timeoutMs,
        s.concurrencyKey,
        s.concurrencyLimit,
        s.catchUp,
        s.maxCatchUp,
        firstSlot ?? 'infinity',
      ],
    });
    const row = res.rows[0]!;
    return { schedule: infoOf(row), created: row.created };
  }

  async list(): Promise<ScheduleInfo[]> {
    return (await this.pool.query<ScheduleRow>(this.queries.list)).rows.map(infoOf);
  }

  /** One schedule; undefined when there is none of that name. */
  async get(name: string): Promise<ScheduleInfo | undefined> {
    const row = (await this.pool.query<ScheduleRow>({ ...this.queries.get, values: [name] })).rows[0];
    return row && infoOf(row);
  }

  /** Deletes a schedule; false when there was none of that name. */
  async remove(name: string): Promise<boolean> {
    return ((await this.pool.query({ ...this.queries.remove, values: [name] })).rowCount ?? 0) > 0;
  }

  /** Pauses a schedule; undefined when there is none of that name. */
  async pause(name: string): Promise<ScheduleInfo | undefined> {
    const row = (await this.pool.query<ScheduleRow>({ ...this.queries.pause, values: [name] })).rows[0];
    return row && infoOf(row);
  }

  /** Resumes a paused schedule at `firstSlot` (its first slot after now); undefined when there is none of that name. */
  async resume(name: string, firstSlot: Date | null): Promise<ScheduleInfo | undefined> {
    const row = (await this.pool.query<ScheduleRow>({ ...this.queries.resume, values: [name, firstSlot ?? 'infinity'] })).rows[0];
    return row && infoOf(row);
  }

  /** Whether any schedule is due (one index probe, no lock). */
  async anyDue(): Promise<boolean> {
    return (await this.pool.query<{ due: boolean }>(this.queries.anyDue)).rows[0]?.due ?? false;
  }

  /**
   * One scheduler round, in one transaction: locks up to `limit` due schedules (SKIP LOCKED:
   * those another scheduler holds are its business), asks `decide` what to enqueue at the
   * database time, then enqueues those slots and moves each schedule on in one statement.
   * A crash or a lost connection before the commit undoes all of it, so a slot becomes a job
   * exactly when its schedule moves past it.
   */
  async fireDue(limit: number, decide: (due: readonly DueSchedule[], now: Date) => FireDecision[]): Promise<FireResult> {
    const { client, release } = await checkout(this.pool);
    try {
      await client.query('BEGIN');
      try {
        const rows = (
          await client.query<{ name: string; cron: string; timezone: string; catch_up: CatchUp; max_catch_up: number; next_slot: Date; now: Date }>({
            ...this.queries.lockDue,
            values: [limit],
          })
        ).rows;
        if (rows.length === 0) {
          await client.query('COMMIT');
          return { schedules: 0, enqueued: new Map(), duplicates: 0 };
        }
        const now = rows[0]!.now;
        const due = rows.map((r) => ({ name: r.name, cron: r.cron, timezone: r.timezone, catchUp: r.catch_up, maxCatchUp: r.max_catch_up, nextSlot: r.next_slot }));
        const decisions = decide(due, now);
        const names: string[] = [];
        const slots: Date[] = [];
        for (const d of decisions) {
          for (const slot of d.slots) {
            names.push(d.name);
            slots.push(slot);
          }
        }
        const res = await client.query<{ inserted: string[]; moved: number }>({
          ...this.queries.fire,
          values: [
            names,
            slots,
            decisions.map((d) => d.name),
            decisions.map((d) => d.next ?? 'infinity'),
            decisions.map((d) => (d.slots.length > 0 ? d.slots[d.slots.length - 1]! : null)),
            this.jobsChannel,
          ],
        });
        await client.query('COMMIT');
        const enqueued = new Map<string, number>();
        const inserted = res.rows[0]?.inserted ?? [];
        for (const name of inserted) enqueued.set(name, (enqueued.get(name) ?? 0) + 1);
        return { schedules: decisions.length, enqueued, duplicates: names.length - inserted.length };
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    } finally {
      release();
    }
  }
}
