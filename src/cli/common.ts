import { InvalidArgumentError, Option } from 'commander';
import type pg from 'pg';
import { DEFAULT_SCHEMA, LOG_LEVELS, type Logger, SkiplockError, createLogger, createPool, describeDbError, validateSchema } from '../index.js';

/** Options every command takes (set on the program, read with optsWithGlobals()). */
export interface GlobalOptions {
  databaseUrl?: string;
  schema: string;
  logLevel: string;
}

export function globalOptions(): Option[] {
  return [
    new Option('--database-url <url>', 'PostgreSQL connection string (else the PG* variables: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE)').env(
      'DATABASE_URL',
    ),
    new Option('--schema <name>', 'schema of the jobs table').env('SKIPLOCK_SCHEMA').default(DEFAULT_SCHEMA),
    new Option('--log-level <level>', 'log level').env('SKIPLOCK_LOG_LEVEL').choices(LOG_LEVELS).default('info'),
  ];
}

/** Exit codes: 0 ok, 1 runtime failure (database, handler loading), 2 bad input or usage. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** An error caused by the user's input: exit code 2. */
export class UsageError extends SkiplockError {}

export interface CliContext {
  readonly options: GlobalOptions;
  readonly schema: string;
  readonly logger: Logger;
  readonly pool: pg.Pool;
  readonly connectionString: string | undefined;
  /** Turns any error into one user-facing line, without secrets. */
  describe(err: unknown): Error;
}

/** Validates the global options and opens a pool; the caller must close ctx.pool. */
export function openContext(options: GlobalOptions, poolSize = 4): CliContext {
  let schema: string;
  try {
    schema = validateSchema(options.schema);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const logger = createLogger(options.logLevel);
  const connectionString = options.databaseUrl;
  const pool = createPool({ connectionString, max: poolSize, applicationName: 'skiplock cli' }, (err) =>
    logger.warn({ err: describeDbError(err, connectionString).message }, 'idle database connection failed'),
  );
  return { options, schema, logger, pool, connectionString, describe: (err) => describeDbError(err, connectionString) };
}

/** Wraps a value parser for commander, which reports its errors as bad option values. */
export function optionParser<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message);
    }
  };
}
