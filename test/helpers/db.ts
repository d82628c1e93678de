import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../src/db/migrate.js';

/** The test server: TEST_DATABASE_URL, else the local PostgreSQL's "test" database. */
export const DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestSchema {
  schema: string;
  pool: pg.Pool;
  connectionString: string;
  /** Runs a query and returns its rows. */
  rows<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<R[]>;
  /** Drops the schema and closes the pool. */
  drop(): Promise<void>;
}

/**
 * A schema name of its own for one test file (t_<prefix>_<random>) and a pool; nothing is
 * created on the server yet (see createTestSchema, useTestSchema).
 */
export function newTestSchema(prefix: string, options: { max?: number } = {}): TestSchema {
  const schema = `t_${prefix}_${randomBytes(4).toString('hex')}`;
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: options.max ?? 10 });
  return {
    schema,
    pool,
    connectionString: DATABASE_URL,
    async rows<R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> {
      return (await pool.query<R>(text, values)).rows;
    },
    async drop(): Promise<void> {
      await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await pool.end();
    },
  };
}

/** A fresh, migrated schema of its own for one test file (name t_<prefix>_<random>). */
export async function createTestSchema(prefix: string, options: { migrate?: boolean; max?: number } = {}): Promise<TestSchema> {
  const db = newTestSchema(prefix, options);
  if (options.migrate ?? true) await migrate(db.pool, db.schema);
  return db;
}
