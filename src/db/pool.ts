import pg from 'pg';
import { SkiplockError, errorMessage, redactSecrets } from '../errors.js';

/** Anything that runs a query: a pg.Pool, a pooled client or a plain client. */
export interface Queryable {
  query<R extends pg.QueryResultRow>(config: pg.QueryConfig): Promise<pg.QueryResult<R>>;
}

export interface ConnectionOptions {
  /** postgres://user:password@host:port/database; when absent, pg reads the PG* variables. */
  connectionString?: string;
  /** Pool size (default 10; a Worker's own pool defaults to its concurrency + 4). */
  max?: number;
  /** application_name seen in pg_stat_activity. */
  applicationName?: string;
}

// int8 (job ids, counts) stays a string: ids may pass 2^53.
/** Creates a pg.Pool that logs, rather than throws, errors of idle clients. */
export function createPool(
  options: ConnectionOptions,
  onIdleError: (err: Error) => void = () => undefined,
): pg.Pool {
  const config: pg.PoolConfig = {
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'skiplock',
    connectionTimeoutMillis: 10_000,
  };
  if (options.connectionString !== undefined) config.connectionString = options.connectionString;
  const pool = new pg.Pool(config);
  pool.on('error', onIdleError);
  return pool;
}

/**
 * Checks a client out of the pool with an 'error' listener attached for as long as it is
 * held: pg-pool listens only to idle clients, and a client that loses its connection while
 * checked out (backend terminated, server restart) would otherwise crash the process with
 * an unhandled 'error' event. The listener goes on in pool.connect()'s callback, in the same
 * tick as the hand-over: the pool can hand a client over while parsing a read of its socket
 * (the end of another caller's query), and an error message in the rest of that read would
 * reach it before an awaiting caller could attach anything. release() destroys the client
 * when it failed.
 */
export function checkout(pool: pg.Pool): Promise<{ client: pg.PoolClient; release: () => void }> {
  return new Promise((resolve, reject) => {
    pool.connect((err, client, done) => {
      if (err !== undefined && err !== null) {
        reject(err);
        return;
      }
      if (client === undefined) {
        reject(new Error('the pool handed over no client'));
        return;
      }
      let failed: Error | undefined;
      const onError = (error: Error): void => {
        failed ??= error;
      };
      client.on('error', onError);
      resolve({
        client,
        release: () => {
          client.off('error', onError);
          done(failed);
        },
      });
    });
  });
}

/** Where a connection goes, for messages: host:port/database, never the password. */
export function describeTarget(connectionString?: string): string {
  const env = process.env;
  if (connectionString !== undefined) {
    try {
      const url = new URL(connectionString);
      const host = decodeURIComponent(url.hostname) || url.searchParams.get('host') || env.PGHOST || 'localhost';
      return `${host}:${url.port || env.PGPORT || '5432'}${url.pathname || ''}`;
    } catch {
      return 'the database (unparsable connection string)';
    }
  }
  return `${env.PGHOST ?? 'localhost'}:${env.PGPORT ?? '5432'}/${env.PGDATABASE ?? env.PGUSER ?? env.USER ?? ''}`;
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNRESET', 'ENOENT']);

/**
 * Turns a connection failure into a one-line SkiplockError that names the target but no
 * password. Other errors are returned with any secret redacted.
 */
export function describeDbError(err: unknown, connectionString?: string): Error {
  const secrets: string[] = [];
  if (connectionString) {
    try {
      const pw = new URL(connectionString).password;
      if (pw) secrets.push(pw, decodeURIComponent(pw));
    } catch {
      // not a URL: nothing to pull out
    }
  }
  if (process.env.PGPASSWORD) secrets.push(process.env.PGPASSWORD);
  const code = (err as { code?: unknown } | null)?.code;
  const message = redactSecrets(errorMessage(err).split('\n')[0] ?? '', secrets);
  if (typeof code === 'string' && (CONNECT_CODES.has(code) || code === '28P01' || code === '3D000' || code === '28000')) {
    return new SkiplockError(`cannot connect to PostgreSQL at ${describeTarget(connectionString)}: ${message}`, { cause: err });
  }
  if (/timeout exceeded when trying to connect|Connection terminated/i.test(message)) {
    return new SkiplockError(`cannot connect to PostgreSQL at ${describeTarget(connectionString)}: ${message}`, { cause: err });
  }
  if (err instanceof SkiplockError) return err;
  return new SkiplockError(message, { cause: err });
}

/**
 * Whether an error means the statement's connection was lost (the backend was terminated,
 * the server is shutting down or not accepting connections yet, the socket broke), not that
 * the statement was wrong: on another connection it may well succeed.
 */
export function isSessionLost(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (code === '57P01' || code === '57P02' || code === '57P03' || code.startsWith('08') || code === 'ECONNRESET' || code === 'EPIPE')) {
    return true;
  }
  return /Connection terminated|terminating connection/i.test(errorMessage(err));
}

/**
 * Runs `step`, again (up to `attempts` times in all, `delayMs` apart) when it failed because
 * its connection was lost: for a daemon's start-up reads, which a terminated backend must
 * not turn into an exit. Any other error, or the last one, is thrown.
 */
export async function retrySessionLost<T>(step: () => Promise<T>, attempts = 3, delayMs = 100): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      if (attempt >= attempts || !isSessionLost(err)) throw err;
      await new Promise((resolve) => setTimeout(resolve, delayMs * attempt));
    }
  }
}

/**
 * Runs `fn`; a SkiplockError comes out as it is, any other error as `describe` makes it (one
 * line, no secrets): the library's calls that callers see (Producer, Queues, Schedules).
 */
export async function describingErrors<T>(fn: () => Promise<T>, describe: (err: unknown) => Error): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof SkiplockError) throw err;
    throw describe(err);
  }
}

/** describeDbError bound to one connection string: what every part of a worker or producer uses. */
export function dbErrorDescriber(connectionString: string | undefined): (err: unknown) => Error {
  return (err) => describeDbError(err, connectionString);
}
