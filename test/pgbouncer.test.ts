import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer, type TaskList, Worker, type WorkerOptions, createPool } from '../src/index.js';
import { runCli, startCli } from './helpers/cli.js';
import { DATABASE_URL } from './helpers/db.js';
import { freePort } from './helpers/measure.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

// skiplock through a real PgBouncer in transaction pooling mode (Debian's 1.18: no prepared
// statements there). The pooled queries go through PgBouncer with preparedStatements false;
// the LISTEN connection goes straight to PostgreSQL. A small connection budget: PgBouncer
// keeps at most 3 server connections for all of it.

const { db } = useTestSchema('pgbouncer', { max: 2 });

/** The pgbouncer binary, or undefined. */
function findPgbouncer(): string | undefined {
  for (const candidate of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer']) if (existsSync(candidate)) return candidate;
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

interface Bouncer {
  readonly url: string;
  stop(): Promise<void>;
}

/** A PgBouncer in front of the test server, in the given pool mode, on a free port. */
async function startPgbouncer(poolMode: 'transaction' | 'session'): Promise<Bouncer> {
  const binary = findPgbouncer();
  if (binary === undefined) {
    throw new Error('pgbouncer is not installed: install it (apt-get install -y pgbouncer) to run test/pgbouncer.test.ts');
  }
  const target = new URL(DATABASE_URL);
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'skiplock-pgbouncer-'));
  chmodSync(dir, 0o777); // pgbouncer may run as the postgres OS user
  writeFileSync(path.join(dir, 'userlist.txt'), `"${decodeURIComponent(target.username) || 'postgres'}" ""\n`, { mode: 0o644 });
  const config = [
    '[databases]',
    `bouncer = host=${target.hostname} port=${target.port || '5432'} dbname=${target.pathname.slice(1)}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'userlist.txt')}`,
    `pool_mode = ${poolMode}`,
    // Session mode gives each client a server connection of its own for as long as it stays.
    `default_pool_size = ${poolMode === 'session' ? 8 : 3}`,
    `max_db_connections = ${poolMode === 'session' ? 8 : 3}`,
    'max_client_conn = 200',
    'ignore_startup_parameters = extra_float_digits,options',
    `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
    '',
  ].join('\n');
  const file = path.join(dir, 'pgbouncer.ini');
  writeFileSync(file, config, { mode: 0o644 });
  const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const bouncer = asRoot ? spawn('runuser', ['-u', 'postgres', '--', binary, file], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(binary, [file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  bouncer.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  bouncer.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = `postgres://${encodeURIComponent(decodeURIComponent(target.username) || 'postgres')}@127.0.0.1:${port}/bouncer`;
  const stop = async (): Promise<void> => {
    const pidFile = path.join(dir, 'pgbouncer.pid');
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
    if (bouncer.exitCode === null) {
      const exited = new Promise((resolve) => bouncer.once('exit', resolve));
      bouncer.kill('SIGTERM');
      await Promise.race([exited, delay(3000)]);
    }
    if (Number.isInteger(pid) && pid > 0) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (bouncer.exitCode !== null) {
      await stop();
      throw new Error(`pgbouncer exited (${bouncer.exitCode}): ${output}`);
    }
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query({ text: 'SELECT 1' });
      await client.end();
      return { url, stop };
    } catch (err) {
      await client.end().catch(() => undefined);
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`pgbouncer did not accept connections: ${(err as Error).message}\n${output}`);
      }
      await delay(100);
    }
  }
}

let transactionBouncer: Bouncer | undefined;
let bouncerUrl = '';

// Before the schema fixture's own hooks: afterAll runs in reverse, so PgBouncer stops after
// every worker and pool of this file.
beforeAll(async () => {
  transactionBouncer = await startPgbouncer('transaction');
  bouncerUrl = transactionBouncer.url;
}, 30_000);
afterAll(async () => transactionBouncer?.stop(), 30_000);

let producer: Producer;
let callerPool: pg.Pool;
const workers: Worker[] = [];

beforeAll(() => {
  producer = new Producer({ connectionString: bouncerUrl, schema: db.schema, preparedStatements: false, max: 3 });
  callerPool = createPool({ connectionString: bouncerUrl, max: 2, preparedStatements: false });
});

