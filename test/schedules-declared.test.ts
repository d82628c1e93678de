import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Job, SkiplockError, type TaskSchedule, Worker, loadTaskDirectory } from '../src/index.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

// Schedules declared with their tasks (`export const schedule`, or `{ handler, schedule }`):
// created at worker start, updated in place, and a restart keeps their place.
const { db, workers } = useTestSchema('sched_decl', { max: 4 });
const S = `"${db.schema}"`;
const dir = mkdtempSync(path.join(tmpdir(), 'skiplock-decl-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface ScheduleRow {
  name: string;
  cron: string;
  timezone: string;
  task: string;
  payload: unknown;
  next_slot: Date;
}

async function scheduleRows(): Promise<ScheduleRow[]> {
  return db.rows<ScheduleRow>(`SELECT name, cron, timezone, task, payload, next_slot FROM ${S}.schedules ORDER BY name`);
}

describe('declared schedules', () => {
  it('a task file that exports a schedule creates it at worker start; its jobs carry the slot', async () => {
    writeFileSync(
      path.join(dir, 'tick.mjs'),
      `export const schedule = { cron: '* * * * * *', timezone: 'Asia/Kolkata', payload: { from: 'file' } };
       export default async function tick() {}`,
    );
    writeFileSync(path.join(dir, 'plain.mjs'), 'export default async function plain() {}');
    const tasks = await loadTaskDirectory(dir);
    expect(Object.keys(tasks).sort()).toEqual(['plain', 'tick']);
    const seen: Job[] = [];
    const tick = tasks.tick as { handler: (p: never, ctx: { job: Job }) => unknown; schedule: TaskSchedule };
    expect(tick.schedule).toEqual({ cron: '* * * * * *', timezone: 'Asia/Kolkata', payload: { from: 'file' } });
    const worker = await workers.start(
      { ...tasks, tick: { ...tick, handler: (_p: never, ctx: { job: Job }) => void seen.push(ctx.job) } },
      { scheduleIntervalMs: 200 },
    );
    const rows = await scheduleRows();
    expect(rows).toMatchObject([{ name: 'tick', cron: '* * * * * *', timezone: 'Asia/Kolkata', task: 'tick', payload: { from: 'file' } }]);
    await waitFor(async () => seen.length >= 2 || undefined, 10_000, 'two scheduled runs');
    expect(seen[0]!.schedule).toMatchObject({ name: 'tick', late: false });
    expect(seen[0]!.schedule!.slot.getMilliseconds()).toBe(0);
    expect(seen[0]!.payload).toEqual({ from: 'file' });
    await worker.stop({ graceMs: 0 });
  });

  it('a restart with the same expression and zone keeps the place: slots due while it was down are caught up', async () => {
    // Down for a minute: the schedule's next slot is moved a minute back.
    await db.rows(`UPDATE ${S}.jobs SET status = 'succeeded' WHERE status <> 'succeeded'`);
    const [before] = await db.rows<{ next_slot: Date }>(
      `UPDATE ${S}.schedules SET next_slot = date_trunc('second', now()) - interval '60 seconds' WHERE name = 'tick' RETURNING next_slot`,
    );
    const late: Job[] = [];
    const tasks = await loadTaskDirectory(dir);
    const tick = tasks.tick as { handler: unknown; schedule: TaskSchedule };
    // Restarted with the catch-up policy changed to "all" (5 at most): the expression and zone
    // are the same, so the upsert at start keeps next_slot and the missed minute is caught up.
    const declared = { ...(tick.schedule as object), cron: '* * * * * *', catchUp: 'all' as const, maxCatchUp: 5 };
    const worker = await workers.start(
      { ...tasks, tick: { schedule: declared, handler: (_p: never, ctx: { job: Job }) => void (ctx.job.schedule?.late && late.push(ctx.job)) } },
      { scheduleIntervalMs: 200 },
    );
    await waitFor(async () => late.length >= 5 || undefined, 10_000, 'the catch-up of the missed minute');
    await new Promise((r) => setTimeout(r, 500));
    expect(late).toHaveLength(5);
    const slots = late.map((j) => j.schedule!.slot.getTime()).sort((a, b) => a - b);
    expect(slots[0]).toBeGreaterThanOrEqual(before!.next_slot.getTime());
    // the 5 most recent missed slots: consecutive seconds, each more than 10 s before its job
    expect(slots.map((t) => t - slots[0]!)).toEqual([0, 1000, 2000, 3000, 4000]);
    for (const job of late) expect(job.createdAt.getTime() - job.schedule!.slot.getTime()).toBeGreaterThan(10_000);
    await worker.stop({ graceMs: 0 });
  });

  it('a changed declaration updates the schedule and starts from its first slot after now', async () => {
    const worker = await workers.start({ tick: { handler: async () => undefined, schedule: { cron: '0 0 1 1 *', payload: { v: 2 } } } }, { scheduleIntervalMs: 0 });
    const [row] = await scheduleRows();
    expect(row).toMatchObject({ name: 'tick', cron: '0 0 1 1 *', timezone: 'UTC', payload: { v: 2 } });
    expect(row!.next_slot.getUTCMonth()).toBe(0);
    expect(row!.next_slot.getUTCDate()).toBe(1);
    expect(row!.next_slot.getTime()).toBeGreaterThan(Date.now());
    await worker.stop({ graceMs: 0 });
  });

  it('a bad declared schedule fails the Worker constructor, naming the task', () => {
    const make = (schedule: string): Worker => new Worker({ pool: db.pool, schema: db.schema, tasks: { nightly: { handler: async () => undefined, schedule } } });
    expect(() => make('61 * * * *')).toThrow(SkiplockError);
    expect(() => make('61 * * * *')).toThrow(/task nightly's schedule: invalid cron expression/);
    expect(() => new Worker({ pool: db.pool, schema: db.schema, tasks: { a: { handler: async () => undefined, schedule: { cron: '* * * * *', timezone: 'Mars/Base' } } } })).toThrow(
      /unknown time zone/,
    );
    expect(() =>
      new Worker({
        pool: db.pool,
        schema: db.schema,
        tasks: { a: { handler: async () => undefined, schedule: { cron: '* * * * *', name: 'same' } }, b: { handler: async () => undefined, schedule: { cron: '* * * * *', name: 'same' } } },
      }),
    ).toThrow(/schedule same is declared by two tasks/);
  });
});
