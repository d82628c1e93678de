import { readFileSync } from 'node:fs';
import { quoteSchema } from '../config.js';

/** Where the SQL files live: <package>/sql, the same from src/ and dist/src/. */
export const SQL_DIR = new URL(import.meta.url.includes('/dist/src/') ? '../../../sql/' : '../../sql/', import.meta.url);

export const QUERY_NAMES = [
  'enqueue',
  'enqueueHandoff',
  'enqueueDedupe',
  'findByDedupeKey',
  'claim',
  'complete',
  'finishMany',
  'completeMany',
  'deleteCompletedMany',
  'deleteCompleted',
  'prune',
  'heartbeat',
  'registerWaiter',
  'withdrawWaiter',
  'dropWaiter',
  'adoptHandoffs',
  'handBackUnknown',
  'handBack',
  'reap',
  'getJob',
  'cancel',
  'retry',
] as const;
export type QueryName = (typeof QUERY_NAMES)[number];

/** A prepared-statement-ready query: pg prepares it once per connection under `name`. */
export interface NamedQuery {
  readonly name: string;
  readonly text: string;
}

export type Queries = Readonly<Record<QueryName, NamedQuery>>;

/** Replaces the {{schema}} placeholder with the quoted, validated schema name. */
export function withSchema(sql: string, schema: string): string {
  return sql.replaceAll('{{schema}}', quoteSchema(schema));
}

/** Splits a file of "-- name: x" blocks into named SQL texts. */
export function parseNamedQueries(source: string): Map<string, string> {
  const out = new Map<string, string>();
  let current: string | undefined;
  let lines: string[] = [];
  const flush = (): void => {
    if (current !== undefined) out.set(current, lines.join('\n').trim().replace(/;\s*$/, ''));
  };
  for (const line of source.split('\n')) {
    const header = /^--\s*name:\s*([A-Za-z0-9_]+)\s*$/.exec(line);
    if (header) {
      flush();
      current = header[1];
      lines = [];
    } else if (current !== undefined && !/^\s*--/.test(line)) {
      lines.push(line);
    }
  }
  flush();
  return out;
}

/** Loads named queries from a file of sql/queries for one schema; each name must be there. */
export function loadQueryFile<N extends string>(file: string, names: readonly N[], schema: string): Readonly<Record<N, NamedQuery>> {
  const parsed = parseNamedQueries(readFileSync(new URL(`queries/${file}`, SQL_DIR), 'utf8'));
  const entries = names.map((name): [N, NamedQuery] => {
    const text = parsed.get(name);
    if (text === undefined) throw new Error(`sql/queries/${file} has no query named ${name}`);
    // The file is part of the prepared statement's name: two files may both name a query `list`.
    return [name, Object.freeze({ name: `skiplock:${schema}:${file.replace(/\.sql$/, '')}:${name}`, text: withSchema(text, schema) })];
  });
  return Object.freeze(Object.fromEntries(entries) as Record<N, NamedQuery>);
}

/** Loads the named queries of sql/queries/jobs.sql for one schema. */
export function loadQueries(schema: string): Queries {
  return loadQueryFile('jobs.sql', QUERY_NAMES, schema);
}
