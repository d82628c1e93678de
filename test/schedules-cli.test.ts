// `skiplock schedules`: the built CLI against a schema of this file's own. No workers run
// here, so nothing moves a schedule on: what the table holds is what the commands wrote.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, runCli, startCli } from './helpers/cli.js';
import { type TestSchema, createTestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let db: TestSchema;
let conn: string[];

beforeAll(async () => {
  // Two connections: one for queries, one to hold a lock in the race.
  db = await createTestSchema('schedcli', { max: 2 });
  conn = ['--database-url', db.connectionString, '--schema', db.schema];
});

afterAll(async () => {
  await db?.drop();
});

function schedules(...args: string[]): Promise<CliResult> {
  return runCli(['schedules', ...args, ...conn]);
}

/** `skiplock schedules list --json`, parsed. */
async function listJson(): Promise<Array<Record<string, unknown>>> {
  const r = await schedules('list', '--json');
  expect(r).toMatchObject({ code: 0, stderr: '' });
  return JSON.parse(r.stdout) as Array<Record<string, unknown>>;
}

interface Row {
  name: string;
  cron: string;
  timezone: string;
  task: string;
  payload: unknown;
  queue: string;
  priority: number;
  max_attempts: number;
  timeout_ms: number | null;
  concurrency_key: string | null;
  concurrency_limit: number | null;
  catch_up: string;
  max_catch_up: number;
  paused: boolean;
  next_slot: Date;
  created_at: Date;
  updated_at: Date;
}

function tableRows(): Promise<Row[]> {
  return db.rows<Row>(`SELECT * FROM "${db.schema}".schedules ORDER BY name`);
}

async function row(name: string): Promise<Row | undefined> {
  return (await db.rows<Row>(`SELECT * FROM "${db.schema}".schedules WHERE name = $1`, [name]))[0];
}

/** The ISO time after "next slot " in a command's line. */
function nextSlotOf(line: string): Date {
  const match = /next slot (\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{3})?Z)/.exec(line);
  expect(match, line).not.toBeNull();
  return new Date(match![1]!);
}

/** The wall-clock hour and minute of an instant in a zone, e.g. "03:00". */
function wallClock(date: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(date);
}

const SCHEDULE_FIELDS = [
  'name',
  'cron',
  'timezone',
  'task',
  'payload',
  'queue',
  'priority',
  'maxAttempts',
  'timeoutMs',
  'concurrencyKey',
  'concurrencyLimit',
  'catchUp',
  'maxCatchUp',
  'paused',
  'nextSlot',
  'lastSlot',
  'lastEnqueuedAt',
  'createdAt',
  'updatedAt',
];

