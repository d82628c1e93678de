import { startCli } from './cli.js';
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

/**
 * Starts `skiplock worker` in a process of its own on `queue` with the fixture tasks (the
 * ledger task writes to `ledger`), metrics off and warnings only; `extra` adds or overrides
 * options (a later option wins).
 */
export function startLedgerWorker(db: TestSchema, ledger: string, queue: string, extra: string[] = []): ReturnType<typeof startCli> {
  return startCli(
    [
      'worker',
      ...['--database-url', db.connectionString, '--schema', db.schema],
      ...['--tasks', FIXTURE_TASKS, '--queues', queue],
      ...['--metrics-port', '0', '--log-level', 'warn'],
      ...extra,
    ],
    { env: { LEDGER_TABLE: ledger } },
  );
}
