import { createHash } from 'node:crypto';
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
  /** Database functions this call (re)created from sql/functions (their text had changed). */
  readonly functions: readonly string[];
}

/** A database function's live definition: sql/functions/<name>.sql. */
export interface FunctionFile {
  readonly name: string;
  readonly sql: string;
}

/** Reads sql/functions/*.sql in name order. */
export function loadFunctionFiles(): FunctionFile[] {
  const dir = new URL('functions/', SQL_DIR);
  return readdirSync(dir)
    .filter((file) => /^[a-z0-9_]+\.sql$/.test(file))
    .sort()
    .map((file) => ({ name: file.replace(/\.sql$/, ''), sql: readFileSync(new URL(file, dir), 'utf8') }));
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
 * After the numbered migrations, every database function whose file in sql/functions
 * differs from what the schema last had is created again from that file (the files are the
 * live definitions; the migrations hold only tables, indexes and their history).
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
    const functions = await applyFunctions(client, schema, known);
    await client.query('COMMIT');
    return { applied, version: known, functions };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    release();
  }
}

/**
 * (Re)creates each function of sql/functions whose text (schema filled in) has changed since
 * the schema last applied it. A file last applied by a newer skiplock (a higher migration
 * version) is left alone, so an older process that starts during an upgrade never puts its
 * older definition back.
 */
async function applyFunctions(client: pg.PoolClient, schema: string, known: number): Promise<string[]> {
  const quoted = quoteSchema(schema);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${quoted}.functions (
       name text PRIMARY KEY,
       checksum text NOT NULL,
       version integer NOT NULL,
       applied_at timestamptz NOT NULL DEFAULT now())`,
  );
  const res = await client.query<{ name: string; checksum: string; version: number }>(`SELECT name, checksum, version FROM ${quoted}.functions`);
  const have = new Map(res.rows.map((r) => [r.name, r]));
  const applied: string[] = [];
  for (const file of loadFunctionFiles()) {
    const sql = withSchema(file.sql, schema);
    const checksum = createHash('sha256').update(sql).digest('hex');
    const last = have.get(file.name);
    if (last !== undefined && (last.checksum === checksum || last.version > known)) continue;
    await client.query(sql);
    await client.query(
      `INSERT INTO ${quoted}.functions (name, checksum, version) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum, version = EXCLUDED.version, applied_at = now()`,
      [file.name, checksum, known],
    );
    applied.push(file.name);
  }
  return applied;
}