describe('skiplock schedules set', () => {
  it('creates a schedule, then updates it under the same name, and prints which with the next slot', async () => {
    const created = await schedules('set', 'nightly', '0 3 * * *', 'report', '{"to": "ops"}', '--timezone', 'Europe/Berlin');
    expect(created).toMatchObject({ code: 0, stderr: '' });
    expect(created.stdout).toMatch(/^schedule nightly created \("0 3 \* \* \*" Europe\/Berlin, task report, queue default, catch-up latest\): next slot \S+\n$/);
    const first = nextSlotOf(created.stdout);
    expect(first.getTime()).toBeGreaterThan(Date.now() - 1000);
    expect(first.getTime()).toBeLessThanOrEqual(Date.now() + 86_400_000 + 3_600_000);
    expect(wallClock(first, 'Europe/Berlin')).toBe('03:00');
    expect(await row('nightly')).toMatchObject({
      cron: '0 3 * * *',
      timezone: 'Europe/Berlin',
      task: 'report',
      payload: { to: 'ops' },
      queue: 'default',
      priority: 0,
      max_attempts: 25,
      timeout_ms: null,
      concurrency_key: null,
      concurrency_limit: null,
      catch_up: 'latest',
      max_catch_up: 100,
      paused: false,
    });
    expect((await row('nightly'))!.next_slot.getTime()).toBe(first.getTime());

    // Same name, same expression and zone: every option redefined, the place kept.
    const updated = await schedules(
      'set', 'nightly', '0 3 * * *', 'report', '{"to": "ops", "v": 2}',
      '--timezone', 'Europe/Berlin',
      '--queue', 'reports',
      '--priority', '-5',
      '--max-attempts', '3',
      '--timeout', '30s',
      '--concurrency-key', 'report-k',
      '--concurrency-limit', '2',
      '--catch-up', 'all',
      '--max-catch-up', '7',
    );
    expect(updated).toMatchObject({ code: 0, stderr: '' });
    expect(updated.stdout).toMatch(/^schedule nightly updated \(.*queue reports, catch-up all \(max 7\)\): next slot \S+\n$/);
    expect(nextSlotOf(updated.stdout).getTime()).toBe(first.getTime());
    expect(await db.rows(`SELECT count(*)::int AS n FROM "${db.schema}".schedules WHERE name = 'nightly'`)).toEqual([{ n: 1 }]);
    expect(await row('nightly')).toMatchObject({
      payload: { to: 'ops', v: 2 },
      queue: 'reports',
      priority: -5,
      max_attempts: 3,
      timeout_ms: 30_000,
      concurrency_key: 'report-k',
      concurrency_limit: 2,
      catch_up: 'all',
      max_catch_up: 7,
    });

    // --json: the schedule as one JSON object, with "created".
    const json = await schedules('set', 'new-year', '0 0 1 1 *', 'celebrate', '--json');
    expect(json).toMatchObject({ code: 0, stderr: '' });
    expect(json.stdout.trim().split('\n')).toHaveLength(1);
    const obj = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(obj).toMatchObject({ created: true, name: 'new-year', cron: '0 0 1 1 *', timezone: 'UTC', task: 'celebrate', payload: {}, paused: false });
    expect(new Date(obj.nextSlot as string).toISOString()).toMatch(/-01-01T00:00:00\.000Z$/);
    const again = JSON.parse((await schedules('set', 'new-year', '0 0 1 1 *', 'celebrate', '{"n": 1}', '--json')).stdout) as Record<string, unknown>;
    expect(again).toMatchObject({ created: false, name: 'new-year', payload: { n: 1 }, nextSlot: obj.nextSlot });

    // A new expression starts from its own first slot.
    const moved = await schedules('set', 'nightly', '30 4 * * *', 'report', '--timezone', 'Europe/Berlin');
    expect(moved).toMatchObject({ code: 0, stderr: '' });
    expect(moved.stdout).toMatch(/^schedule nightly updated /);
    expect(wallClock(nextSlotOf(moved.stdout), 'Europe/Berlin')).toBe('04:30');
    // Options left out are back at their defaults: set redefines the whole schedule.
    expect(await row('nightly')).toMatchObject({ cron: '30 4 * * *', payload: {}, queue: 'default', catch_up: 'latest', concurrency_key: null });
  });
});

describe('skiplock schedules list', () => {
  it('prints a table (also as plain `skiplock schedules`) and JSON', async () => {
    const every = await schedules('set', 'every-10s', '*/10 * * * * *', 'ping', '--catch-up', 'none', '--queue', 'pings');
    expect(every).toMatchObject({ code: 0, stderr: '' });

    const table = await schedules('list');
    expect(table).toMatchObject({ code: 0, stderr: '' });
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+CRON\s+ZONE\s+TASK\s+QUEUE\s+PAUSED\s+CATCH-UP\s+LAST SLOT\s+NEXT SLOT$/);
    expect(lines).toHaveLength(4); // header, every-10s, new-year, nightly (by name)
    expect(lines[1]).toMatch(/^every-10s\s+\*\/10 \* \* \* \* \*\s+UTC\s+ping\s+pings\s+no\s+none\s+-\s+\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    expect(lines[2]).toMatch(/^new-year\s+0 0 1 1 \*\s+UTC\s+celebrate\s+default\s+no\s+latest\s+-\s+\d{4}-01-01T00:00:00Z$/);
    expect(lines[3]).toMatch(/^nightly\s+30 4 \* \* \*\s+Europe\/Berlin\s+report\s+default\s+no\s+latest\s+-\s+\S+Z$/);
    // The columns line up: each header starts where its cells do.
    const at = lines[0]!.indexOf('NEXT SLOT');
    for (const line of lines.slice(1)) expect(line.slice(at)).toMatch(/^\d{4}-/);

    const bare = await runCli(['schedules', ...conn]);
    expect(bare).toMatchObject({ code: 0, stderr: '', stdout: table.stdout });

    const list = await listJson();
    expect(list.map((s) => s.name)).toEqual(['every-10s', 'new-year', 'nightly']);
    for (const s of list) {
      expect(Object.keys(s).sort()).toEqual([...SCHEDULE_FIELDS].sort());
      for (const field of ['nextSlot', 'createdAt', 'updatedAt']) {
        expect(typeof s[field], `${String(s.name)}.${field}`).toBe('string');
        expect(new Date(s[field] as string).toISOString()).toBe(s[field]);
      }
      expect(s.lastSlot).toBeNull();
      expect(Date.parse(s.nextSlot as string)).toBeGreaterThan(Date.parse(s.createdAt as string));
    }
    const newYear = list.find((s) => s.name === 'new-year')!;
    expect(Date.parse(newYear.nextSlot as string)).toBeGreaterThan(Date.now());
    const nightly = list.find((s) => s.name === 'nightly')!;
    expect(Date.parse(nightly.nextSlot as string)).toBeGreaterThan(Date.now() - 1000);
    expect(list.find((s) => s.name === 'every-10s')).toMatchObject({ queue: 'pings', catchUp: 'none', maxCatchUp: 100, paused: false, payload: {} });
  });
});

