// The admin commands of issue 14 (`skiplock jobs list|show|why|retry|cancel|delete`,
// `skiplock stats`, `skiplock workers`, `skiplock prune`), run as the built bin against a
// schema of this file's own. Rows are put in the states a test needs with SQL on the
// schema's jobs table; library Workers run only where a test needs a live one (one at a
// time, concurrency 2, stopped at the end of the test).
// Connection budget: the file's pool (3), one worker (its pool of 6 and a listener), and
// the CLI processes (a pool of 1 each, at most 4 at once).
import { hostname } from 'node:os';
import { describe, expect, it } from 'vitest';
import { Queues, VERSION, type Worker } from '../src/index.js';
import { type CliResult, runCli } from './helpers/cli.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

const { db, producer, workers } = useTestSchema('admcli', {
  max: 3,
  workerDefaults: { pollIntervalMs: 100, leaseMs: 5000, reaperIntervalMs: 200, pruneIntervalMs: 0, scheduleIntervalMs: 0, concurrency: 2 },
});
const S = (): string => `"${db.schema}"`;

/** Runs `skiplock <args> --database-url … --schema …`; kills it (and fails) after timeoutMs. */
function cli(args: string[], timeoutMs = 30_000): Promise<CliResult> {
  return runCli([...args, '--database-url', db.connectionString, '--schema', db.schema], { timeoutMs });
}

const label = (args: string[]): string => `skiplock ${args.map((a) => (/^[\w.,:/-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}`;

/** Exit 0, nothing on stderr; returns stdout. */
async function ok(...args: string[]): Promise<string> {
  const r = await cli(args);
  expect({ cmd: label(args), code: r.code, stderr: r.stderr }).toEqual({ cmd: label(args), code: 0, stderr: '' });
  return r.stdout;
}

/** Exit `code` with exactly one line `skiplock: <message>` on stderr; returns the message. */
async function fails(code: 1 | 2, args: string[]): Promise<{ message: string; stdout: string }> {
  const r = await cli(args);
  return { message: expectError(r, code, label(args)), stdout: r.stdout };
}

function expectError(r: CliResult, code: number, what: string): string {
  expect({ cmd: what, code: r.code }, `stderr: ${r.stderr}`).toEqual({ cmd: what, code });
  expect(r.stderr, what).toMatch(/^skiplock: \S[^\n]*\n$/);
  return r.stderr.slice('skiplock: '.length, -1);
}

/** `--json` output, parsed. */
async function json<T = unknown>(...args: string[]): Promise<T> {
  return JSON.parse(await ok(...args)) as T;
}

/** The cells of a table line (columns are two or more spaces apart). */
const cells = (line: string): string[] => line.trim().split(/ {2,}/);
/** The lines of a table, each as its cells. */
const tableOf = (stdout: string): string[][] => stdout.trimEnd().split('\n').map(cells);

const LIST_HEADER = ['ID', 'STATUS', 'QUEUE', 'TASK', 'ATTEMPTS', 'CREATED', 'RUN AT', 'LAST ERROR'];
const STATS_HEADER = ['QUEUE', 'TASK', 'QUEUED', 'RUNNING', 'SCHEDULED', 'FAILED', 'DONE/1M', 'DONE/1H', 'FAILED/1H', 'ERRORS/1H', 'WAIT P50', 'P95', 'P99', 'OLDEST WAIT'];
const WORKERS_HEADER = ['WORKER', 'STATE', 'HOST', 'PID', 'VERSION', 'CONCURRENCY', 'RUNNING', 'UP', 'LAST SEEN', 'QUEUES', 'TASKS'];
const SUMMARY_FIELDS = ['id', 'queue', 'task', 'status', 'priority', 'run_at', 'attempts', 'max_attempts', 'locked_by', 'last_error', 'created_at', 'started_at', 'finished_at', 'schedule_name'];
const RECORD_FIELDS = [
  'id', 'queue', 'task', 'payload', 'status', 'priority', 'run_at', 'attempts', 'max_attempts', 'lease_expires_at', 'locked_by', 'last_error',
  'created_at', 'started_at', 'finished_at', 'dedupe_key', 'concurrency_key', 'concurrency_limit', 'timeout_ms', 'schedule_name', 'schedule_slot',
  'attempt_history',
];

/** Every column is aligned: each header cell starts (left) or ends (right) where its cells do. */
function expectAligned(stdout: string, rightAligned: ReadonlySet<number>): void {
  const lines = stdout.trimEnd().split('\n');
  const spans = (line: string): Array<[number, number]> => [...line.matchAll(/\S+(?: \S+)*/g)].map((m) => [m.index, m.index + m[0].length]);
  const header = spans(lines[0]!);
  for (const line of lines.slice(1)) {
    const row = spans(line);
    row.forEach(([start, end], i) => {
      if (rightAligned.has(i)) expect(end, `${line}: column ${i}`).toBe(header[i]![1]);
      else expect(start, `${line}: column ${i}`).toBe(header[i]![0]);
    });
  }
}

async function enqueue(queue: string, task: string, n = 1, options: { maxAttempts?: number } = {}): Promise<string[]> {
  return (await producer.enqueueMany(Array.from({ length: n }, (_, i) => ({ task, queue, payload: { i }, ...options })))).ids;
}

async function sql(text: string, values: unknown[] = []): Promise<void> {
  await db.pool.query(text, values);
}

/** Failed for good: attempts used up, finished now (or `finished` ago), with an error. */
async function makeFailed(ids: string[], error = 'boom', finished = '0 seconds'): Promise<void> {
  await sql(
    `UPDATE ${S()}.jobs SET status = 'failed', attempts = max_attempts, last_error = $2, started_at = now() - $3::interval,
       finished_at = now() - $3::interval WHERE id = ANY ($1::bigint[])`,
    [ids, error, finished],
  );
}