afterAll(async () => {
  await Promise.all(workers.splice(0).map((w) => w.stop({ graceMs: 0 })));
  await producer?.close();
  await callerPool?.end();
});

async function startWorker(tasks: TaskList, options: Partial<WorkerOptions> = {}): Promise<Worker> {
  const worker = new Worker({
    connectionString: bouncerUrl,
    listenConnectionString: DATABASE_URL,
    preparedStatements: false,
    schema: db.schema,
    tasks,
    concurrency: 3,
    max: 4,
    pollIntervalMs: 200,
    leaseMs: 5000,
    reaperIntervalMs: 500,
    ...options,
  });
  workers.push(worker);
  await worker.start();
  return worker;
}

async function status(id: string): Promise<{ status: string; attempts: number }> {
  const [row] = await db.rows<{ status: string; attempts: number }>(`SELECT status, attempts FROM "${db.schema}".jobs WHERE id = $1`, [id]);
  if (!row) throw new Error(`no job ${id}`);
  return row;
}

function waitStatus(id: string, wanted: string, timeoutMs = 20_000): Promise<true> {
  return waitFor(async () => (await status(id)).status === wanted || undefined, timeoutMs, `job ${id} to be ${wanted}`);
}

describe('through PgBouncer in transaction mode (preparedStatements: false)', () => {
  it('enqueues single jobs, in bulk and in a caller transaction that commits or rolls back', async () => {
    const { id } = await producer.enqueue('nobody', { n: 1 }, { queue: 'enq' });
    expect((await status(id)).status).toBe('queued');

    const { ids } = await producer.enqueueMany(Array.from({ length: 50 }, (_, i) => ({ task: 'nobody', payload: { i }, queue: 'enq' })));
    expect(ids).toHaveLength(50);
    const [count] = await db.rows<{ n: string }>(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'enq'`);
    expect(Number(count?.n)).toBe(51);

    const client = await callerPool.connect();
    try {
      await client.query('BEGIN');
      const { id: rolledBack } = await producer.enqueue('nobody', {}, { client, queue: 'enq' });
      await client.query('ROLLBACK');
      expect(await db.rows(`SELECT 1 FROM "${db.schema}".jobs WHERE id = $1`, [rolledBack])).toHaveLength(0);

      await client.query('BEGIN');
      const { id: committed } = await producer.enqueue('nobody', {}, { client, queue: 'enq' });
      expect(await db.rows(`SELECT 1 FROM "${db.schema}".jobs WHERE id = $1`, [committed])).toHaveLength(0); // not before commit
      await client.query('COMMIT');
      expect((await status(committed)).status).toBe('queued');
    } finally {
      client.release();
    }
  });

  it('runs jobs, retries a failing one, holds a concurrency key and commits ctx.transaction', async () => {
    await db.rows(`CREATE TABLE "${db.schema}".effects (job_id bigint PRIMARY KEY, tag text NOT NULL)`);
    const ran: string[] = [];
    let failures = 0;
    const spans: Array<{ start: number; end: number }> = [];
    const worker = await startWorker(
      {
        plain: (p: { tag: string }) => void ran.push(p.tag),
        flaky: () => {
          failures += 1;
          if (failures === 1) throw new Error('first attempt fails');
        },
        keyed: async () => {
          const start = Date.now();
          await delay(150);
          spans.push({ start, end: Date.now() });
        },
        effect: (p: { tag: string }, ctx) =>
          ctx.transaction(async (client) => {
            await client.query(`INSERT INTO "${db.schema}".effects (job_id, tag) VALUES ($1, $2)`, [ctx.job.id, p.tag]);
          }),
      },
      { queues: ['run'], backoff: { baseMs: 100, maxMs: 200, jitter: 0 } },
    );

    const plain = await Promise.all(['a', 'b', 'c'].map((tag) => producer.enqueue('plain', { tag }, { queue: 'run' })));
    const flaky = await producer.enqueue('flaky', {}, { queue: 'run', maxAttempts: 3 });
    const keyed = await producer.enqueueMany(Array.from({ length: 4 }, () => ({ task: 'keyed', payload: {}, queue: 'run', concurrencyKey: 'k1' })));
    const effect = await producer.enqueue('effect', { tag: 'written' }, { queue: 'run' });

    for (const { id } of plain) await waitStatus(id, 'succeeded');
    expect([...ran].sort()).toEqual(['a', 'b', 'c']);

    await waitStatus(flaky.id, 'succeeded');
    expect((await status(flaky.id)).attempts).toBe(2);
    expect(failures).toBe(2);

    for (const id of keyed.ids) await waitStatus(id, 'succeeded');
    expect(spans).toHaveLength(4);
    const sorted = [...spans].sort((x, y) => x.start - y.start);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]!.start).toBeGreaterThanOrEqual(sorted[i - 1]!.end); // at most 1 running

    await waitStatus(effect.id, 'succeeded');
    expect(await db.rows(`SELECT tag FROM "${db.schema}".effects WHERE job_id = $1`, [effect.id])).toEqual([{ tag: 'written' }]);
    expect(worker.health()).toMatchObject({ listening: true });
    await worker.stop();
  }, 60_000);

  it('a poll-only worker (listen: false) drains jobs too', async () => {
    const { ids } = await producer.enqueueMany(Array.from({ length: 20 }, (_, i) => ({ task: 'polled', payload: { i }, queue: 'poll' })));
    let done = 0;
    const worker = await startWorker({ polled: () => void (done += 1) }, { queues: ['poll'], listen: false, listenConnectionString: undefined });
    for (const id of ids) await waitStatus(id, 'succeeded');
    expect(done).toBe(20);
    const more = await producer.enqueue('polled', {}, { queue: 'poll' });
    await waitStatus(more.id, 'succeeded', 5000);
    await worker.stop();
  }, 60_000);

  it('the CLI: enqueue and a worker with --no-prepared-statements, --listen-url and --no-listen', async () => {
    const globals = ['--no-prepared-statements', '--database-url', bouncerUrl, '--schema', db.schema, '--log-level', 'warn'];
    const enqueue = async (): Promise<string> => {
      const result = await runCli([...globals, 'enqueue', 'hello', '{"name":"bouncer"}', '--queue', 'cli']);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).not.toMatch(/prepared statement|error/i);
      const [row] = await db.rows<{ id: string }>(`SELECT max(id)::text AS id FROM "${db.schema}".jobs WHERE queue = 'cli'`);
      return row?.id ?? '';
    };
    for (const mode of [['--listen-url', DATABASE_URL], ['--no-listen', '--poll-interval', '200']]) {
      const id = await enqueue();
      const worker = startCli([...globals, 'worker', '--tasks', 'workers', '--queues', 'cli', '--metrics-port', '0', '--concurrency', '2', ...mode]);
      try {
        await waitStatus(id, 'succeeded', 20_000);
        const second = await enqueue(); // while it runs: by NOTIFY on the direct connection, or by the poll
        await waitStatus(second, 'succeeded', 20_000);
      } finally {
        worker.kill('SIGTERM');
      }
      const result = await worker.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).not.toMatch(/prepared statement|"level":50/);
    }
  }, 90_000);

  it('with prepared statements on, fails with a message that says what to do', async () => {
    // Every new connection prepares skiplock's statements under the same names; PgBouncer
    // runs them on whichever server connection is free, so once each server connection has
    // one, every new client's Parse fails there (or a statement is missing where it lands).
    const messages: string[] = [];
    for (let i = 0; i < 10; i++) {
      const prepared = new Producer({ connectionString: bouncerUrl, schema: db.schema, max: 1 });
      try {
        await prepared.enqueue('nobody', { i }, { queue: 'prepared' });
        await prepared.enqueue('nobody', { i }, { queue: 'prepared' });
      } catch (err) {
        messages.push((err as Error).message);
      } finally {
        await prepared.close();
      }
    }
    expect(messages.length).toBeGreaterThanOrEqual(5);
    for (const message of messages) {
      expect(message).toMatch(/^prepared statement "skiplock:[^"]+" (does not exist|already exists); behind PgBouncer in transaction mode use --no-prepared-statements \(preparedStatements: false\)$/);
    }
  }, 30_000);

  it("prunes through it: the worker's pruner; skiplock jobs list, jobs cancel --all and prune from the CLI", async () => {
    const worker = await startWorker({ pruned: () => undefined }, { queues: ['prune'], keepSucceededMs: 1, pruneIntervalMs: 200 });
    const { ids } = await producer.enqueueMany(Array.from({ length: 5 }, () => ({ task: 'pruned', payload: {}, queue: 'prune' })));
    await waitFor(
      async () => (await db.rows(`SELECT 1 FROM "${db.schema}".jobs WHERE id = ANY($1)`, [ids])).length === 0 || undefined,
      20_000,
      "the worker's pruner to delete the succeeded jobs",
    );
    await worker.stop();

    const globals = ['--no-prepared-statements', '--database-url', bouncerUrl, '--schema', db.schema];
    const { ids: old } = await producer.enqueueMany(Array.from({ length: 3 }, () => ({ task: 'nobody', payload: {}, queue: 'prune-cli' })));
    const listed = await runCli([...globals, 'jobs', 'list', '--queue', 'prune-cli', '--json']);
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as { jobs: Array<{ id: string }> }).jobs.map((j) => j.id).sort()).toEqual([...old].sort());
    const cancelled = await runCli([...globals, 'jobs', 'cancel', '--all', '--queue', 'prune-cli']);
    expect(cancelled.code, cancelled.stderr).toBe(0);
    await db.rows(`UPDATE "${db.schema}".jobs SET finished_at = now() - interval '2 days' WHERE id = ANY($1)`, [old]);
    const pruned = await runCli([...globals, 'prune', '--cancelled', '1d', '--json']);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(JSON.parse(pruned.stdout)).toMatchObject({ cancelled: 3 });
    expect(await db.rows(`SELECT 1 FROM "${db.schema}".jobs WHERE id = ANY($1)`, [old])).toEqual([]);
  }, 60_000);

  it('a worker whose LISTEN goes through it refuses to start: one skiplock: line, exit 1, no job taken', async () => {
    const { id } = await producer.enqueue('hello', { name: 'unheard' }, { queue: 'unheard' });
    const globals = ['--no-prepared-statements', '--database-url', bouncerUrl, '--schema', db.schema];
    const result = await runCli([...globals, 'worker', '--tasks', 'workers', '--queues', 'unheard', '--metrics-port', '0', '--log-level', 'silent'], {});
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    const target = new URL(bouncerUrl);
    expect(result.stderr).toBe(
      `skiplock: the LISTEN connection (127.0.0.1:${target.port}/bouncer) received no notification within 10 s of one sent through the pool: LISTEN needs a session of its own, which a pooler in transaction mode (PgBouncer) does not give, and the same database as the pool; point --listen-url (listenConnectionString) straight at PostgreSQL, or poll only with --no-listen (listen: false)\n`,
    );
    expect(await status(id)).toEqual({ status: 'queued', attempts: 0 });
  }, 60_000);
});

describe('through PgBouncer in session mode', () => {
  it('needs nothing: prepared statements, LISTEN and hand-offs through it, from the CLI', async () => {
    const session = await startPgbouncer('session');
    try {
      const globals = ['--database-url', session.url, '--schema', db.schema, '--log-level', 'warn'];
      const worker = startCli([...globals, 'worker', '--tasks', 'workers', '--queues', 'session', '--metrics-port', '0', '--concurrency', '2', '--poll-interval', '60s', '--worker-id', 'session-w']);
      // Started and listening: its offer for hand-offs is in the table.
      await waitFor(async () => (await db.rows(`SELECT 1 FROM "${db.schema}".waiters WHERE worker = 'session-w'`)).length > 0 || undefined, 20_000, 'the worker to wait for jobs');
      try {
        for (let i = 0; i < 3; i++) {
          const enqueued = await runCli([...globals, 'enqueue', 'hello', `{"name":"session ${i}"}`, '--queue', 'session']);
          expect(enqueued.code, enqueued.stderr).toBe(0);
          const [row] = await db.rows<{ id: string }>(`SELECT max(id)::text AS id FROM "${db.schema}".jobs WHERE queue = 'session'`);
          // A 60 s poll: only a NOTIFY (or a hand-off) through PgBouncer gets it done in time.
          await waitStatus(row?.id ?? '', 'succeeded', 10_000);
        }
      } finally {
        worker.kill('SIGTERM');
      }
      const result = await worker.done;
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toBe('');
    } finally {
      await session.stop();
    }
  }, 90_000);
});
