import pg from 'pg';
import { CONNECT_CODES, SkiplockError, errorMessage, redactSecrets } from '../errors.js';
import { type HostAddress, type HostList, hostLabel, parseHostList } from './hosts.js';

// Which host of a multi-host connection string (hosts.ts) new connections go to, and the
// pg.Client class that sends them there and reports a host that let it down.

/** Why a probe of one host failed, in a few words, without the password. */
function probeFailure(err: unknown, password: string | undefined): string {
  const code = (err as { code?: unknown } | null)?.code;
  const reason = typeof code === 'string' ? CONNECT_CODES.get(code) : undefined;
  if (reason !== undefined) return reason;
  const message = errorMessage(err).split('\n')[0] ?? '';
  if (/timeout|timed out/i.test(message)) return 'timed out';
  return redactSecrets(message, password ? [password] : []);
}

const sameHost = (a: HostAddress | undefined, b: HostAddress | undefined): boolean => a !== undefined && b !== undefined && a.host === b.host && a.port === b.port;

/** A failed probe is reused for this long: connections failing during an outage do not each probe every host. */
const PROBE_BACKOFF_MS = 200;

/**
 * Knows which host of a list new connections go to: the last one a probe found fit. A
 * suspected host is forgotten; the next `target()` probes the hosts again, in order (one
 * probe at a time, shared by every caller).
 */
export class HostResolver {
  private current: HostAddress | undefined;
  private probing: Promise<HostAddress> | undefined;
  private failed: { at: number; error: Error } | undefined;

  constructor(
    readonly list: HostList,
    /** Connect (and query) timeout of each host's probe. */
    readonly probeTimeoutMs = 3000,
  ) {}

  /** The host found fit last, while nothing has cast doubt on it. */
  get known(): HostAddress | undefined {
    return this.current;
  }

  /** The host a new connection should go to: the known one, else the first fit one a probe finds. */
  target(): Promise<HostAddress> {
    if (this.current !== undefined) return Promise.resolve(this.current);
    if (this.probing === undefined && this.failed !== undefined && Date.now() - this.failed.at < PROBE_BACKOFF_MS) {
      return Promise.reject(this.failed.error);
    }
    this.probing ??= this.probe().finally(() => (this.probing = undefined));
    return this.probing;
  }

  /** A connection to `host` failed, was lost or found it read-only: probe before the next one. */
  suspect(host: HostAddress): void {
    if (sameHost(this.current, host)) this.current = undefined;
  }

  private async probe(): Promise<HostAddress> {
    const reasons: string[] = [];
    for (const host of this.list.hosts) {
      const reason = await this.check(host);
      if (reason === undefined) {
        this.current = host;
        this.failed = undefined;
        return host;
      }
      reasons.push(reason);
    }
    const { hosts, label } = this.list;
    const why = reasons.every((r) => r === reasons[0]) ? reasons[0] : reasons.map((r, i) => `${hosts[i] ? hostLabel(hosts[i]) : '?'}: ${r}`).join('; ');
    const error = new SkiplockError(`cannot connect to any of ${label} (${why})`);
    this.failed = { at: Date.now(), error };
    throw error;
  }

