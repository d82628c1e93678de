// The skiplock CLI, run as the built bin (bin/skiplock.js -> dist/) against a real PostgreSQL.
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../src/cli/main.js';
import { loadFunctionFiles, loadMigrations } from '../src/db/migrate.js';
import { type CliResult, runCli } from './helpers/cli.js';
import { type TestSchema, createTestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let db: TestSchema; // migrated: single enqueues and bad input
let bulk: TestSchema; // migrated: --stdin runs, truncated before each
let fresh: TestSchema; // not migrated: the concurrent `skiplock migrate`

beforeAll(async () => {
  [db, bulk, fresh] = await Promise.all([
    createTestSchema('cli'),
    createTestSchema('clib'),
    createTestSchema('clim', { migrate: false }),
  ]);
});

afterAll(async () => {
  await Promise.all([db?.drop(), bulk?.drop(), fresh?.drop()]);
});

/** Global options that point the CLI at a test schema. */
const g = (s: TestSchema): string[] => ['--database-url', s.connectionString, '--schema', s.schema];

/** Runs the CLI; kills it (and fails the test) if it has not exited within timeoutMs. */
function cli(args: string[], input?: string, timeoutMs = 30_000): Promise<CliResult> {
  return runCli(args, { ...(input !== undefined && { input }), timeoutMs });
}

async function count(s: TestSchema): Promise<number> {
  const [row] = await s.rows<{ n: number }>(`SELECT count(*)::int AS n FROM "${s.schema}".jobs`);
  return row?.n ?? -1;
}

interface JobRow {
  id: string;
  task: string;
  queue: string;
  payload: unknown;
  priority: number;
  max_attempts: number;
  status: string;
  run_at: Date;
  /** run_at - created_at, in ms (both by the database clock). */
  delay_ms: number;
  /** run_at - now(), in seconds, at the time of the query. */
  ahead_s: number;
}

const JOB_COLUMNS = `id::text, task, queue, payload, priority, max_attempts, status, run_at,
  (extract(epoch FROM run_at - created_at) * 1000)::float8 AS delay_ms,
  extract(epoch FROM run_at - now())::float8 AS ahead_s`;

async function job(s: TestSchema, id: string): Promise<JobRow> {
  const [row] = await s.rows<JobRow>(`SELECT ${JOB_COLUMNS} FROM "${s.schema}".jobs WHERE id = $1`, [id]);
  if (!row) throw new Error(`job ${id} not found`);
  return row;
}

/** One line of stderr, no stack trace. */
function expectOneLineError(r: CliResult, names: RegExp): void {
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(r.stderr).toMatch(names);
  expect(r.stderr).not.toMatch(/^\s+at\s/m);
  expect(r.stderr).not.toMatch(/Error:|node:internal|\.js:\d+/);
}

describe('skiplock migrate', () => {
  it('4 processes at once on a fresh schema: all exit 0, each migration applied once', async () => {
    // Make the four really overlap: an open transaction of ours creates the schema, so every
    // migrate blocks (on our uncommitted schema, or behind the one that does) until we roll back.
    const holder = await fresh.pool.connect();
    let runs: CliResult[];
    try {
      await holder.query('BEGIN');
      await holder.query(`CREATE SCHEMA "${fresh.schema}"`);
      const [me] = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows;
      const pending = [1, 2, 3, 4].map(() => cli([...g(fresh), 'migrate']));
      await waitFor(
        async () => {
          const { rows } = await fresh.pool.query<{ n: number }>(
            `WITH RECURSIVE w(pid) AS (
               SELECT pid FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))
               UNION SELECT a.pid FROM pg_stat_activity a JOIN w ON w.pid = ANY(pg_blocking_pids(a.pid)))
             SELECT count(*)::int AS n FROM w`,
            [me?.pid],
          );
          return rows[0]?.n === 4;
        },
        20_000,
        'four migrate processes waiting behind the test transaction',
      );
      await holder.query('ROLLBACK');
      runs = await Promise.all(pending);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      holder.release();
    }
    for (const r of runs) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^schema ${fresh.schema} at version \\d+ \\(`));
    }
    // Under the lock, exactly one process applies; the others find nothing to do.
    const functions = loadFunctionFiles().map((f) => f.name).join(', ');
    expect(runs.filter((r) => r.stdout.includes(`(applied ${loadMigrations().map((m) => m.version).join(', ')}; functions ${functions})`))).toHaveLength(1);
    expect(runs.filter((r) => /already up to date/.test(r.stdout))).toHaveLength(3);

    const migrations = loadMigrations();
    const rows = await fresh.rows<{ version: number; name: string }>(
      `SELECT version, name FROM "${fresh.schema}".migrations ORDER BY version`,
    );
    expect(rows).toEqual(migrations.map((m) => ({ version: m.version, name: m.name })));
    const [reg] = await fresh.rows<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [`"${fresh.schema}".jobs`]);
    expect(reg?.t).not.toBeNull();
    expect(await count(fresh)).toBe(0);

    const fifth = await cli([...g(fresh), 'migrate']);
    expect(fifth.code, fifth.stderr).toBe(0);
    expect(fifth.stdout).toMatch(/already up to date/);
    const [n] = await fresh.rows<{ n: number }>(`SELECT count(*)::int AS n FROM "${fresh.schema}".migrations`);
    expect(n?.n).toBe(migrations.length);
  });
});

describe('skiplock enqueue', () => {
  it('prints the id alone and stores payload, queue, priority and max attempts', async () => {
    const payload = { to: 'a@example.com', n: [1, 2.5, null], nested: { ok: true, s: 'ünï "q"' } };
    const r = await cli([
      ...g(db), 'enqueue', 'send-email', JSON.stringify(payload),
      '--queue', 'mail', '--priority', '-5', '--max-attempts', '3',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\d+\n$/);
    const row = await job(db, r.stdout.trim());
    expect(row).toMatchObject({ task: 'send-email', queue: 'mail', payload, priority: -5, max_attempts: 3, status: 'queued' });
    expect(row.delay_ms).toBe(0);
  });

  it('defaults: payload {}, queue default, priority 0, 25 attempts, runnable now', async () => {
    const r = await cli([...g(db), 'enqueue', 'ns:report.daily']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\d+\n$/);
    const row = await job(db, r.stdout.trim());
    expect(row).toMatchObject({ task: 'ns:report.daily', queue: 'default', payload: {}, priority: 0, max_attempts: 25 });
    expect(row.ahead_s).toBeLessThanOrEqual(0);
  });

  it('--delay 5m sets run_at 5 minutes ahead by the database clock', async () => {
    const r = await cli([...g(db), 'enqueue', 'later', '--delay', '5m']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\d+\n$/);
    const row = await job(db, r.stdout.trim());
    expect(row.delay_ms).toBe(300_000);
    expect(row.ahead_s).toBeGreaterThan(280);
    expect(row.ahead_s).toBeLessThanOrEqual(300);
  });

  it('--run-at sets run_at exactly', async () => {
    const r = await cli([...g(db), 'enqueue', 'later', '--run-at', '2030-01-01T00:00:00Z']);
    expect(r.code, r.stderr).toBe(0);
    const row = await job(db, r.stdout.trim());
    expect(row.run_at.getTime()).toBe(Date.UTC(2030, 0, 1));
  });

  it('--json prints an object with the id', async () => {
    const r = await cli([...g(db), 'enqueue', 'as-json', '{"k":1}', '--json', '--queue', 'q1']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { id: unknown };
    expect(out.id).toEqual(expect.stringMatching(/^\d+$/));
    const row = await job(db, String(out.id));
    expect(row).toMatchObject({ task: 'as-json', queue: 'q1', payload: { k: 1 } });
  });
});

describe('bad input: exit code, one line on stderr, nothing inserted', () => {
  const down = (s: TestSchema): string[] => ['--database-url', 'postgres://someone:s3cretpw@127.0.0.1:1/test', '--schema', s.schema];
  const cannotConnect = /cannot connect to postgres:\/\/someone@127\.0\.0\.1:1\/test \(connection refused\); set DATABASE_URL or --database-url$/m;
  const cases: Array<{ name: string; args: (s: TestSchema) => string[]; code: number; names: RegExp; input?: string }> = [
    { name: 'invalid JSON payload', args: (s) => [...g(s), 'enqueue', 't', '{"a":'], code: 2, names: /invalid JSON payload/ },
    { name: '--priority abc', args: (s) => [...g(s), 'enqueue', 't', '--priority', 'abc'], code: 2, names: /priority.*abc/ },
    { name: '--priority 1.5', args: (s) => [...g(s), 'enqueue', 't', '--priority', '1.5'], code: 2, names: /priority.*1\.5/ },
    { name: '--max-attempts 0', args: (s) => [...g(s), 'enqueue', 't', '--max-attempts', '0'], code: 2, names: /max.attempts/ },
    { name: '--delay soon', args: (s) => [...g(s), 'enqueue', 't', '--delay', 'soon'], code: 2, names: /delay.*soon/ },
    { name: '--run-at yesterday', args: (s) => [...g(s), 'enqueue', 't', '--run-at', 'yesterday'], code: 2, names: /runAt.*yesterday/ },
    { name: "--queue 'bad queue!'", args: (s) => [...g(s), 'enqueue', 't', '--queue', 'bad queue!'], code: 2, names: /queue name "bad queue!"/ },
    { name: 'invalid task name', args: (s) => [...g(s), 'enqueue', 'bad/task name'], code: 2, names: /task name "bad\/task name"/ },
    { name: "--schema 'Bad-Name'", args: (s) => [...g(s).slice(0, 2), '--schema', 'Bad-Name', 'enqueue', 't'], code: 2, names: /schema name "Bad-Name"/ },
    {
      name: 'both --delay and --run-at',
      args: (s) => [...g(s), 'enqueue', 't', '--delay', '5m', '--run-at', '2030-01-01'],
      code: 2,
      names: /runAt or delay|delay.*run-?at|run-?at.*delay/i,
    },
    { name: '--stdin with a task argument', args: (s) => [...g(s), 'enqueue', 't', '--stdin'], input: '{"task":"x"}\n', code: 2, names: /--stdin/ },
    { name: 'unreachable database', args: (s) => [...down(s), 'enqueue', 't', '{"a":1}'], code: 1, names: cannotConnect },
    { name: 'unreachable database (--stdin)', args: (s) => [...down(s), 'enqueue', '--stdin'], input: '{"task":"x"}\n', code: 1, names: cannotConnect },
  ];

  it.each(cases)('$name', async ({ args, code, names, input }) => {
    const before = await count(db);
    const r = await cli(args(db), input);
    expect(r.code, r.stderr).toBe(code);
    expectOneLineError(r, names);
    expect(r.stderr).not.toContain('s3cretpw');
    expect(r.stdout).toBe('');
    expect(await count(db)).toBe(before);
  });
});

describe('skiplock enqueue --stdin', () => {
  const TASKS = ['send-email', 'resize.image', 'ns:report'];
  const QUEUES = ['default', 'mail', 'images', 'low-prio'];
  const BLANKS = new Set([100, 5000, 9000]); // 0-based entry indexes that are blank lines

  interface Line {
    task: string;
    payload: { i: number; tag: string; list?: number[] };
    queue?: string;
    priority?: number;
    maxAttempts?: number;
    delay?: string | number;
    runAt?: string;
  }

  function makeLine(i: number): Line {
    const line: Line = { task: TASKS[i % 3] ?? 'x', payload: { i, tag: 'x'.repeat(i % 5) } };
    if (i % 4 !== 0) line.queue = QUEUES[i % 4];
    if (i % 7 !== 0) line.priority = (i % 7) - 3;
    if (i % 3 === 1) line.maxAttempts = 1 + (i % 11);
    if (i % 2 === 0) line.payload.list = [i, -i];
    if (i % 10 === 0) line.delay = '10m';
    else if (i % 10 === 5) line.delay = 1500;
    else if (i % 97 === 0) line.runAt = new Date(Date.UTC(2031, 0, 1) + i * 1000).toISOString();
    return line;
  }

  /** 12,000 job lines (i = 1..12000) plus three blank lines; line 7000 is a job line. */
  function ndjson(replaceLine7000?: string): string {
    const out: string[] = [];
    for (let i = 1; out.length < 12_003; ) {
      out.push(BLANKS.has(out.length) ? (out.length === 5000 ? '   ' : '') : JSON.stringify(makeLine(i++)));
    }
    if (replaceLine7000 !== undefined) out[6999] = replaceLine7000;
    return `${out.join('\n')}\n`;
  }
  const line7000 = (): Line => JSON.parse(ndjson().split('\n')[6999] ?? '') as Line;

  async function bulkRows(): Promise<JobRow[]> {
    return bulk.rows<JobRow>(`SELECT ${JOB_COLUMNS} FROM "${bulk.schema}".jobs ORDER BY (payload->>'i')::int`);
  }

  function expectRowsMatch(rows: JobRow[], skipI?: number): void {
    let k = 0;
    for (let i = 1; i <= 12_000; i++) {
      if (i === skipI) continue;
      const row = rows[k++];
      const line = makeLine(i);
      const want = {
        task: line.task,
        queue: line.queue ?? 'default',
        payload: line.payload,
        priority: line.priority ?? 0,
        max_attempts: line.maxAttempts ?? 25,
        status: 'queued',
      };
      expect(row, `job i=${i}`).toMatchObject(want);
      if (line.runAt !== undefined) expect(row?.run_at.getTime(), `runAt of i=${i}`).toBe(Date.parse(line.runAt));
      else expect(row?.delay_ms, `delay of i=${i}`).toBe(line.delay === '10m' ? 600_000 : (line.delay ?? 0));
    }
    expect(k).toBe(rows.length);
  }

  it('inserts 12,000 jobs with the fields as given and prints 12000', async () => {
    await bulk.pool.query(`TRUNCATE "${bulk.schema}".jobs`);
    const r = await cli([...g(bulk), 'enqueue', '--stdin'], ndjson());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('12000\n');
    const rows = await bulkRows();
    expect(rows).toHaveLength(12_000);
    expectRowsMatch(rows);
  });

  const badLines: Array<{ name: string; line: () => string; names: RegExp }> = [
    { name: 'invalid JSON', line: () => '{"task": "send-email", "payload": {"i": 7000', names: /JSON|position|expected/i },
    { name: 'unknown field', line: () => JSON.stringify({ ...line7000(), colour: 'red' }), names: /unknown job field "colour"/ },
    { name: 'bad task name', line: () => JSON.stringify({ ...line7000(), task: 'bad task!' }), names: /task name "bad task!"/ },
  ];

  it.each(badLines)('one bad line ($name) at line 7000: exit 2, names the line, inserts nothing', async ({ line, names }) => {
    await bulk.pool.query(`TRUNCATE "${bulk.schema}".jobs`);
    const r = await cli([...g(bulk), 'enqueue', '--stdin'], ndjson(line()));
    expect(r.code, r.stderr).toBe(2);
    expectOneLineError(r, /line 7000\b/);
    expect(r.stderr).toMatch(names);
    expect(r.stdout).toBe('');
    expect(await count(bulk)).toBe(0);
  });

  it.each(badLines)('--skip-invalid with a bad line ($name): inserts the rest, reports the line', async ({ line }) => {
    await bulk.pool.query(`TRUNCATE "${bulk.schema}".jobs`);
    const r = await cli([...g(bulk), 'enqueue', '--stdin', '--skip-invalid'], ndjson(line()));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('11999\n');
    expect(r.stderr).toMatch(/skipped line 7000\b/);
    expect(r.stderr.match(/skipped line \d+/g)).toHaveLength(1);
    const rows = await bulkRows();
    expect(rows).toHaveLength(11_999);
    expectRowsMatch(rows, line7000().payload.i);
  });
});

/** The long option names a command defines, read from the commander definitions. */
function definedOptions(cmd: Command): string[] {
  return cmd.options.map((o) => o.long).filter((o): o is string => o !== undefined && o !== '--help');
}

describe('help', () => {
  const program = buildProgram();
  const sub = (name: string): Command => {
    const c = program.commands.find((x) => x.name() === name);
    if (!c) throw new Error(`no command ${name}`);
    return c;
  };
  const cases: Array<{ args: string[]; must: string[]; defined: () => string[] }> = [
    { args: ['--help'], must: ['--database-url', '--schema', 'migrate', 'enqueue', 'worker'], defined: () => definedOptions(program) },
    {
      args: ['enqueue', '--help'],
      must: ['--queue', '--priority', '--run-at', '--delay', '--max-attempts', '--json', '--stdin', '--skip-invalid'],
      defined: () => definedOptions(sub('enqueue')),
    },
    {
      args: ['worker', '--help'],
      must: ['--concurrency', '--queues', '--tasks', '--lease', '--poll-interval', '--metrics-port', '--metrics-host', '--shutdown-grace'],
      defined: () => definedOptions(sub('worker')),
    },
    { args: ['migrate', '--help'], must: ['migrate'], defined: () => definedOptions(sub('migrate')) },
  ];

  it.each(cases)('skiplock $args exits 0 and lists every option', async ({ args, must, defined }) => {
    const r = await cli(args);
    expect(r.code, r.stderr).toBe(0);
    const opts = defined();
    for (const word of [...must, ...opts]) expect(r.stdout, `help lacks ${word}`).toMatch(new RegExp(`(^|[\\s,])${word}\\b`, 'm'));
  });
});

describe('skiplock worker: bad start', () => {
  it('--tasks /nonexistent exits non-zero with a one-line error', async () => {
    const r = await cli([...g(db), 'worker', '--tasks', '/nonexistent', '--metrics-port', '0'], undefined, 20_000);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expectOneLineError(r, /\/nonexistent/);
  });

  it.each([
    ['--keep-succeeded', 'soon', /succeeded job retention/],
    ['--keep-failed', '-1d', /failed job retention/],
    ['--prefetch', '-1', /prefetch/],
    ['--prune-interval', '5x', /prune interval/],
  ])('%s %s exits 2 with a one-line error', async (option, value, message) => {
    const r = await cli([...g(db), 'worker', option, value, '--metrics-port', '0'], undefined, 20_000);
    expect(r.code).toBe(2);
    expectOneLineError(r, message);
  });

  it('--concurrency 0 exits 2', async () => {
    const r = await cli([...g(db), 'worker', '--concurrency', '0', '--metrics-port', '0'], undefined, 20_000);
    expect(r.code).toBe(2);
    expectOneLineError(r, /concurrency/);
  });
});