/** Succeeded `finished` ago. */
async function makeSucceeded(ids: string[], finished = '0 seconds'): Promise<void> {
  await sql(
    `UPDATE ${S()}.jobs SET status = 'succeeded', attempts = 1, locked_by = 'w-old', started_at = now() - $2::interval,
       finished_at = now() - $2::interval WHERE id = ANY ($1::bigint[])`,
    [ids, finished],
  );
}

/** Running on a worker that is not there, with a lease far ahead (no reaper takes it back). */
async function makeRunning(ids: string[]): Promise<void> {
  await sql(
    `UPDATE ${S()}.jobs SET status = 'running', attempts = 1, locked_by = 'w-ghost', started_at = now(),
       lease_token = gen_random_uuid(), lease_expires_at = now() + interval '1 hour' WHERE id = ANY ($1::bigint[])`,
    [ids],
  );
}

async function statuses(queue: string): Promise<Record<string, number>> {
  const rows = await db.rows<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM ${S()}.jobs WHERE queue = $1 GROUP BY status`, [queue]);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

async function statusOf(id: string): Promise<string | undefined> {
  return (await db.rows<{ status: string }>(`SELECT status FROM ${S()}.jobs WHERE id = $1`, [id]))[0]?.status;
}

/** The whole table, for "nothing changed" checks. */
function snapshot(): Promise<unknown[]> {
  return db.rows(`SELECT * FROM ${S()}.jobs ORDER BY id`);
}

/** Runs a worker for the length of fn, then stops it. */
async function withWorker<T>(tasks: Parameters<typeof workers.start>[0], options: Parameters<typeof workers.start>[1], fn: (w: Worker) => Promise<T>): Promise<T> {
  const worker = await workers.start(tasks, options);
  try {
    return await fn(worker);
  } finally {
    await worker.stop({ graceMs: 0 });
    workers.started.splice(workers.started.indexOf(worker), 1);
  }
}

// Runs first: the schema holds only this test's jobs, so the bare `skiplock jobs` lists them all.
describe('skiplock jobs list', () => {
  it('`skiplock jobs` alone is `jobs list`: a table, newest first', async () => {
    const [a, b] = await enqueue('lst', 'send', 2);
    const [c] = await enqueue('lst', 'other');
    const [d] = await enqueue('lst', 'send');
    await makeFailed([a!], 'smtp:   down\nat line 2');
    // Created three days ago (a stable "3.0d ago"); d due in three days.
    await sql(`UPDATE ${S()}.jobs SET created_at = now() - interval '3 days'`);
    await sql(`UPDATE ${S()}.jobs SET run_at = now() + interval '3 days' WHERE id = $1`, [d]);

    const bare = await ok('jobs');
    expect(await ok('jobs', 'list')).toBe(bare);
    expect(tableOf(bare)).toEqual([
      LIST_HEADER,
      [d, 'queued', 'lst', 'send', '0/25', '3.0d ago', 'in 3.0d'],
      [c, 'queued', 'lst', 'other', '0/25', '3.0d ago', '-'],
      [b, 'queued', 'lst', 'send', '0/25', '3.0d ago', '-'],
      [a, 'failed', 'lst', 'send', '25/25', '3.0d ago', '-', 'smtp: down at line 2'],
    ]);
    expectAligned(bare, new Set([0, 4]));
  });

  it('--limit pages with `next page: --after <id>`; --after gives the next page; --json is { jobs, next }', async () => {
    const ids = await enqueue('page', 'p', 5);
    await sql(`UPDATE ${S()}.jobs SET created_at = now() - interval '3 days' WHERE queue = 'page'`);
    const row = (id: string): string[] => [id, 'queued', 'page', 'p', '0/25', '3.0d ago', '-'];
    const [i1, i2, i3, i4, i5] = ids as [string, string, string, string, string];

    const first = await ok('jobs', 'list', '--queue', 'page', '--limit', '2');
    const firstLines = first.trimEnd().split('\n');
    expect(firstLines.slice(0, 3).map(cells)).toEqual([LIST_HEADER, row(i5), row(i4)]);
    expect(firstLines.slice(3)).toEqual([`next page: --after ${i4}`]);

    const second = await ok('jobs', 'list', '--queue', 'page', '--limit', '2', '--after', i4);
    const secondLines = second.trimEnd().split('\n');
    expect(secondLines.slice(0, 3).map(cells)).toEqual([LIST_HEADER, row(i3), row(i2)]);
    expect(secondLines.slice(3)).toEqual([`next page: --after ${i2}`]);

    const last = await ok('jobs', 'list', '--queue', 'page', '--limit', '2', '--after', i2);
    expect(tableOf(last)).toEqual([LIST_HEADER, row(i1)]); // a short page: no next line
    expect(await ok('jobs', 'list', '--queue', 'page', '--after', i1)).toBe('no more jobs\n');

    const page = await json<{ jobs: Array<Record<string, unknown>>; next: string | null }>('jobs', 'list', '--queue', 'page', '--limit', '2', '--json');
    expect(Object.keys(page).sort()).toEqual(['jobs', 'next']);
    expect(page.next).toBe(i4);
    expect(page.jobs.map((j) => j.id)).toEqual([i5, i4]);
    for (const j of page.jobs) {
      expect(Object.keys(j).sort()).toEqual([...SUMMARY_FIELDS].sort());
      expect(j).toMatchObject({ queue: 'page', task: 'p', status: 'queued', priority: 0, attempts: 0, max_attempts: 25, locked_by: null, last_error: null, started_at: null, finished_at: null, schedule_name: null });
      expect(new Date(j.created_at as string).toISOString()).toBe(j.created_at);
    }
    const rest = await json<{ jobs: Array<{ id: string }>; next: string | null }>('jobs', 'list', '--queue', 'page', '--after', i4, '--json');
    expect(rest).toMatchObject({ next: null });
    expect(rest.jobs.map((j) => j.id)).toEqual([i3, i2, i1]);
  });

  it('--status a,b, --queue, --task, --schedule and --older-than each narrow the list; no match prints `no jobs match`', async () => {
    const [a] = await enqueue('flt', 'alpha');
    const [b] = await enqueue('flt', 'beta');
    const [c] = await enqueue('flt', 'alpha');
    const [d] = await enqueue('flt', 'beta');
    const [e] = await enqueue('flt', 'alpha');
    const [other] = await enqueue('flt-other', 'alpha');
    await makeFailed([b!]);
    await producer.cancel(c!);
    await makeSucceeded([e!]);
    await sql(`UPDATE ${S()}.jobs SET schedule_name = 'nightly-flt', schedule_slot = now(), created_at = now() - interval '2 hours' WHERE id = $1`, [d]);
    await sql(`UPDATE ${S()}.jobs SET created_at = now() - interval '3 hours' WHERE id = $1`, [other]);

    const ids = async (...filters: string[]): Promise<string[]> =>
      (await json<{ jobs: Array<{ id: string }> }>('jobs', 'list', ...filters, '--json')).jobs.map((j) => j.id);
    expect(await ids('--queue', 'flt')).toEqual([e, d, c, b, a]);
    expect(await ids('--queue', 'flt', '--status', 'failed,cancelled')).toEqual([c, b]);
    expect(await ids('--queue', 'flt', '--status', 'succeeded')).toEqual([e]);
    expect(await ids('--queue', 'flt', '--task', 'beta')).toEqual([d, b]);
    expect(await ids('--queue', 'flt', '--task', 'alpha', '--status', 'queued')).toEqual([a]);
    expect(await ids('--schedule', 'nightly-flt')).toEqual([d]);
    expect(await ids('--queue', 'flt', '--older-than', '1h')).toEqual([d]);
    expect(await ids('--task', 'alpha', '--older-than', '90m')).toEqual([other]);
    expect(await ids('--queue', 'flt-other')).toEqual([other]);

    const table = await ok('jobs', 'list', '--queue', 'flt', '--status', 'failed');
    expect(table.trimEnd().split('\n').map(cells)).toEqual([LIST_HEADER, [b, 'failed', 'flt', 'beta', '25/25', expect.stringMatching(/^\d+ms ago$|^\d+\.\ds ago$/), '-', 'boom']]);

    expect(await ok('jobs', 'list', '--queue', 'flt', '--status', 'running')).toBe('no jobs match\n');
    expect(await ok('jobs', '--queue', 'no-such-queue')).toBe('no jobs match\n');
    expect(await ok('jobs', 'list', '--schedule', 'nightly-flt', '--older-than', '3h')).toBe('no jobs match\n');
    expect(await json('jobs', 'list', '--queue', 'no-such-queue', '--json')).toEqual({ jobs: [], next: null });
  });
});

describe('bad input', () => {
  it('exits 2 with one `skiplock:` line, prints nothing and changes nothing', async () => {
    const [failedId] = await enqueue('bad', 'b', 1);
    await makeFailed([failedId!]);
    await enqueue('bad', 'b', 2);
    const before = await snapshot();

    const cases: Array<[string[], RegExp]> = [
      [['jobs', 'list', '--status', 'done'], /^invalid status "done": expected one of queued, running, succeeded, failed, cancelled$/],
      [['jobs', '--status', 'failed,nope'], /^invalid status "nope"/],
      [['jobs', 'list', '--status', ''], /^invalid status filter: name at least one status$/],
      [['jobs', 'list', '--status', ','], /^invalid status filter: name at least one status$/],
      [['jobs', 'list', '--queue', 'bad queue'], /^invalid queue name "bad queue"/],
      [['jobs', 'list', '--task', 'bad!'], /^invalid task name "bad!"/],
      [['jobs', 'list', '--schedule', '.x'], /^invalid schedule name "\.x"/],
      [['jobs', 'list', '--older-than', 'soon'], /^invalid age "soon"/],
      [['jobs', 'list', '--limit', '0'], /^invalid limit 0: expected a whole number from 1 to 1000$/],
      [['jobs', 'list', '--limit', '1001'], /^invalid limit 1001: expected a whole number from 1 to 1000$/],
      [['jobs', 'list', '--limit', 'abc'], /^invalid limit "abc": expected a whole number$/],
      [['jobs', 'list', '--after', 'abc'], /^invalid cursor "abc"/],
      [['jobs', 'retry'], /^give a job id, or filters with --all/],
      [['jobs', 'cancel'], /^give a job id, or filters with --all/],
      [['jobs', 'delete'], /^give a job id, or filters with --all/],
      [['jobs', 'retry', '--queue', 'bad'], /--all/],
      [['jobs', 'delete', '--status', 'failed'], /^delete by filter changes every job it names: add --all/],
      [['jobs', 'retry', failedId!, '--queue', 'bad'], /^give a job id or filters with --all, not both$/],
      [['jobs', 'delete', failedId!, '--all'], /^give a job id or filters with --all, not both$/],
      [['jobs', 'retry', failedId!, '--dry-run'], /^--dry-run goes with filters and --all$/],
      [['jobs', 'retry', '--status', 'queued', '--all'], /^retry acts on failed or cancelled jobs; --status queued names none of them$/],
      [['jobs', 'cancel', '--status', 'failed,succeeded', '--all', '--dry-run'], /^cancel acts on queued or running jobs; --status failed,succeeded names none of them$/],
      [['jobs', 'delete', '--status', 'running', '--all'], /^delete acts on not running jobs; --status running names none of them$/],
      [['jobs', 'delete', '--all', '--status', 'nope'], /^invalid status "nope"/],
      [['jobs', 'delete', '--all', '--older-than', '-1d'], /.+/],
      [['jobs', 'retry', 'abc'], /^invalid job id "abc": expected a whole number/],
      [['jobs', 'cancel', '12x'], /^invalid job id "12x": expected a whole number/],
      [['jobs', 'delete', '-5'], /.+/],
      [['jobs', 'show', 'abc'], /^invalid job id "abc": expected a whole number/],
      [['jobs', 'why', 'abc'], /^invalid job id "abc": expected a whole number/],
      [['prune'], /^name what to prune: --succeeded, --failed and\/or --cancelled/],
      [['prune', '--json'], /^name what to prune/],
      [['prune', '--failed', 'xyz'], /^invalid age of failed jobs "xyz"/],
      [['prune', '--succeeded', '1d', '--cancelled', '7 weeks'], /^invalid age of cancelled jobs "7 weeks"/],
    ];
    const results: Array<{ args: string[]; want: RegExp; r: CliResult }> = [];
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      const done = await Promise.all(batch.map(([args]) => cli(args)));
      done.forEach((r, k) => results.push({ args: batch[k]![0], want: batch[k]![1], r }));
    }
    for (const { args, want, r } of results) {
      const message = expectError(r, 2, label(args));
      expect(message, label(args)).toMatch(want);
      expect(r.stdout, label(args)).toBe('');
    }
    expect(await snapshot()).toEqual(before);
  });

  it('numbers past what the database holds are bad input too (exit 2), not a database error', async () => {
    const before = await snapshot();
    const big = '9999999999999999999'; // 19 digits, above the largest bigint
    // Each case is checked on its own (expect.soft): the failures list every command that misbehaves.
    // An id no job can have: refused as invalid (2), or simply not found (1); never the database's own error.
    for (const verb of ['show', 'why', 'retry', 'cancel', 'delete']) {
      const args = ['jobs', verb, big];
      const r = await cli(args);
      expect.soft({ cmd: label(args), code: r.code, stderr: r.stderr }).toSatisfy(
        (got: { code: number | null; stderr: string }) =>
          (got.code === 2 && /^skiplock: invalid job id "9999999999999999999"[^\n]*\n$/.test(got.stderr)) ||
          (got.code === 1 && got.stderr === `skiplock: no job ${big}\n`),
        'exit 2 `invalid job id` or exit 1 `no job N`',
      );
      expect.soft(r.stdout, label(args)).toBe('');
    }
    const cases: Array<[string[], RegExp]> = [
      [['jobs', 'list', '--after', big], /^invalid cursor "9999999999999999999"/],
      [['jobs', 'list', '--older-than', '99999999999d'], /^invalid age "99999999999d"/],
      [['jobs', 'delete', '--all', '--older-than', '99999999999d'], /^invalid age "99999999999d"/],
      [['prune', '--failed', '99999999999d'], /^invalid age of failed jobs "99999999999d"/],
    ];
    for (const [args, want] of cases) {
      const r = await cli(args);
      expect.soft({ cmd: label(args), code: r.code, stdout: r.stdout }).toEqual({ cmd: label(args), code: 2, stdout: '' });
      expect.soft(r.stderr, label(args)).toMatch(new RegExp(`^skiplock: ${want.source.slice(1)}[^\\n]*\\n$`));
    }
    expect(await snapshot()).toEqual(before);
  });
});

describe('skiplock jobs retry | cancel | delete <id>', () => {
  it('changes one job with a line each; the wrong status exits 1 with why; a missing id exits 1 `no job N`', async () => {
    const [j] = await enqueue('one', 'single', 1, { maxAttempts: 3 });
    await makeFailed([j!]);

    expect(await ok('jobs', 'retry', j!)).toBe(`job ${j} requeued (was failed)\n`);
    expect((await db.rows(`SELECT status, attempts, finished_at FROM ${S()}.jobs WHERE id = $1`, [j]))[0]).toEqual({ status: 'queued', attempts: 0, finished_at: null });
    expect(await fails(1, ['jobs', 'retry', j!])).toEqual({ message: `job ${j} not requeued: it is queued (only failed or cancelled jobs can be)`, stdout: '' });

    expect(await ok('jobs', 'cancel', j!)).toBe(`job ${j} cancelled (was queued)\n`);
    expect(await statusOf(j!)).toBe('cancelled');
    expect(await fails(1, ['jobs', 'cancel', j!])).toEqual({ message: `job ${j} not cancelled: it is cancelled (only queued or running jobs can be)`, stdout: '' });

    expect(await ok('jobs', 'retry', j!)).toBe(`job ${j} requeued (was cancelled)\n`);
    expect(await ok('jobs', 'delete', j!)).toBe(`job ${j} deleted (was queued)\n`);
    expect(await statusOf(j!)).toBeUndefined();

    for (const verb of ['retry', 'cancel', 'delete', 'show', 'why']) {
      expect(await fails(1, ['jobs', verb, j!])).toEqual({ message: `no job ${j}`, stdout: '' });
    }
    expect(await fails(1, ['jobs', 'cancel', '9223372036854775807'])).toEqual({ message: 'no job 9223372036854775807', stdout: '' });

    // A succeeded job is neither retried nor cancelled, but may be deleted.
    const [s] = await enqueue('one', 'single');
    await makeSucceeded([s!]);
    expect((await fails(1, ['jobs', 'retry', s!])).message).toBe(`job ${s} not requeued: it is succeeded (only failed or cancelled jobs can be)`);
    expect((await fails(1, ['jobs', 'cancel', s!])).message).toBe(`job ${s} not cancelled: it is succeeded (only queued or running jobs can be)`);
    expect(await statusOf(s!)).toBe('succeeded');

    // --json: the change as one object; an unchanged job still exits 1.
    expect(JSON.parse(await ok('jobs', 'delete', s!, '--json'))).toEqual({ id: s, action: 'delete', previous: 'succeeded', changed: true });
    const [q] = await enqueue('one', 'single');
    expect(JSON.parse(await ok('jobs', 'cancel', q!, '--json'))).toEqual({ id: q, action: 'cancel', previous: 'queued', changed: true });
    const again = await fails(1, ['jobs', 'cancel', q!, '--json']);
    expect(again.message).toBe(`job ${q} not cancelled: it is cancelled (only queued or running jobs can be)`);
    expect(JSON.parse(again.stdout)).toEqual({ id: q, action: 'cancel', previous: 'cancelled', changed: false });
    const missing = await fails(1, ['jobs', 'retry', s!, '--json']);
    expect(missing.message).toBe(`no job ${s}`);
    expect(JSON.parse(missing.stdout)).toEqual({ id: s, action: 'retry', changed: false });
  });

  it('delete refuses a running job (made running by SQL) until it is cancelled', async () => {
    const [r] = await enqueue('one-run', 'single');
    await makeRunning([r!]);
    expect(await fails(1, ['jobs', 'delete', r!])).toEqual({ message: `job ${r} not deleted: it is running (cancel it first)`, stdout: '' });
    expect(await fails(1, ['jobs', 'retry', r!])).toEqual({ message: `job ${r} not requeued: it is running (only failed or cancelled jobs can be)`, stdout: '' });
    expect(await statusOf(r!)).toBe('running');
    expect(await ok('jobs', 'cancel', r!)).toBe(`job ${r} cancelled (was running)\n`);
    const record = await json<{ status: string; attempt_history: Array<Record<string, unknown>> }>('jobs', 'show', r!);
    expect(record.status).toBe('cancelled');
    expect(record.attempt_history).toEqual([
      { attempt: 1, worker: 'w-ghost', started_at: expect.any(String), ended_at: expect.any(String), outcome: 'cancelled', error: null, retry_at: null },
    ]);
    expect(await ok('jobs', 'delete', r!)).toBe(`job ${r} deleted (was cancelled)\n`);
    expect(await statusOf(r!)).toBeUndefined();
  });

  it('delete refuses a job a live worker runs; `skiplock workers` lists the worker, `no workers` once it stopped', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let id = '';
    await withWorker({ hold: () => released }, { queues: ['hold'] }, async (worker) => {
      [id] = (await enqueue('hold', 'hold')) as [string];
      await waitFor(async () => (await statusOf(id)) === 'running', 10_000, 'the held job to run');

      expect(await fails(1, ['jobs', 'delete', id])).toEqual({ message: `job ${id} not deleted: it is running (cancel it first)`, stdout: '' });
      expect(await statusOf(id)).toBe('running');
      const why = await ok('jobs', 'why', id);
      expect(why).toMatch(new RegExp(`^job ${id} \\(running\\): it is running on worker ${escape(worker.id)} since \\S+Z \\(attempt 1 of 25\\), lease until \\S+Z\\n$`));

      const table = tableOf(await ok('workers'));
      expect(table).toHaveLength(2);
      expect(table[0]).toEqual(WORKERS_HEADER);
      expect(table[1]).toEqual([worker.id, 'live', hostname(), String(process.pid), VERSION, '2', '1', expect.stringMatching(/^\d+(ms|\.\ds)$/), expect.stringMatching(/ ago$/), 'hold', 'hold']);
      const list = await json<Array<Record<string, unknown>>>('workers', '--json');
      expect(list).toEqual([
        {
          id: worker.id,
          host: hostname(),
          pid: process.pid,
          version: VERSION,
          tasks: ['hold'],
          queues: ['hold'],
          concurrency: 2,
          started_at: expect.any(String),
          seen_at: expect.any(String),
          alive: true,
          running: 1,
        },
      ]);

      release();
      await waitFor(async () => (await statusOf(id)) === 'succeeded', 10_000, 'the held job to succeed');
    });
    expect(await ok('workers')).toBe('no workers\n');
    expect(await json('workers', '--json')).toEqual([]);
    expect(await ok('jobs', 'delete', id)).toBe(`job ${id} deleted (was succeeded)\n`);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('bulk retry | cancel | delete --all', () => {
  it('--dry-run counts and changes nothing; the action reports changed of matching; --json; bulk delete', async () => {
    const queued = await enqueue('bulkq', 'bt', 5);
    const [running] = await enqueue('bulkq', 'bt');
    const done = await enqueue('bulkq', 'bt', 2);
    const [bystander] = await enqueue('bulkq-other', 'bt');
    await makeRunning([running!]);
    await makeSucceeded(done);
    const before = await snapshot();

    expect(await ok('jobs', 'cancel', '--queue', 'bulkq', '--all', '--dry-run')).toBe('would cancel 6 jobs (queued or running jobs of queue bulkq); nothing changed\n');
    expect(await snapshot()).toEqual(before);
    expect(await json('jobs', 'cancel', '--queue', 'bulkq', '--all', '--dry-run', '--json')).toEqual({ action: 'cancel', dryRun: true, matched: 6, changed: 0 });
    expect(await snapshot()).toEqual(before);

    expect(await ok('jobs', 'cancel', '--queue', 'bulkq', '--all')).toBe('cancelled 6 jobs of 6 matching (queued or running jobs of queue bulkq)\n');
    expect(await statuses('bulkq')).toEqual({ cancelled: 6, succeeded: 2 });
    expect(await statusOf(bystander!)).toBe('queued');
    expect(await db.rows(`SELECT lease_token, lease_expires_at FROM ${S()}.jobs WHERE id = $1`, [running])).toEqual([{ lease_token: null, lease_expires_at: null }]);
    expect(await ok('jobs', 'cancel', '--queue', 'bulkq', '--all')).toBe('cancelled 0 jobs of 0 matching (queued or running jobs of queue bulkq)\n');

    expect(await json('jobs', 'retry', '--queue', 'bulkq', '--task', 'bt', '--all', '--json')).toEqual({ action: 'retry', dryRun: false, matched: 6, changed: 6 });
    expect(await statuses('bulkq')).toEqual({ queued: 6, succeeded: 2 });
    for (const id of queued) expect(await statusOf(id)).toBe('queued');

    expect(await ok('jobs', 'delete', '--queue', 'bulkq', '--status', 'succeeded', '--all', '--dry-run')).toBe('would delete 2 jobs (succeeded jobs of queue bulkq); nothing changed\n');
    expect(await ok('jobs', 'delete', '--queue', 'bulkq', '--status', 'succeeded,queued', '--all')).toBe('deleted 8 jobs of 8 matching (queued or succeeded jobs of queue bulkq)\n');
    expect(await statuses('bulkq')).toEqual({});
    expect(await statusOf(bystander!)).toBe('queued');

    // Every filter in the words of the line.
    const [old] = await enqueue('bulkq', 'bt');
    await enqueue('bulkq', 'bt');
    await sql(`UPDATE ${S()}.jobs SET created_at = now() - interval '3 days', schedule_name = 'bulk-sched', schedule_slot = now() WHERE id = $1`, [old]);
    expect(await ok('jobs', 'delete', '--queue', 'bulkq', '--task', 'bt', '--schedule', 'bulk-sched', '--older-than', '2d', '--all')).toBe(
      'deleted 1 job of 1 matching (queued or succeeded or failed or cancelled jobs of queue bulkq of task bt of schedule bulk-sched created more than 2.0d ago)\n',
    );
    expect(await statuses('bulkq')).toEqual({ queued: 1 });
  });

  it('bulk retry of 2,500 failed jobs requeues all of them', async () => {
    const ids = await enqueue('mass', 'massjob', 2500, { maxAttempts: 3 });
    await makeFailed(ids, 'gave up');
    expect(await statuses('mass')).toEqual({ failed: 2500 });
    expect(await ok('jobs', 'retry', '--queue', 'mass', '--all', '--dry-run')).toBe('would retry 2500 jobs (failed or cancelled jobs of queue mass); nothing changed\n');
    expect(await statuses('mass')).toEqual({ failed: 2500 });
    expect(await ok('jobs', 'retry', '--queue', 'mass', '--status', 'failed', '--all')).toBe('requeued 2500 jobs of 2500 matching (failed jobs of queue mass)\n');
    expect(await db.rows(`SELECT status, attempts, count(*)::int AS n FROM ${S()}.jobs WHERE queue = 'mass' GROUP BY status, attempts`)).toEqual([
      { status: 'queued', attempts: 0, n: 2500 },
    ]);
    expect(await ok('jobs', 'delete', '--queue', 'mass', '--all')).toBe('deleted 2500 jobs of 2500 matching (queued or succeeded or failed or cancelled jobs of queue mass)\n');
    expect(await statuses('mass')).toEqual({});
  });
});

describe('skiplock jobs show | why', () => {
  it('show prints the record with its attempt history (two errors, then the success); why says how it ended', async () => {
    let attempts = 0;
    let workerId = '';
    const [id] = await enqueue('hist', 'flaky', 1, { maxAttempts: 5 });
    await withWorker(
      {
        flaky: async (_p: never, ctx) => {
          attempts++;
          if (ctx.job.attempt < 3) throw new Error(`boom ${ctx.job.attempt}`);
        },
      },
      { queues: ['hist'], backoff: { baseMs: 10, maxMs: 10, jitter: 0 } },
      async (worker) => {
        workerId = worker.id;
        await waitFor(async () => (await statusOf(id!)) === 'succeeded', 15_000, 'the flaky job to succeed');
      },
    );
    expect(attempts).toBe(3);

    const out = await ok('jobs', 'show', id!);
    expect(out.endsWith('}\n')).toBe(true);
    const job = JSON.parse(out) as Record<string, unknown> & { attempt_history: Array<Record<string, string | number | null>> };
    expect(Object.keys(job).sort()).toEqual([...RECORD_FIELDS].sort());
    expect(job).toMatchObject({ id, queue: 'hist', task: 'flaky', payload: { i: 0 }, status: 'succeeded', attempts: 3, max_attempts: 5, locked_by: workerId, last_error: 'Error: boom 2' });
    expect(job.attempt_history.map((a) => [a.attempt, a.worker, a.outcome, a.error])).toEqual([
      [1, workerId, 'error', 'Error: boom 1'],
      [2, workerId, 'error', 'Error: boom 2'],
      [3, workerId, 'succeeded', null],
    ]);
    for (const a of job.attempt_history) {
      expect(Object.keys(a).sort()).toEqual(['attempt', 'ended_at', 'error', 'outcome', 'retry_at', 'started_at', 'worker']);
      expect(Date.parse(a.ended_at as string)).toBeGreaterThanOrEqual(Date.parse(a.started_at as string));
    }
    expect(job.attempt_history[0]!.retry_at).toEqual(expect.any(String));
    expect(job.attempt_history[2]!.retry_at).toBeNull();
    expect(job.attempt_history[2]!.ended_at).toBe(job.finished_at);

    expect(await ok('jobs', 'why', id!)).toBe(`job ${id} (succeeded): it ran: succeeded at ${String(job.finished_at)} (attempt 3 of 5)\n`);
  });

  it('why: delayed, queue paused, no live worker, no worker at all, failed; --json', async () => {
    const queues = new Queues({ pool: db.pool, schema: db.schema });
    const delayed = (await producer.enqueue('whytask', {}, { queue: 'whyq', delay: '1h' })).id;
    const paused = (await producer.enqueue('whytask', {}, { queue: 'whyp' })).id;
    await queues.pause('whyp');
    const orphan = (await producer.enqueue('nobody', {}, { queue: 'whyq' })).id;
    const [failed] = await enqueue('whyq', 'whytask', 1, { maxAttempts: 3 });
    await makeFailed([failed!], 'connection refused\n    at connect (net.js:1:1)');
    await sql(`UPDATE ${S()}.jobs SET finished_at = '2025-01-02T03:04:05.678Z' WHERE id = $1`, [failed]);
    const [runAt] = await db.rows<{ run_at: Date }>(`SELECT run_at FROM ${S()}.jobs WHERE id = $1`, [delayed]);
    const until = runAt!.run_at.toISOString();

    await withWorker({ whytask: () => undefined }, {}, async (worker) => {
      expect(await ok('jobs', 'why', delayed)).toMatch(new RegExp(`^job ${delayed} \\(queued\\): it is delayed until ${escape(until)} \\(in (59m \\d+s|1h 0m)\\)\\n$`));
      expect(await ok('jobs', 'why', paused)).toBe(`job ${paused} (queued): its queue "whyp" is paused; \`skiplock queues resume whyp\` lets workers take it\n`);
      expect(await ok('jobs', 'why', orphan)).toBe(
        `job ${orphan} (queued): no live worker handles task "nobody" in queue "whyq" (1 worker live, none takes it); start one with that task and queue\n`,
      );
      const diagnosis = await json<Record<string, unknown>>('jobs', 'why', paused, '--json');
      expect(diagnosis).toEqual({
        id: paused,
        status: 'queued',
        reason: 'queue_paused',
        message: 'its queue "whyp" is paused; `skiplock queues resume whyp` lets workers take it',
        blockers: ['queue_paused'],
      });
      expect(await statusOf(paused)).toBe('queued');
      expect(worker.isRunning).toBe(true);
    });

    // The worker stopped (its presence row is gone): nothing runs anything.
    expect(await ok('jobs', 'why', orphan)).toBe(
      `job ${orphan} (queued): no worker is running (none has reported in its last few seconds); start one that handles task "nobody" in queue "whyq"\n`,
    );
    const both = await json<{ reason: string; blockers: string[]; message: string }>('jobs', 'why', delayed, '--json');
    expect(both).toMatchObject({ id: delayed, status: 'queued', reason: 'delayed', blockers: ['delayed', 'no_worker'] });
    expect(both.message).toMatch(new RegExp(`^it is delayed until ${escape(until)} \\(in [^)]+\\); also: no worker is running`));
    expect(await json('jobs', 'why', paused, '--json')).toMatchObject({ reason: 'queue_paused', blockers: ['queue_paused', 'no_worker'] });

    const failedMessage =
      'it failed for good at 2025-01-02T03:04:05.678Z: attempts exhausted (3 of 3); last error: connection refused; ' +
      `\`skiplock jobs retry ${failed}\` runs it again with fresh attempts`;
    expect(await ok('jobs', 'why', failed!)).toBe(`job ${failed} (failed): ${failedMessage}\n`);
    expect(await json('jobs', 'why', failed!, '--json')).toEqual({ id: failed, status: 'failed', reason: 'failed', message: failedMessage, blockers: ['failed'] });

    await queues.resume('whyp');
    await producer.cancel(paused);
    expect(await json('jobs', 'why', paused, '--json')).toMatchObject({ status: 'cancelled', reason: 'cancelled', blockers: ['cancelled'] });
  });
});

