import type { TaskHandler } from '../../../src/index.js';

/**
 * The task of schedules.chaos.ts's schedules. Every execution inserts a row into the table
 * named by CHAOS_LEDGER_TABLE (the chaos ledger, to which that scenario adds the columns
 * schedule_name, slot and late): the job, its attempt, this pid and what the handler sees
 * of its schedule (ctx.job.schedule). Nothing else; it declares no schedule of its own (the
 * other scenarios' workers load this directory too).
 */
const schedulesTick: TaskHandler<unknown> = async (_payload, ctx) => {
  const table = process.env.CHAOS_LEDGER_TABLE;
  if (!table || !/^[a-z0-9_]+\.[a-z0-9_]+$/.test(table)) throw new Error('CHAOS_LEDGER_TABLE is not set to schema.table');
  const { job } = ctx;
  const s = job.schedule;
  await ctx.pool.query(
    `INSERT INTO ${table} (job_id, attempt, pid, schedule_name, slot, late, finished_at) VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp())`,
    [job.id, job.attempt, process.pid, s?.name ?? null, s?.slot ?? null, s?.late ?? null],
  );
};

export default schedulesTick;