describe('skiplock schedules pause, resume, remove', () => {
  it('pauses, resumes and removes, one line each', async () => {
    const pause = await schedules('pause', 'nightly');
    expect(pause).toMatchObject({ code: 0, stderr: '', stdout: 'schedule nightly paused\n' });
    expect((await row('nightly'))!.paused).toBe(true);
    expect((await listJson()).find((s) => s.name === 'nightly')).toMatchObject({ paused: true });
    const table = await schedules('list');
    expect(table.stdout).toMatch(/^nightly\s+30 4 \* \* \*\s+Europe\/Berlin\s+report\s+default\s+yes\s+latest\s+-\s+-$/m);
    // Pausing a paused schedule is no error.
    expect(await schedules('pause', 'nightly')).toMatchObject({ code: 0, stdout: 'schedule nightly paused\n' });

    const resume = await schedules('resume', 'nightly');
    expect(resume).toMatchObject({ code: 0, stderr: '' });
    expect(resume.stdout).toMatch(/^schedule nightly resumed: next slot \S+\n$/);
    const next = nextSlotOf(resume.stdout);
    expect(next.getTime()).toBeGreaterThan(Date.now() - 1000);
    expect(wallClock(next, 'Europe/Berlin')).toBe('04:30');
    expect(await row('nightly')).toMatchObject({ paused: false, next_slot: next });

    const remove = await schedules('remove', 'every-10s');
    expect(remove).toMatchObject({ code: 0, stderr: '', stdout: 'schedule every-10s removed\n' });
    expect(await row('every-10s')).toBeUndefined();
    expect((await listJson()).map((s) => s.name)).toEqual(['new-year', 'nightly']);
  });
});

describe('skiplock schedules: bad input', () => {
  it('refuses bad expressions, zones, options, names, JSON and unknown schedules with exit 2 and one line, changing nothing', async () => {
    const beforeJson = await listJson();
    const beforeRows = await tableRows();
    expect(beforeRows.length).toBeGreaterThan(0);
    const set = (...rest: string[]): string[] => ['set', 'nightly', '0 3 * * *', 'report', ...rest];
    const cases: string[][] = [
      ['set', 'nightly', 'not a cron', 'report'],
      ['set', 'nightly', '61 * * * *', 'report'],
      ['set', 'nightly', '* * * * * * *', 'report'],
      ['set', 'nightly', '0 0 30 2 *', 'report'], // February 30th: no slot ever
      set('--timezone', 'Mars/Olympus_Mons'),
      set('--timezone', ''),
      set('--catch-up', 'some'),
      set('--max-catch-up', '5'),
      set('--catch-up', 'latest', '--max-catch-up', '5'),
      set('--catch-up', 'all', '--max-catch-up', '0'),
      set('--catch-up', 'all', '--max-catch-up', 'many'),
      set('--priority', 'high'),
      set('--priority', '1.5'),
      set('--priority', '99999999999'),
      set('--max-attempts', '0'),
      set('--concurrency-key', 'k', '--concurrency-limit', '-1'),
      set('--concurrency-limit', '2'),
      set('--timeout', 'soon'),
      set('--timeout', '0'),
      set('--queue', 'bad queue'),
      set('{not json'),
      set('{"nul": "\\u0000"}'),
      ['set', 'bad name', '0 3 * * *', 'report'],
      ['set', '.dot', '0 3 * * *', 'report'],
      ['set', 'nightly', '0 3 * * *', 'bad task!'],
      ['remove', 'no-such'],
      ['pause', 'no-such'],
      ['resume', 'no-such'],
      ['remove', 'bad name'],
      ['pause', 'bad name'],
      ['resume', ''],
    ];
    const results: Array<{ args: string[] } & CliResult> = [];
    // A few at a time: each is a node process of its own.
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      const done = await Promise.all(batch.map((args) => schedules(...args)));
      done.forEach((r, k) => results.push({ args: batch[k]!, ...r }));
    }
    for (const r of results) {
      const label = `skiplock schedules ${r.args.map((a) => JSON.stringify(a)).join(' ')}`;
      expect({ label, code: r.code }).toEqual({ label, code: 2 });
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      expect(lines, label).toHaveLength(1);
      expect(lines[0], label).toMatch(/^skiplock: \S/);
      expect(r.stdout, label).toBe('');
    }
    const stderrOf = (...args: string[]): string => results.find((r) => JSON.stringify(r.args) === JSON.stringify(args))!.stderr;
    expect(stderrOf('set', 'nightly', 'not a cron', 'report')).toMatch(/invalid cron expression "not a cron"/);
    expect(stderrOf(...set('--timezone', 'Mars/Olympus_Mons'))).toMatch(/unknown time zone "Mars\/Olympus_Mons"/);
    expect(stderrOf(...set('--catch-up', 'some'))).toMatch(/invalid catch-up policy "some": expected latest, none, all/);
    expect(stderrOf(...set('--max-catch-up', '5'))).toMatch(/--max-catch-up goes with --catch-up all/);
    expect(stderrOf(...set('--priority', 'high'))).toMatch(/invalid priority "high"/);
    expect(stderrOf(...set('{not json'))).toMatch(/invalid JSON payload/);
    expect(stderrOf('set', 'bad name', '0 3 * * *', 'report')).toMatch(/invalid schedule name "bad name"/);
    expect(stderrOf('set', 'nightly', '0 3 * * *', 'bad task!')).toMatch(/invalid task name/);
    for (const verb of ['remove', 'pause', 'resume']) expect(stderrOf(verb, 'no-such')).toMatch(/unknown schedule "no-such"/);

    expect(await listJson()).toEqual(beforeJson);
    expect(await tableRows()).toEqual(beforeRows);
    expect(await db.rows(`SELECT count(*)::int AS n FROM "${db.schema}".jobs`)).toEqual([{ n: 0 }]);
  });
});

