import { setTimeout as delay } from 'node:timers/promises';
import type { TaskHandler } from '../../../src/index.js';

/**
 * Chaos test task. Every execution inserts a row into the table named by CHAOS_LEDGER_TABLE
 * (job_id, attempt, pid, started_at; see test/chaos/harness.ts) as soon as it starts, sleeps
 * `ms` honouring ctx.signal, then sets the row's finished_at. With `tx` the finished_at update
 * runs in ctx.transaction, so it commits together with the job's completion: a ledger row has
 * a finished_at exactly when its execution is the one that completed the job.
 *
 * The rest of the payload scripts a stale worker for the fencing scenario (attempt 1 only):
 * - `freeze`: after the sleep, stop this whole process (SIGSTOP to itself, as a long GC
 *   pause or a frozen VM would) until the test sends SIGCONT; then return at once, so the
 *   worker's complete() is the first thing it sends after it wakes up (before any timer).
 * - `afterFreeze`: after the sleep, wait until a `freeze` handler of this process has been
 *   continued, then finish (or throw, with `throwOnAttempt`), again before any timer runs.
 * - `throwOnAttempt`: throw at the end of that attempt instead of succeeding.
 * - `msOnRetry`: the sleep of attempts after the first (default `ms`).
 */
export interface ChaosPayload {
  ms?: number;
  msOnRetry?: number;
  tx?: boolean;
  freeze?: boolean;
  afterFreeze?: boolean;
  throwOnAttempt?: number;
}

let thawed: (() => void) | undefined;
const thaw = new Promise<void>((resolve) => {
  thawed = resolve;
});

const chaosLedger: TaskHandler<ChaosPayload> = async (payload, ctx) => {
  const table = process.env.CHAOS_LEDGER_TABLE;
  if (!table || !/^[a-z0-9_]+\.[a-z0-9_]+$/.test(table)) throw new Error('CHAOS_LEDGER_TABLE is not set to schema.table');
  const { job } = ctx;
  const inserted = await ctx.pool.query<{ id: string }>(`INSERT INTO ${table} (job_id, attempt, pid) VALUES ($1, $2, $3) RETURNING id`, [
    job.id,
    job.attempt,
    process.pid,
  ]);
  const rowId = inserted.rows[0]?.id;
  const ms = job.attempt > 1 ? (payload.msOnRetry ?? payload.ms ?? 0) : (payload.ms ?? 0);
  if (ms > 0) await delay(ms, undefined, { signal: ctx.signal });

  if (job.attempt === 1 && payload.freeze) {
    process.kill(process.pid, 'SIGSTOP'); // returns once the test sends SIGCONT
    thawed?.();
    return; // nothing async in between: the completion goes out before the heartbeat runs
  }
  if (job.attempt === 1 && payload.afterFreeze) {
    await thaw;
    if (payload.throwOnAttempt === 1) throw new Error(`chaos: scripted failure of attempt 1 of job ${job.id}`);
    return;
  }
  if (payload.throwOnAttempt === job.attempt) throw new Error(`chaos: scripted failure of attempt ${job.attempt} of job ${job.id}`);

  const finish = `UPDATE ${table} SET finished_at = clock_timestamp() WHERE id = $1`;
  if (payload.tx) await ctx.transaction((client) => client.query(finish, [rowId]));
  else await ctx.pool.query(finish, [rowId]);
};

export default chaosLedger;