describe('skiplock stats', () => {
  it('has a row per queue and task with the counts; --json gives the same as objects', async () => {
    const [a1, a2, a3, a4] = await enqueue('stq', 'sa', 4);
    const [b1, b2] = await enqueue('stq', 'sb', 2);
    // sa: two due for three days, one due tomorrow, one failed with an error 10 minutes ago (and one 2 hours ago).
    await sql(`UPDATE ${S()}.jobs SET run_at = now() - interval '3 days' WHERE id IN ($1, $2)`, [a1, a2]);
    await sql(`UPDATE ${S()}.jobs SET run_at = now() + interval '1 day' WHERE id = $1`, [a3]);
    await makeFailed([a4!]);
    await sql(
      `UPDATE ${S()}.jobs SET started_at = NULL, attempt_log = jsonb_build_array(
         jsonb_build_object('attempt', 1, 'outcome', 'error', 'error', 'old', 'ended_at', now() - interval '2 hours'),
         jsonb_build_object('attempt', 2, 'outcome', 'error', 'error', 'new', 'ended_at', now() - interval '10 minutes'))
       WHERE id = $1`,
      [a4],
    );
    // sb: one running (waited 10 s from due to start), one succeeded just now (waited 20 s).
    await makeRunning([b1!]);
    await makeSucceeded([b2!]);
    await sql(
      `UPDATE ${S()}.jobs SET run_at = CASE WHEN id = $1 THEN now() - interval '10 seconds' ELSE now() - interval '30 seconds' END,
         started_at = CASE WHEN id = $1 THEN now() ELSE now() - interval '10 seconds' END WHERE id IN ($1, $2)`,
      [b1, b2],
    );

    const out = await ok('stats');
    const table = tableOf(out);
    expect(table[0]).toEqual(STATS_HEADER);
    const rows = table.filter((r) => r[0] === 'stq');
    expect(rows).toEqual([
      ['stq', 'sa', '2', '0', '1', '1', '0', '0', '1', '1', '-', '-', '-', '3.0d'],
      ['stq', 'sb', '0', '1', '0', '0', '1', '1', '0', '0', '15.0s', '19.5s', '19.9s', '-'],
    ]);
    expectAligned(out, new Set(STATS_HEADER.map((_, i) => i).filter((i) => i >= 2)));
    // Every other row is of another queue of this file, one per queue and task.
    const keys = table.slice(1).map((r) => `${r[0]}/${r[1]}`);
    expect(new Set(keys).size).toBe(keys.length);

    const stats = await json<Array<Record<string, unknown>>>('stats', '--json');
    expect(stats.map((s) => `${String(s.queue)}/${String(s.task)}`)).toEqual(keys);
    const sa = stats.find((s) => s.queue === 'stq' && s.task === 'sa')!;
    const sb = stats.find((s) => s.queue === 'stq' && s.task === 'sb')!;
    expect(Object.keys(sa).sort()).toEqual(
      [
        'queue', 'task', 'queued', 'scheduled', 'running', 'succeeded', 'failed', 'cancelled', 'oldest_wait_ms', 'succeeded_1m', 'succeeded_1h',
        'failed_1m', 'failed_1h', 'errors_1h', 'started_1h', 'wait_p50_ms', 'wait_p95_ms', 'wait_p99_ms',
      ].sort(),
    );
    expect(sa).toMatchObject({
      queued: 2, scheduled: 1, running: 0, succeeded: 0, failed: 1, cancelled: 0, succeeded_1m: 0, succeeded_1h: 0, failed_1m: 1, failed_1h: 1,
      errors_1h: 1, started_1h: 0, wait_p50_ms: null, wait_p95_ms: null, wait_p99_ms: null,
    });
    expect(sa.oldest_wait_ms as number).toBeGreaterThanOrEqual(3 * 86_400_000);
    expect(sa.oldest_wait_ms as number).toBeLessThan(3 * 86_400_000 + 60_000);
    expect(sb).toMatchObject({
      queued: 0, scheduled: 0, running: 1, succeeded: 1, failed: 0, cancelled: 0, succeeded_1m: 1, succeeded_1h: 1, failed_1m: 0, failed_1h: 0,
      errors_1h: 0, started_1h: 2, oldest_wait_ms: null,
    });
    expect(sb.wait_p50_ms as number).toBeCloseTo(15_000, 3);
    expect(sb.wait_p95_ms as number).toBeCloseTo(19_500, 3);
    expect(sb.wait_p99_ms as number).toBeCloseTo(19_900, 3);

    // Let later tests' `jobs why` and prune see no stray running job.
    await sql(`DELETE FROM ${S()}.jobs WHERE queue = 'stq'`);
  });
});