describe('skiplock schedules set: two at once', () => {
  /**
   * Starts one `schedules set <name>` per payload while this test holds a SHARE lock on the
   * schedules table, waits until every one of them is blocked on it (their upserts wait for
   * the lock, after the checks and the clock read), then lets them go at the same moment.
   */
  async function race(name: string, payloads: unknown[]): Promise<CliResult[]> {
    const holder = await db.pool.connect();
    let procs: Array<ReturnType<typeof startCli>> = [];
    try {
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE "${db.schema}".schedules IN SHARE MODE`);
      procs = payloads.map((p) => startCli(['schedules', 'set', name, '*/5 * * * *', 'tick', JSON.stringify(p), ...conn]));
      await waitFor(
        async () => {
          const [blocked] = await db.rows<{ n: number }>(
            `SELECT count(*)::int AS n FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1`,
            [`%"${db.schema}".schedules%`],
          );
          return blocked!.n === payloads.length;
        },
        20_000,
        'both set commands to wait for the table lock',
        { abortIf: () => (procs.some((p) => p.exitCode !== null) ? `a set command exited early: ${JSON.stringify(procs.map((p) => p.output()))}` : undefined) },
      );
    } finally {
      await holder.query('COMMIT').catch(() => undefined);
      holder.release();
    }
    return Promise.all(procs.map((p) => p.done));
  }

  it('two `set` of one new name at once: both exit 0, one row with one of the two payloads', async () => {
    const payloads = [{ from: 'a' }, { from: 'b' }];
    const results = await race('racer', payloads);
    for (const r of results) expect(r).toMatchObject({ code: 0, stderr: '' });
    const verbs = results.map((r) => /^schedule racer (created|updated) /.exec(r.stdout)?.[1]);
    expect([...verbs].sort()).toEqual(['created', 'updated']); // one inserted, the other found its row
    const rows = await db.rows<{ payload: unknown }>(`SELECT payload FROM "${db.schema}".schedules WHERE name = 'racer'`);
    expect(rows).toHaveLength(1);
    expect(payloads).toContainEqual(rows[0]!.payload);
    // The update waited for the insert to commit, so its payload is the one that stays.
    expect(rows[0]!.payload).toEqual(payloads[verbs.indexOf('updated')]);

    // Again on the existing row: both update it, the last one wins.
    const second = [{ from: 'c' }, { from: 'd' }];
    const again = await race('racer', second);
    for (const r of again) {
      expect(r).toMatchObject({ code: 0, stderr: '' });
      expect(r.stdout).toMatch(/^schedule racer updated /);
    }
    const after = await db.rows<{ payload: unknown }>(`SELECT payload FROM "${db.schema}".schedules WHERE name = 'racer'`);
    expect(after).toHaveLength(1);
    expect(second).toContainEqual(after[0]!.payload);
    expect((await listJson()).filter((s) => s.name === 'racer')).toHaveLength(1);
  });
});
