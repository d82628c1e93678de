import type { TestSchema } from './db.js';

/** Creates <schema>.ledger and returns its qualified name, for the ledger fixture task. */
export async function createLedger(db: TestSchema): Promise<string> {
  const table = `${db.schema}.ledger`;
  await db.pool.query(
    `CREATE TABLE ${table} (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL, started_at timestamptz NOT NULL DEFAULT clock_timestamp())`,
  );
  return table;
}

export const FIXTURE_TASKS = 'test/fixtures/tasks';
