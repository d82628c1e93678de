/**
 * A private primary and streaming standby (test/failover.test.ts), built with the installed
 * server binaries in a temporary directory: initdb, pg_basebackup, pg_ctl, run as the
 * `postgres` OS user (the tests run as root). Synchronous replication: the primary waits for
 * the standby to flush every commit before acknowledging it.
 */
import { execFile } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { waitFor } from './wait.js';

const execFileAsync = promisify(execFile);

/** The newest /usr/lib/postgresql/<version>/bin with initdb, pg_ctl and pg_basebackup. */
function serverBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  return versions.map((v) => join(root, v, 'bin')).find((bin) => ['initdb', 'pg_ctl', 'pg_basebackup'].every((t) => existsSync(join(bin, t))));
}

/** The uid and gid of the `postgres` OS user, if there is one. */
async function postgresUser(): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const uid = Number((await execFileAsync('id', ['-u', 'postgres'])).stdout.trim());
    const gid = Number((await execFileAsync('id', ['-g', 'postgres'])).stdout.trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/** Undefined when a pair can be built here; else why not. */
export async function standbyUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'not running as root';
  if (serverBin() === undefined) return 'no PostgreSQL server binaries under /usr/lib/postgresql/*/bin';
  if ((await postgresUser()) === undefined) return 'no postgres OS user';
  if (!existsSync('/usr/sbin/runuser') && !existsSync('/sbin/runuser')) return 'runuser not found';
  return undefined;
}

export interface ReplicaPair {
  readonly primaryPort: number;
  readonly standbyPort: number;
  /** postgres://postgres@127.0.0.1:<port>/postgres of one server. */
  urlOf(port: number): string;
  /** Stops the primary at once (pg_ctl stop -m immediate): no shutdown checkpoint, connections cut. */
  killPrimary(): Promise<void>;
  /** Promotes the standby (pg_ctl promote, waiting until it accepts writes). */
  promoteStandby(): Promise<void>;
  /** The last lines of both server logs, for a failure message. */
  logs(): string;
  /** Stops both servers (immediate) and removes the directory; safe to call twice. */
  destroy(): Promise<void>;
}

/** Builds and starts the pair; the standby is streaming and synchronous when it resolves. */
export async function createReplicaPair(primaryPort: number, standbyPort: number): Promise<ReplicaPair> {
  const bin = serverBin();
  const user = await postgresUser();
  if (bin === undefined || user === undefined) throw new Error('cannot build a replica pair here: no server binaries or no postgres user');
  const dir = mkdtempSync(join(tmpdir(), 'skiplock-failover-'));
  chownSync(dir, user.uid, user.gid);
  const primary = join(dir, 'primary');
  const standby = join(dir, 'standby');
  const asPostgres = (tool: string, args: string[]): Promise<{ stdout: string; stderr: string }> =>
    execFileAsync('runuser', ['-u', 'postgres', '--', join(bin, tool), ...args], { timeout: 120_000 });
  const urlOf = (port: number): string => `postgres://postgres@127.0.0.1:${port}/postgres`;
  let destroyed = false;
  const pair: ReplicaPair = {
    primaryPort,
    standbyPort,
    urlOf,
    async killPrimary() {
      await asPostgres('pg_ctl', ['-D', primary, 'stop', '-m', 'immediate', '-w']);
    },
    async promoteStandby() {
      await asPostgres('pg_ctl', ['-D', standby, 'promote', '-w', '-t', '60']);
    },
    logs() {
      return `primary log:\n${tail(join(dir, 'primary.log'))}\nstandby log:\n${tail(join(dir, 'standby.log'))}`;
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      for (const data of [primary, standby]) {
        if (existsSync(join(data, 'postmaster.pid'))) await asPostgres('pg_ctl', ['-D', data, 'stop', '-m', 'immediate', '-w']).catch(() => undefined);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    for (const port of [primaryPort, standbyPort]) {
      if (await answers(port)) throw new Error(`port ${port} is in use: the failover test needs it for a private cluster`);
    }
    await asPostgres('initdb', ['-D', primary, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C']);
    appendFileSync(
      join(primary, 'postgresql.conf'),
      [
        '',
        '# skiplock failover test',
        `port = ${primaryPort}`,
        `listen_addresses = '127.0.0.1'`,
        `unix_socket_directories = '${dir}'`,
        'wal_level = replica',
        'max_wal_senders = 4',
        'wal_keep_size = 64MB',
        `synchronous_standby_names = '*'`,
        'synchronous_commit = on',
        'fsync = on',
        'shared_buffers = 16MB',
        'max_connections = 60',
        'hot_standby = on',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(primary, 'pg_hba.conf'),
      ['local all all trust', 'local replication all trust', 'host all all 127.0.0.1/32 trust', 'host replication all 127.0.0.1/32 trust', ''].join('\n'),
    );
    await asPostgres('pg_ctl', ['-D', primary, '-l', join(dir, 'primary.log'), '-w', '-t', '60', 'start']);
    await asPostgres('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', standby, '-X', 'stream', '-c', 'fast']);
    // Later lines win: the standby's own port, and no synchronous standby of its own once
    // promoted (else its commits would wait for one forever).
    appendFileSync(
      join(standby, 'postgresql.conf'),
      [
        '',
        '# standby',
        `port = ${standbyPort}`,
        `synchronous_standby_names = ''`,
        `primary_conninfo = 'host=127.0.0.1 port=${primaryPort} user=postgres application_name=standby1'`,
        '',
      ].join('\n'),
    );
    writeFileSync(join(standby, 'standby.signal'), '');
    chownSync(join(standby, 'standby.signal'), user.uid, user.gid);
    await asPostgres('pg_ctl', ['-D', standby, '-l', join(dir, 'standby.log'), '-w', '-t', '60', 'start']);
    const client = new pg.Client({ connectionString: urlOf(primaryPort) });
    await client.connect();
    try {
      await waitFor(
        async () => (await client.query<{ s: string }>(`SELECT sync_state AS s FROM pg_stat_replication WHERE application_name = 'standby1'`)).rows[0]?.s === 'sync',
        30_000,
        'the standby to stream synchronously',
        { intervalMs: 100 },
      );
    } finally {
      await client.end();
    }
    return pair;
  } catch (err) {
    const logs = pair.logs();
    await pair.destroy();
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${logs}`);
  }
}

/** Whether something accepts PostgreSQL connections on 127.0.0.1:port. */
async function answers(port: number): Promise<boolean> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', connectionTimeoutMillis: 1000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return true;
  } catch (err) {
    return (err as { code?: unknown }).code !== 'ECONNREFUSED';
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The last 30 lines of a server log. */
function tail(file: string): string {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(-30).join('\n') : '(no log)';
}
