// What a new user meets first (issue 14, point 5), run as the built bin against a real
// PostgreSQL: the default connection and the hint when it fails, an unmigrated schema,
// commander's usage errors as one `skiplock: ` line, enqueue's messages (plural, dedupe
// hit, invalid JSON line), --version, and the warning for a task no live worker handles.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer, migrate } from '../src/index.js';
import { BIN, type CliResult, ROOT, cliEnv, runCli } from './helpers/cli.js';
import { DATABASE_URL, type TestSchema, createTestSchema, newTestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';
import { TestWorkers } from './helpers/workers.js';

const DEFAULT_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

let db: TestSchema; // migrated: enqueues and warnings
let bare: TestSchema; // never migrated (not even created) until the "not migrated" test runs `migrate`
const workers = new TestWorkers(() => db);

beforeAll(async () => {
  [db, bare] = await Promise.all([createTestSchema('nc'), Promise.resolve(newTestSchema('ncbare'))]);
});

afterAll(async () => {
  await workers.stopAll();
  await Promise.all([db?.drop(), bare?.drop()]);
});

/** Global options that point the CLI at a test schema. */
const g = (s: TestSchema): string[] => ['--database-url', s.connectionString, '--schema', s.schema];

/** stderr as lines (none for an empty stderr). */
const lines = (text: string): string[] => text.split('\n').filter((line) => line !== '');

/**
 * Runs the bin with exactly `env` on top of the caller's environment without DATABASE_URL,
 * SKIPLOCK_SCHEMA, any PG* variable, USER and LOGNAME (pg's default user name): what a
 * shell with nothing set up looks like.
 */
function startBare(args: string[], env: Record<string, string> = {}): { child: ChildProcess; output: () => string; done: Promise<CliResult> } {
  const base = cliEnv(env);
  delete base.USER;
  delete base.LOGNAME;
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: base, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, output: () => stdout + stderr, done };
}

const runBare = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => startBare(args, env).done;