  /** Undefined when `host` is fit for new connections, else why not. */
  private async check(host: HostAddress): Promise<string | undefined> {
    const client = new pg.Client({
      connectionString: this.list.connectionStringFor(host),
      connectionTimeoutMillis: this.probeTimeoutMs,
      query_timeout: this.probeTimeoutMs,
      application_name: 'skiplock probe',
    });
    client.on('error', () => undefined); // a probe's connection lost: its query fails too
    try {
      await client.connect();
      if (this.list.targetSessionAttrs === 'any') return undefined;
      const { rows } = await client.query<{ recovery: boolean; read_only: boolean }>(
        `SELECT pg_is_in_recovery() AS recovery, current_setting('transaction_read_only') = 'on' AS read_only`,
      );
      if (rows[0]?.recovery !== false) return 'in recovery (a standby)';
      if (rows[0]?.read_only !== false && this.list.targetSessionAttrs === 'read-write') return 'read-only';
      return undefined;
    } catch (err) {
      return probeFailure(err, this.list.password);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}

const resolvers = new Map<string, HostResolver>();

/**
 * The resolver of a multi-host connection string, shared by everything in this process that
 * connects with it (pools and LISTEN connections); undefined for a single-host string.
 */
export function hostResolverFor(connectionString: string | undefined): HostResolver | undefined {
  if (connectionString === undefined) return undefined;
  const known = resolvers.get(connectionString);
  if (known !== undefined) return known;
  const list = parseHostList(connectionString);
  if (list === undefined) return undefined;
  const resolver = new HostResolver(list);
  resolvers.set(connectionString, resolver);
  return resolver;
}

/** SQLSTATE read_only_sql_transaction: a write reached a standby (or a read-only session). */
const READ_ONLY = '25006';

type ClientClass = typeof pg.Client;
type ConnectCallback = ((err: Error) => void) | ((err: null, c: pg.Client) => void);

/**
 * A pg.Client class (for pg.Pool's `Client` option) whose connections go to the resolver's
 * current host, and which tells the resolver when its host let it down: a failed connect, a
 * lost connection, a read-only error. A connection whose server turned read-only while
 * another host is now the writable one is closed (the pool then drops it). `Base` is the
 * class to extend (pg.Client, or one of skiplock's own).
 */
export function failoverClient(resolver: HostResolver, Base: ClientClass = pg.Client): ClientClass {
  return class FailoverClient extends Base {
    private target: HostAddress | undefined;
    private endCalled = false;

    constructor(config?: string | pg.ClientConfig) {
      const given: pg.ClientConfig = typeof config === 'string' ? { connectionString: config } : { ...config };
      const first = resolver.known ?? resolver.list.hosts[0];
      super({ ...given, connectionString: first && resolver.list.connectionStringFor(first) });
      this.on('error', () => {
        if (this.target !== undefined) resolver.suspect(this.target);
      });
      // Whatever `query` is by now (pg's, or the base class's own), wrapped to notice read-only errors.
      const query = this.query as (...args: unknown[]) => unknown;
      const self = this as unknown as { query: (...args: unknown[]) => unknown };
      self.query = (...args: unknown[]) => {
        const last = args.length - 1;
        const callback = args[last];
        if (typeof callback === 'function') {
          args[last] = (err: unknown, ...results: unknown[]) => {
            if (err) this.noteQueryError(err);
            (callback as (...a: unknown[]) => unknown)(err, ...results);
          };
        }
        const result = query.apply(this, args);
        if (result instanceof Promise) result.then(undefined, (err: unknown) => this.noteQueryError(err));
        return result;
      };
    }

    override connect(): Promise<pg.Client>;
    override connect(callback: ConnectCallback): void;
    override connect(callback?: ConnectCallback): Promise<pg.Client> | void {
      const connected = this.connectToTarget();
      if (callback === undefined) return connected;
      const done = callback as (err: Error | null, c?: pg.Client) => void;
      connected.then(
        (client) => done(null, client),
        (err: Error) => done(err),
      );
    }

    override end(): Promise<void>;
    override end(callback: (err: Error) => void): void;
    override end(callback?: (err: Error) => void): Promise<void> | void {
      this.endCalled = true;
      return callback === undefined ? super.end() : super.end(callback);
    }

    private async connectToTarget(): Promise<pg.Client> {
      const target = resolver.known ?? (await resolver.target());
      // Given up on while the hosts were probed (the pool's connect timeout, or end()).
      if (this.endCalled || this.connection.stream.destroyed) throw new Error('Connection terminated while looking for a writable host');
      this.target = target;
      this.host = target.host;
      this.port = target.port;
      const params = (this as unknown as { connectionParameters?: { host: string; port: number } }).connectionParameters;
      if (params !== undefined) {
        params.host = target.host; // for .pgpass look-ups and password functions
        params.port = target.port;
      }
      try {
        return await super.connect();
      } catch (err) {
        resolver.suspect(target);
        throw err;
      }
    }

    private noteQueryError(err: unknown): void {
      const target = this.target;
      if ((err as { code?: unknown } | null)?.code !== READ_ONLY || target === undefined) return;
      resolver.suspect(target);
      resolver.target().then(
        (next) => {
          if (!sameHost(next, target)) this.connection.stream.destroy(); // the pool drops it
        },
        () => undefined,
      );
    }
  };
}
