import { type Command, InvalidArgumentError, Option } from 'commander';
import type pg from 'pg';
import { DEFAULT_SCHEMA, LOG_LEVELS, type Logger, SkiplockError, createLogger, createPool, describeDbError, redactSecrets, validateSchema } from '../index.js';

/** Options every command takes (set on the program, read with optsWithGlobals()). */
export interface GlobalOptions {
  databaseUrl?: string;
  schema: string;
  logLevel: string;
  /** false with --no-prepared-statements (for PgBouncer in transaction mode). */
  preparedStatements?: boolean;
}

export function globalOptions(): Option[] {
  return [
    new Option(
      '--database-url <url>',
      `PostgreSQL connection string (default: the PG* variables PGHOST, PGPORT, PGUSER, PGDATABASE when any is set, else ${DEFAULT_DATABASE_URL})`,
    ).env('DATABASE_URL'),
    new Option('--schema <name>', 'schema of the jobs table').env('SKIPLOCK_SCHEMA').default(DEFAULT_SCHEMA),
    new Option('--log-level <level>', 'log level').env('SKIPLOCK_LOG_LEVEL').choices(LOG_LEVELS).default('info'),
    new Option('--no-prepared-statements', 'run statements unnamed, not as prepared statements (needed behind PgBouncer in transaction mode)'),
  ];
}

/** The connection when neither --database-url (DATABASE_URL) nor a PG* variable names one. */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** The libpq variables that say where to connect: when any is set, pg reads them (PGPASSWORD alone does not count). */
const PG_TARGET_VARIABLES = ['PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGUSER', 'PGDATABASE', 'PGSERVICE'] as const;

/**
 * The connection string the CLI uses: --database-url (or DATABASE_URL); else undefined when a
 * PG* variable is set (pg reads them); else DEFAULT_DATABASE_URL.
 */
export function connectionStringFor(databaseUrl: string | undefined, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (databaseUrl !== undefined && databaseUrl !== '') return databaseUrl;
  if (PG_TARGET_VARIABLES.some((name) => (env[name] ?? '') !== '')) return undefined;
  return DEFAULT_DATABASE_URL;
}

/** Where a connection goes, as a URL without its password (for messages). */
export function connectionTarget(connectionString: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (connectionString === undefined) {
    const user = env.PGUSER ?? env.USER ?? '';
    const host = env.PGHOST ?? env.PGHOSTADDR ?? 'localhost';
    return `postgres://${user}${user ? '@' : ''}${host}:${env.PGPORT ?? '5432'}/${env.PGDATABASE ?? user} from the PG* variables`;
  }
  try {
    const url = new URL(connectionString);
    url.password = '';
    for (const key of [...url.searchParams.keys()]) if (/password/i.test(key)) url.searchParams.delete(key);
    return url.toString();
  } catch {
    // hostA:5432,hostB:5433 (a multi-host string) is no URL to node: shown with its password masked
    return /^postgres(ql)?:\/\/[^/?#]*,/i.test(connectionString) ? redactSecrets(connectionString) : 'an unparsable connection string';
  }
}

/** The line for a failed connection: where, why, and how to point the CLI elsewhere. */
export function connectionHint(reason: string, connectionString: string | undefined): string {
  return `cannot connect to ${connectionTarget(connectionString)} (${reason}); set DATABASE_URL or --database-url`;
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
  const connectionString = connectionStringFor(options.databaseUrl);
  const preparedStatements = options.preparedStatements ?? true;
  const pool = createPool({ connectionString, max: poolSize, applicationName: 'skiplock cli', preparedStatements }, (err) =>
    logger.warn({ err: describeDbError(err, connectionString).message }, 'idle database connection failed'),
  );
  return { options, schema, logger, pool, connectionString, describe: (err) => describeDbError(err, connectionString) };
}

/** Runs a check or parse of the user's input: the library's refusal becomes a usage error (exit 2). */
export function parsed<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof SkiplockError && !(err instanceof UsageError)) throw new UsageError(err.message);
    throw err;
  }
}

/** Runs fn with a context of `command`'s global options on a pool of `poolSize`, closed afterwards. */
export async function withContext<T>(command: Command, poolSize: number, fn: (ctx: CliContext) => Promise<T>): Promise<T> {
  const ctx = openContext(command.optsWithGlobals<GlobalOptions>(), poolSize);
  try {
    return await fn(ctx);
  } finally {
    await ctx.pool.end();
  }
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
