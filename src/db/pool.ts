import pg from 'pg';
import { CONNECT_CODES, SkiplockError, errorMessage, redactSecrets } from '../errors.js';
import { describeHosts, multiHostPassword } from './hosts.js';
import { failoverClient, hostResolverFor } from './resolver.js';

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
  /**
   * Run skiplock's statements as named prepared statements (default true: each is parsed
   * once per connection). Set false behind a pooler that hands a client's statements to any
   * server connection, such as PgBouncer in transaction mode before 1.21: the pool's clients
   * then drop the `name` of every query, which runs as an unnamed statement.
   */
  preparedStatements?: boolean;
}

/** A query config without its prepared statement's name (anything else is left as it is). */
function unnamed(config: unknown): unknown {
  if (typeof config !== 'object' || config === null || typeof (config as { submit?: unknown }).submit === 'function') return config;
  if (!('name' in config)) return config;
  const { name: _name, ...rest } = config as { name?: unknown };
  return rest;
}

/**
 * A pg.Client whose queries never name a prepared statement: the pool's Client when
 * preparedStatements is false. Everything else is pg's own.
 */
class UnpreparedClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    const query = pg.Client.prototype.query as (this: pg.Client, ...args: unknown[]) => unknown;
    const self = this as unknown as { query: (...args: unknown[]) => unknown };
    self.query = (first: unknown, ...rest: unknown[]) => query.call(this, unnamed(first), ...rest);
  }
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
  if (options.preparedStatements === false) config.Client = UnpreparedClient as unknown as new () => pg.ClientBase;
  // A multi-host string (hostA:5432,hostB:5433): each new connection goes to the current primary (resolver.ts).
  const resolver = hostResolverFor(options.connectionString);
  if (resolver) config.Client = failoverClient(resolver, (config.Client ?? pg.Client) as unknown as typeof pg.Client) as unknown as new () => pg.ClientBase;
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
  const hosts = describeHosts(connectionString);
  if (hosts !== undefined) return hosts;
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

/** Server refusals of the connection itself: bad password, no such role or database, pg_hba. */
const REFUSAL_CODES = new Set(['28P01', '28000', '3D000']);

/** The error and its causes, outermost first (at most a few levels). */
function causes(err: unknown): unknown[] {
  const out: unknown[] = [];
  for (let e: unknown = err; e !== undefined && e !== null && out.length < 5; e = (e as { cause?: unknown }).cause) out.push(e);
  return out;
}

/**
 * Why a connection could not be made, in a few words (e.g. "connection refused", or the
 * server's own message for a bad password), when `err` or one of its causes is such a
 * failure; undefined for any other error. Never contains a password.
 */
export function connectionFailure(err: unknown, connectionString?: string): string | undefined {
  for (const e of causes(err)) {
    const { code, syscall } = (e ?? {}) as { code?: unknown; syscall?: unknown };
    // ENOENT is a missing socket only when connecting (not, say, a missing task directory).
    if (typeof code === 'string' && (code !== 'ENOENT' || syscall === 'connect')) {
      const reason = CONNECT_CODES.get(code);
      if (reason !== undefined) return reason;
      if (REFUSAL_CODES.has(code)) return redactSecrets(errorMessage(e).split('\n')[0] ?? '', secretsOf(connectionString));
    }
    const message = errorMessage(e);
    if (/timeout exceeded when trying to connect|connection timeout/i.test(message)) return 'timed out';
    if (/Connection terminated/i.test(message) && !(e instanceof SkiplockError)) return 'connection closed by the server';
  }
  return undefined;
}

/** The password of a connection string (plain and decoded) and PGPASSWORD: what never to print. */
function secretsOf(connectionString: string | undefined): string[] {
  const secrets: string[] = [];
  if (connectionString) {
    try {
      const pw = new URL(connectionString).password;
      if (pw) secrets.push(pw, decodeURIComponent(pw));
    } catch {
      const pw = multiHostPassword(connectionString); // hostA,hostB: not a URL to node
      if (pw) secrets.push(pw, encodeURIComponent(pw));
    }
  }
  if (process.env.PGPASSWORD) secrets.push(process.env.PGPASSWORD);
  return secrets;
}

/** skiplock's tables (and sequence): a statement that finds one missing ran on an unmigrated schema. */
const OWN_RELATIONS = /^relation "([a-z_][a-z0-9_]{0,47})\.(jobs|jobs_id_seq|waiters|queues|queue_starts|schedules|workers|migrations|functions)" does not exist$/;

/** What to do when named prepared statements fail behind a transaction-mode pooler. */
const PGBOUNCER_HINT = 'behind PgBouncer in transaction mode use --no-prepared-statements (preparedStatements: false)';

/**
 * Turns a connection failure into a one-line SkiplockError that names the target but no
 * password, and a statement on a table of an unmigrated schema into "schema x is not
 * migrated". Other errors are returned with any secret redacted.
 */
export function describeDbError(err: unknown, connectionString?: string): Error {
  const secrets = secretsOf(connectionString);
  const code = (err as { code?: unknown } | null)?.code;
  const message = redactSecrets(errorMessage(err).split('\n')[0] ?? '', secrets);
  if (typeof code === 'string' && (CONNECT_CODES.has(code) || REFUSAL_CODES.has(code))) {
    return new SkiplockError(`cannot connect to PostgreSQL at ${describeTarget(connectionString)}: ${message}`, { cause: err });
  }
  if (/timeout exceeded when trying to connect|Connection terminated/i.test(message) && !(err instanceof SkiplockError)) {
    return new SkiplockError(`cannot connect to PostgreSQL at ${describeTarget(connectionString)}: ${message}`, { cause: err });
  }
  // Named prepared statements through a pooler that moves a client between server
  // connections: the statement was prepared on another one (or another client's is there).
  if ((code === '26000' || code === '42P05') && /^prepared statement "skiplock:[^"]*" (does not exist|already exists)$/.test(message)) {
    return new SkiplockError(`${message}; ${PGBOUNCER_HINT}`, { cause: err });
  }
  const missing = code === '42P01' ? OWN_RELATIONS.exec(message) : null;
  if (missing !== null) return new SkiplockError(`schema ${missing[1]} is not migrated; run \`skiplock migrate\``, { cause: err });
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
