/**
 * The scenario's database: a schema of its own with the jobs table, the ledger the
 * chaos-ledger task writes (one row per execution) and a producer; enqueueing and draining.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type pg from 'pg';
import { Producer } from '../../../src/index.js';
import { type TestSchema, createTestSchema } from '../../helpers/db.js';
import { waitFor } from '../../helpers/wait.js';
import type { ChaosPayload } from '../tasks/chaos-ledger.js';
import type { WorkerFleet } from './fleet.js';

export type { ChaosPayload } from '../tasks/chaos-ledger.js';

/** The task directory the fleet's workers load, and the task that writes the ledger. */
export const CHAOS_TASKS = 'test/chaos/tasks';
export const CHAOS_TASK = 'chaos-ledger';

export interface ChaosDb {
  readonly db: TestSchema;
  /** schema.ledger, for CHAOS_LEDGER_TABLE. */
  readonly ledger: string;
  readonly producer: Producer;
  readonly jobsTable: string;
  /** Rows of a query on the test pool. */
  rows<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  count(text: string, values?: unknown[]): Promise<number>;
  /** How many jobs of the schema have succeeded. */
  succeeded(): Promise<number>;
  /** Errors of idle test-pool connections (server restarts, terminated backends). */
  readonly poolErrors: string[];
  drop(): Promise<void>;
}

/** A fresh schema (t_chaos_<name>_<random>) with the jobs table and a ledger. */
export async function createChaosDb(name: string): Promise<ChaosDb> {
  const db = await createTestSchema(`chaos_${name}`, { max: 6 });
  const poolErrors: string[] = [];
  // The test's own pool must survive a server restart: an idle client's error is not fatal.
  db.pool.on('error', (err) => poolErrors.push(err.message));
  const ledger = `${db.schema}.ledger`;
  await db.pool.query(`CREATE TABLE ${ledger} (
    id          bigserial PRIMARY KEY,
    job_id      bigint NOT NULL,
    attempt     integer NOT NULL,
    pid         integer NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz)`);
  await db.pool.query(`CREATE INDEX ON ${ledger} (job_id, attempt)`);
  const producer = new Producer({ pool: db.pool, schema: db.schema });
  const rows = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => (await db.pool.query<R>(text, values)).rows;
  const count = async (text: string, values: unknown[] = []): Promise<number> => {
    const [row] = await rows<{ n: string }>(text, values);
    return Number(row?.n ?? 0);
  };
  return {
    db,
    ledger,
    producer,
    jobsTable: `"${db.schema}".jobs`,
    rows,
    count,
    succeeded: () => count(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE status = 'succeeded'`),
    poolErrors,
    async drop(): Promise<void> {
      await waitFor(async () => (await db.pool.query('SELECT 1')).rowCount === 1, 60_000, 'the server to answer before dropping the schema', {
        intervalMs: 250,
        retryOnError: true,
      });
      await db.drop();
    },
  };
}

/** Enqueues `total` chaos-ledger jobs in batches (one enqueueMany statement each); returns the ids. */
export async function enqueueBulk(
  chaos: ChaosDb,
  total: number,
  payload: (i: number) => ChaosPayload,
  options: { batch?: number; queue?: string; maxAttempts?: number; pauseMs?: number } = {},
): Promise<string[]> {
  const batch = options.batch ?? 2000;
  const ids: string[] = [];
  for (let start = 0; start < total; start += batch) {
    const jobs = Array.from({ length: Math.min(batch, total - start) }, (_, k) => ({
      task: CHAOS_TASK,
      queue: options.queue ?? 'chaos',
      payload: payload(start + k),
      maxAttempts: options.maxAttempts ?? 25,
    }));
    const result = await chaos.producer.enqueueMany(jobs);
    ids.push(...result.ids);
    if (options.pauseMs) await delay(options.pauseMs);
  }
  return ids;
}

/** Jobs of the schema by status. */
export async function statusCounts(chaos: ChaosDb): Promise<Record<string, number>> {
  const rows = await chaos.rows<{ status: string; n: string }>(`SELECT status, count(*) AS n FROM ${chaos.jobsTable} GROUP BY status ORDER BY status`);
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

export function formatStatuses(counts: Record<string, number>): string {
  return Object.entries(counts)
    .map(([s, n]) => `${s}:${n}`)
    .join(',');
}

/**
 * Waits until every job of the schema has succeeded (tolerating errors while the server is
 * away); resolves to the time it happened (Date.now()).
 */
export async function waitForDrain(chaos: ChaosDb, total: number, timeoutMs: number, fleet?: WorkerFleet): Promise<number> {
  let dead: string[] = [];
  let succeeded = 0;
  await waitFor(
    async () => {
      // A worker that died on its own fails the scenario at once, with its stderr.
      dead = fleet?.describeUnexpectedExits() ?? [];
      if (dead.length > 0) {
        succeeded = await chaos.succeeded().catch(() => -1);
        return true;
      }
      succeeded = await chaos.succeeded();
      return succeeded >= total;
    },
    timeoutMs,
    `all ${total} jobs to succeed`,
    { intervalMs: 100, retryOnError: true },
  ).catch(async (err: unknown) => {
    const statuses = await statusCounts(chaos).catch(() => ({}));
    throw new Error(`${err instanceof Error ? err.message : String(err)}; jobs by status: ${formatStatuses(statuses)}`);
  });
  if (dead.length > 0) throw new Error(`worker processes exited on their own (${succeeded}/${total} jobs succeeded):\n${dead.join('\n')}`);
  return Date.now();
}
