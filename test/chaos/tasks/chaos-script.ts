import { setTimeout as delay } from 'node:timers/promises';
import type { TaskHandler } from '../../../src/index.js';

/**
 * Chaos test task for scenarios that send a job round more than once by hand (cancel, then
 * retry): like chaos-ledger it records every execution in the table named by
 * CHAOS_LEDGER_TABLE (job_id, attempt, pid, started_at, finished_at), but what it does
 * depends on whether the job has run before, as told by the ledger, not by the attempt
 * number (a retry resets attempts, so a retried job starts again at attempt 1):
 * - `ms`: sleep of the first execution, honouring ctx.signal; `msAgain`: of later ones.
 * - `failFirst`: the first execution throws at the end (with max_attempts 1: the job fails).
 * - `tx`: the finished_at update commits in ctx.transaction together with the completion,
 *   so a ledger row has a finished_at exactly when its execution completed the job.
 */
export interface ChaosScriptPayload {
  ms?: number;
  msAgain?: number;
  failFirst?: boolean;
  tx?: boolean;
}

const chaosScript: TaskHandler<ChaosScriptPayload> = async (payload, ctx) => {
  const table = process.env.CHAOS_LEDGER_TABLE;
  if (!table || !/^[a-z0-9_]+\.[a-z0-9_]+$/.test(table)) throw new Error('CHAOS_LEDGER_TABLE is not set to schema.table');
  const { job } = ctx;
  const inserted = await ctx.pool.query<{ id: string; again: boolean }>(
    `INSERT INTO ${table} (job_id, attempt, pid) VALUES ($1, $2, $3)
     RETURNING id, EXISTS (SELECT 1 FROM ${table} WHERE job_id = $1) AS again`,
    [job.id, job.attempt, process.pid],
  );
  const rowId = inserted.rows[0]?.id;
  // The EXISTS runs on the statement's snapshot: it sees earlier executions, not this row.
  const again = inserted.rows[0]?.again === true;
  const ms = again ? (payload.msAgain ?? payload.ms ?? 0) : (payload.ms ?? 0);
  if (ms > 0) await delay(ms, undefined, { signal: ctx.signal });
  if (payload.failFirst && !again) throw new Error(`chaos: scripted failure of the first execution of job ${job.id}`);

  const finish = `UPDATE ${table} SET finished_at = clock_timestamp() WHERE id = $1`;
  if (payload.tx) await ctx.transaction((client) => client.query(finish, [rowId]));
  else await ctx.pool.query(finish, [rowId]);
};

export default chaosScript;
