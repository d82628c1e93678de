import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';
import { quoteSchema } from '../config.js';
import { SkiplockError } from '../errors.js';
import { checkout } from './pool.js';
import { SQL_DIR, withSchema } from './queries.js';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export interface MigrateResult {
  /** Versions this call applied (empty when the schema was already current). */
  readonly applied: readonly number[];
  /** The schema's version afterwards. */
  readonly version: number;
}

/** Reads sql/migrations/NNNN_name.sql in version order. */
export function loadMigrations(): Migration[] {
  const dir = new URL('migrations/', SQL_DIR);
  const migrations = readdirSync(dir)
    .filter((file) => /^\d{4}_[a-z0-9_]+\.sql$/.test(file))
    .map((file) => ({
      version: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ''),
      sql: readFileSync(new URL(file, dir), 'utf8'),
    }))
    .sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${m.name} is out of sequence (expected version ${i + 1})`);
  });
  return migrations;
}

/**
 * Brings a schema up to date. Runs in one transaction under a transaction-scoped advisory
 * lock on the schema name, so processes that migrate at once queue up: the first applies the
 * migrations, the others then find nothing to do. A failing migration rolls everything back.
 */
export async function migrate(pool: pg.Pool, schema: string): Promise<MigrateResult> {
  const quoted = quoteSchema(schema);
  const migrations = loadMigrations();
  const { client, release } = await checkout(pool);
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', ['skiplock:migrate', schema]);
    // Later statements run with a snapshot taken after the lock was granted, so they see
    // whatever the previous holder committed.
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoted}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${quoted}.migrations (
         version integer PRIMARY KEY,
         name text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = await client.query<{ version: number }>(`SELECT version FROM ${quoted}.migrations ORDER BY version`);
    const have = new Set(done.rows.map((r) => r.version));
    const newest = Math.max(0, ...have);
    const known = migrations.length;
    if (newest > known) {
      throw new SkiplockError(
        `schema ${schema} is at version ${newest}, newer than this skiplock knows (${known}); upgrade skiplock`,
      );
    }
    const applied: number[] = [];
    for (const m of migrations) {
      if (have.has(m.version)) continue;
      await client.query(withSchema(m.sql, schema));
      await client.query(`INSERT INTO ${quoted}.migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return { applied, version: known };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    release();
  }
}