describe('connection', () => {
  it('with no DATABASE_URL, --database-url or PG* variable, the CLI uses postgres://postgres@127.0.0.1:5432/postgres', async () => {
    const schema = `t_ncdef_${randomBytes(4).toString('hex')}`;
    const server = new pg.Pool({ connectionString: DEFAULT_URL, max: 1 });
    try {
      const r = await runBare(['--schema', schema, 'migrate']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^schema ${schema} at version \\d+ \\(applied `));
      // It went to the default server's "postgres" database, as user postgres.
      const { rows } = await server.query<{ owner: string }>(
        'SELECT pg_get_userbyid(nspowner) AS owner FROM pg_namespace WHERE nspname = $1',
        [schema],
      );
      expect(rows).toEqual([{ owner: 'postgres' }]);
      // The worker (its own pool and listener) connects there too.
      const worker = startBare(['--schema', schema, 'worker', '--metrics-port', '0']);
      try {
        await waitFor(async () => worker.output().includes('"msg":"worker started"') || worker.child.exitCode !== null, 20_000, 'the worker started');
        expect(worker.output()).toContain('"msg":"worker started"');
      } finally {
        worker.child.kill('SIGTERM');
      }
      const stopped = await worker.done;
      expect(stopped.code, stopped.stderr).toBe(0);
    } finally {
      await server.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await server.end();
    }
  });

  it('the PG* variables, when set, win over the default', async () => {
    const url = new URL(DATABASE_URL);
    const target = newTestSchema('ncpg');
    try {
      const r = await runBare(['--schema', target.schema, 'migrate'], {
        PGHOST: url.hostname,
        PGPORT: url.port || '5432',
        PGUSER: decodeURIComponent(url.username),
        PGPASSWORD: decodeURIComponent(url.password),
        PGDATABASE: url.pathname.slice(1),
      });
      expect(r.code, r.stderr).toBe(0);
      const [row] = await target.rows<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [`"${target.schema}".jobs`]);
      expect(row?.t).not.toBeNull(); // in the test database, which the PG* variables named
    } finally {
      await target.drop();
    }
  });

  it('an unreachable server: one line naming the URL without its password, the reason and how to set another; exit 1', async () => {
    for (const args of [
      ['--database-url', 'postgres://someone:s3cretpw@127.0.0.1:1/test', 'enqueue', 't'],
      ['--database-url', 'postgres://someone:s3cretpw@127.0.0.1:1/test', 'queues'],
    ]) {
      const r = await runCli(args);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toBe(
        'skiplock: cannot connect to postgres://someone@127.0.0.1:1/test (connection refused); set DATABASE_URL or --database-url\n',
      );
      expect(r.stdout).toBe('');
    }
  });
});

describe('a schema that is not migrated', () => {
  const notMigrated = (schema: string): string => `schema ${schema} is not migrated; run \`skiplock migrate\``;

  it('the CLI and the library say so, and `skiplock migrate` mends it', async () => {
    for (const args of [['enqueue', 't'], ['queues'], ['schedules'], ['jobs', 'show', '1']]) {
      const r = await runCli([...g(bare), ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr).toBe(`skiplock: ${notMigrated(bare.schema)}\n`);
    }
    const producer = new Producer({ connectionString: bare.connectionString, schema: bare.schema });
    try {
      await expect(producer.enqueue('t')).rejects.toThrow(notMigrated(bare.schema));
      await expect(producer.getJob('1')).rejects.toThrow(notMigrated(bare.schema));
      await migrate(bare.pool, bare.schema);
      await expect(producer.enqueue('t')).resolves.toMatchObject({ created: true });
    } finally {
      await producer.close();
    }
  });
});

describe('usage errors: one line `skiplock: <message>`, exit 2', () => {
  const cases: Array<{ name: string; args: string[]; names: RegExp }> = [
    { name: 'unknown option', args: ['enqueue', 't', '--bogus'], names: /^skiplock: unknown option '--bogus'$/ },
    { name: 'unknown option with a suggestion', args: ['enqueue', 't', '--queu', 'x'], names: /^skiplock: unknown option '--queu' \(Did you mean --queue\?\)$/ },
    { name: 'unknown command', args: ['frobnicate'], names: /^skiplock: unknown command 'frobnicate'$/ },
    { name: 'missing argument', args: ['jobs', 'show'], names: /^skiplock: missing required argument 'id'$/ },
    { name: 'too many arguments', args: ['migrate', 'now'], names: /^skiplock: too many arguments for 'migrate'/ },
    { name: 'invalid argument', args: ['enqueue', 't', '--priority', 'abc'], names: /^skiplock: option '--priority <n>' argument 'abc' is invalid\. invalid priority "abc"/ },
    { name: 'invalid choice', args: ['--log-level', 'loud', 'migrate'], names: /^skiplock: option '--log-level <level>' argument 'loud' is invalid\. Allowed choices are / },
    { name: 'option value missing', args: ['enqueue', 't', '--queue'], names: /^skiplock: option '--queue <name>' argument missing$/ },
  ];

  it.each(cases)('$name', async ({ args, names }) => {
    const r = await runCli([...g(db), ...args]);
    expect(r.code, r.stderr).toBe(2);
    expect(lines(r.stderr), r.stderr).toHaveLength(1);
    expect(r.stderr.trimEnd()).toMatch(names);
    expect(r.stderr).not.toMatch(/error:/);
    expect(r.stdout).toBe('');
  });

  it('--help still prints the help on stdout, exit 0', async () => {
    for (const args of [['--help'], ['enqueue', '--help'], ['help', 'queues']]) {
      const r = await runCli(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^Usage: skiplock\b/);
      expect(r.stderr).toBe('');
    }
  });
});

describe('--version', () => {
  it("prints package.json's version", async () => {
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${VERSION}\n`);
    }
  });
});

describe('skiplock enqueue messages', () => {
  it('a dedupe hit prints the holder id on stdout and says on stderr that the job existed', async () => {
    const first = await runCli([...g(db), 'enqueue', 'nc-dedupe', '--dedupe-key', 'nc:once']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^\d+\n$/);
    expect(first.stderr).not.toMatch(/already holds/);
    const id = first.stdout.trim();
    const again = await runCli([...g(db), 'enqueue', 'nc-dedupe', '{"other": 1}', '--dedupe-key', 'nc:once']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe(`${id}\n`);
    expect(again.stderr).toContain(`skiplock: job ${id} already holds dedupe key "nc:once" (queued or running): nothing enqueued`);
    const [row] = await db.rows<{ n: number }>(`SELECT count(*)::int AS n FROM "${db.schema}".jobs WHERE dedupe_key = 'nc:once'`);
    expect(row?.n).toBe(1);
  });

  it('--stdin: "1 job" and "1 invalid line" in the singular; a skipped line says invalid JSON', async () => {
    const input = `${JSON.stringify({ task: 'nc-a' })}\n{"task": "nc-b", "payload": {\n`;
    const r = await runCli([...g(db), 'enqueue', '--stdin', '--skip-invalid'], { input });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('1\n');
    expect(r.stderr).toMatch(/^skiplock: skipped line 2: invalid JSON: /m);
    expect(r.stderr).toMatch(/^skiplock: enqueued 1 job, skipped 1 invalid line in [\d.]+ s$/m);

    const two = await runCli([...g(db), 'enqueue', '--stdin'], { input: `${JSON.stringify({ task: 'nc-a' })}\n${JSON.stringify({ task: 'nc-a' })}\n` });
    expect(two.code, two.stderr).toBe(0);
    expect(two.stderr).toMatch(/^skiplock: enqueued 2 jobs in [\d.]+ s$/m);

    const bad = await runCli([...g(db), 'enqueue', '--stdin'], { input });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^skiplock: line 2: invalid JSON: .*; nothing was enqueued\n$/);
  });
});

describe('the warning for a task no live worker handles', () => {
  const warning = (task: string, queue = 'default'): string =>
    `skiplock: warning: no live worker handles task ${JSON.stringify(task)} on queue ${JSON.stringify(queue)}`;

  it('warns on stderr (one line, exit 0, id printed) until a worker of the task is there', async () => {
    const lone = await runCli([...g(db), 'enqueue', 'nc-nobody']);
    expect(lone.code, lone.stderr).toBe(0);
    expect(lone.stdout).toMatch(/^\d+\n$/);
    expect(lines(lone.stderr)).toHaveLength(1);
    expect(lone.stderr).toContain(warning('nc-nobody'));

    // A dead worker's row (not renewed within its ttl) does not count.
    await db.pool.query(
      `INSERT INTO "${db.schema}".workers (id, host, pid, version, tasks, queues, concurrency, ttl_ms, seen_at)
       VALUES ('nc-dead', 'h', 1, '0', '{nc-ghost}', NULL, 1, 16000, now() - interval '1 hour')`,
    );
    const ghost = await runCli([...g(db), 'enqueue', 'nc-ghost']);
    expect(ghost.code, ghost.stderr).toBe(0);
    expect(ghost.stderr).toContain(warning('nc-ghost'));

    // A live worker for nc-served on the default queue (its presence row is written at start).
    await workers.start({ 'nc-served': () => undefined }, { queues: ['default'], handoff: false });
    const served = await runCli([...g(db), 'enqueue', 'nc-served']);
    expect(served.code, served.stderr).toBe(0);
    expect(served.stderr).toBe('');

    // Not on a queue the worker does not take, nor for a task it does not have.
    const elsewhere = await runCli([...g(db), 'enqueue', 'nc-served', '--queue', 'nc-elsewhere']);
    expect(elsewhere.code, elsewhere.stderr).toBe(0);
    expect(elsewhere.stderr).toContain(warning('nc-served', 'nc-elsewhere'));

    const input = ['nc-served', 'nc-nobody', 'nc-nobody'].map((task) => JSON.stringify({ task })).join('\n');
    const bulk = await runCli([...g(db), 'enqueue', '--stdin'], { input });
    expect(bulk.code, bulk.stderr).toBe(0);
    expect(bulk.stdout).toBe('3\n');
    const warned = lines(bulk.stderr).filter((line) => line.includes('warning'));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain(warning('nc-nobody'));
    expect(warned[0]).not.toContain('nc-served');
  });
});