describe('skiplock prune', () => {
  it('deletes only finished jobs older than the given ages; --json', async () => {
    // Nothing else in the schema finished more than a day ago.
    const [stale] = await db.rows<{ n: number }>(`SELECT count(*)::int AS n FROM ${S()}.jobs WHERE finished_at < now() - interval '1 day'`);
    expect(stale!.n).toBe(1); // the failed job of the `why` test, finished 2025-01-02
    await sql(`UPDATE ${S()}.jobs SET finished_at = now() - interval '1 hour' WHERE finished_at < now() - interval '1 day'`);

    const [sOld, sOld2, sNew, fOld, fNew, cOld, q] = await enqueue('prn', 'pt', 7);
    await makeSucceeded([sOld!, sOld2!], '2 days');
    await makeSucceeded([sNew!], '12 hours');
    await makeFailed([fOld!], 'x', '40 days');
    await makeFailed([fNew!], 'x', '10 days');
    await producer.cancel(cOld!);
    await sql(`UPDATE ${S()}.jobs SET finished_at = now() - interval '40 days' WHERE id = $1`, [cOld]);
    await sql(`UPDATE ${S()}.jobs SET created_at = now() - interval '90 days' WHERE queue = 'prn'`); // age is by finished_at, not created_at
    const total = async (): Promise<number> => (await db.rows<{ n: number }>(`SELECT count(*)::int AS n FROM ${S()}.jobs`))[0]!.n;
    const before = await total();

    expect(await ok('prune', '--succeeded', '1d', '--failed', '30d')).toBe('deleted 3 jobs (2 succeeded, 1 failed)\n');
    const left = await db.rows<{ id: string }>(`SELECT id::text FROM ${S()}.jobs WHERE queue = 'prn' ORDER BY id`);
    expect(left.map((r) => r.id)).toEqual([sNew, fNew, cOld, q]);
    expect(await total()).toBe(before - 3);

    expect(await ok('prune', '--succeeded', '1d', '--failed', '30d')).toBe('deleted 0 jobs (0 succeeded, 0 failed)\n');
    expect(await ok('prune', '--failed', '5d')).toBe('deleted 1 job (1 failed)\n');
    expect(await statusOf(fNew!)).toBeUndefined();

    expect(await json('prune', '--succeeded', '6h', '--cancelled', '7d', '--json')).toEqual({ succeeded: 1, failed: 0, cancelled: 1 });
    expect((await db.rows<{ id: string }>(`SELECT id::text FROM ${S()}.jobs WHERE queue = 'prn'`)).map((r) => r.id)).toEqual([q]);
    expect(await total()).toBe(before - 6);
  });
});
