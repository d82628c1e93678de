import { setTimeout as delay } from 'node:timers/promises';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer, Queues } from '../src/index.js';
import { runCli, startCli } from './helpers/cli.js';
import { type TestSchema, createTestSchema } from './helpers/db.js';
import { createLedger, startLedgerWorker } from './helpers/ledger.js';
import { maxOverlap } from './helpers/measure.js';
import { waitFor } from './helpers/wait.js';

/**
 * Per-queue limits (migration 0008, sql/functions/claim_jobs.sql) are race-free: racing
 * claims at the SQL level and worker daemons in OS processes of their own never run more
 * of a queue's jobs at once, nor start more of them per window, than its limits allow;
 * and the naive count-then-claim without the queue row's lock is shown to oversell, so
 * the races are real.
 *
 * Connections: the test pool holds at most 18; the worker processes use concurrency + 5
 * each plus one LISTEN (4 x 8 = 32 in the concurrency test, 3 x 10 = 30 in the rate test).
 */
let db: TestSchema;
let ledger: string;
let producer: Producer;
let queues: Queues;
const children: Array<ReturnType<typeof startCli>> = [];

beforeAll(async () => {
  db = await createTestSchema('limits', { max: 18 });
  ledger = await createLedger(db);
  producer = new Producer({ pool: db.pool, schema: db.schema });
  queues = new Queues({ pool: db.pool, schema: db.schema });
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.done));
  await db.drop();
});

async function count(sql: string, values: unknown[] = []): Promise<number> {
  const [row] = await db.rows<{ n: string }>(sql, values);
  return Number(row?.n ?? 0);
}

/** Runs `race(client)` on `n` connections of their own at the same time. */
async function raceOn(n: number, race: (client: pg.PoolClient) => Promise<unknown>): Promise<void> {
  const clients = await Promise.all(Array.from({ length: n }, () => db.pool.connect()));
  try {
    await Promise.all(clients.map((c) => race(c)));
  } finally {
    for (const c of clients) c.release();
  }
}

function startWorkerProcess(queue: string, extra: string[]): ReturnType<typeof startCli> {
  const child = startLedgerWorker(db, ledger, queue, ['--poll-interval', '200', ...extra]);
  children.push(child);
  return child;
}

/** Waits until `n` worker processes of this schema have their LISTEN connection up. */
async function listening(procs: ReadonlyArray<ReturnType<typeof startCli>>): Promise<void> {
  await waitFor(
    async () => {
      for (const p of procs) if (p.exitCode !== null) throw new Error(`a worker exited early (${p.exitCode}): ${p.output().stderr}`);
      const n = await count(
        `SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'skiplock listener %' AND query LIKE $1`,
        [`LISTEN ${db.schema}\\_%`],
      );
      return n >= procs.length || undefined;
    },
    30_000,
    `${procs.length} worker processes to listen`,
  );
}

async function stopAll(procs: ReadonlyArray<ReturnType<typeof startCli>>): Promise<void> {
  for (const p of procs) p.kill('SIGTERM');
  const results = await Promise.all(procs.map((p) => p.done));
  expect(results.map((r) => r.code)).toEqual(Array(procs.length).fill(0));
}

describe('limits at the SQL level: racing claims', () => {
  it('a concurrency limit of 5 holds against 16 racing claims; a naive count-then-claim without the row lock oversells', async () => {
    // The naive claim: reads the limit and counts running jobs without locking the queue's
    // row, pauses between count and claim, then takes one job with SKIP LOCKED.
    await db.pool.query(`
      CREATE FUNCTION "${db.schema}".naive_limited_claim(p_queue text) RETURNS bigint LANGUAGE plpgsql AS $$
      DECLARE v_limit int; v_running int; v_id bigint;
      BEGIN
        SELECT concurrency_limit INTO v_limit FROM "${db.schema}".queues WHERE name = p_queue;
        SELECT count(*) INTO v_running FROM "${db.schema}".jobs WHERE queue = p_queue AND status = 'running';
        PERFORM pg_sleep(0.02);
        IF v_running >= v_limit THEN RETURN NULL; END IF;
        UPDATE "${db.schema}".jobs SET status = 'running', attempts = attempts + 1, lease_token = gen_random_uuid(),
               lease_expires_at = now() + interval '1 minute', started_at = now(), locked_by = 'naive'
        WHERE id = (SELECT id FROM "${db.schema}".jobs WHERE status = 'queued' AND queue = p_queue
                    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id INTO v_id;
        RETURN v_id;
      END $$`);
    const race = async (queue: string, claim: (c: pg.PoolClient) => Promise<unknown>): Promise<number> => {
      await queues.setLimits(queue, { concurrencyLimit: 5 }, { create: true });
      await producer.enqueueMany(Array.from({ length: 20 }, (_, i) => ({ task: 'race', queue, payload: { i } })));
      await raceOn(16, claim);
      return count(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = $1 AND status = 'running'`, [queue]);
    };
    const naive = await race('c-naive', (c) => c.query(`SELECT "${db.schema}".naive_limited_claim('c-naive')`));
    const real = await race('c-real', (c) => c.query(`SELECT id FROM "${db.schema}".claim_jobs('{race}', '{c-real}', 1, 1, 60000, 'racer')`));
    console.info(`concurrency limit 5, 16 racing claims of one job each: claim_jobs left ${real} running, the naive claim ${naive}`);
    expect(naive).toBeGreaterThan(5); // the anomaly the row lock prevents
    // The first queue lock of a call waits its turn, so the race fills the limit exactly.
    expect(real).toBe(5);
    // And no further, one claim after another.
    for (let i = 0; i < 3; i++) await db.pool.query(`SELECT id FROM "${db.schema}".claim_jobs('{race}', '{c-real}', 1, 1, 60000, 'racer')`);
    expect(await count(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'c-real' AND status = 'running'`)).toBe(5);
  });

  it('a rate limit of 7 per 60 s holds against 16 connections racing two claims each; a naive sum-then-claim oversells', async () => {
    await db.pool.query(`
      CREATE FUNCTION "${db.schema}".naive_rate_claim(p_queue text) RETURNS bigint LANGUAGE plpgsql AS $$
      DECLARE v_limit int; v_window int; v_started bigint; v_id bigint;
      BEGIN
        SELECT rate_limit, rate_window_ms INTO v_limit, v_window FROM "${db.schema}".queues WHERE name = p_queue;
        SELECT coalesce(sum(n), 0) INTO v_started FROM "${db.schema}".queue_starts
        WHERE queue = p_queue AND claimed_at > now() - v_window * interval '1 millisecond';
        PERFORM pg_sleep(0.02);
        IF v_started >= v_limit THEN RETURN NULL; END IF;
        UPDATE "${db.schema}".jobs SET status = 'running', attempts = attempts + 1, lease_token = gen_random_uuid(),
               lease_expires_at = now() + interval '1 minute', started_at = now(), locked_by = 'naive'
        WHERE id = (SELECT id FROM "${db.schema}".jobs WHERE status = 'queued' AND queue = p_queue
                    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id INTO v_id;
        IF v_id IS NOT NULL THEN
          INSERT INTO "${db.schema}".queue_starts (queue, claimed_at, n) VALUES (p_queue, now(), 1);
        END IF;
        RETURN v_id;
      END $$`);
    const race = async (queue: string, claim: (c: pg.PoolClient) => Promise<unknown>): Promise<{ started: number; logged: number }> => {
      await queues.setLimits(queue, { rateLimit: { limit: 7, windowMs: 60_000 } }, { create: true });
      await producer.enqueueMany(Array.from({ length: 40 }, (_, i) => ({ task: 'race', queue, payload: { i } })));
      await raceOn(16, async (c) => {
        await claim(c);
        await claim(c);
      });
      return {
        started: await count(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = $1 AND started_at IS NOT NULL`, [queue]),
        logged: await count(`SELECT coalesce(sum(n), 0) AS n FROM "${db.schema}".queue_starts WHERE queue = $1`, [queue]),
      };
    };
    const naive = await race('r-naive', (c) => c.query(`SELECT "${db.schema}".naive_rate_claim('r-naive')`));
    const real = await race('r-real', (c) => c.query(`SELECT id FROM "${db.schema}".claim_jobs('{race}', '{r-real}', 1, 1, 60000, 'racer')`));
    console.info(`rate limit 7/60s, 16 connections x 2 racing claims: claim_jobs started ${real.started}, the naive claim ${naive.started}`);
    expect(naive.started).toBeGreaterThan(7);
    expect(real.started).toBe(7);
    expect(real.logged).toBe(7); // every start logged, once
    // The window is full: later claims get nothing.
    for (let i = 0; i < 3; i++) await db.pool.query(`SELECT id FROM "${db.schema}".claim_jobs('{race}', '{r-real}', 5, 5, 60000, 'racer')`);
    expect(await count(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'r-real' AND started_at IS NOT NULL`)).toBe(7);
  });

  it('a rate limit holds for a claim that waited for another queue\'s lock while a later claim pruned the window', async () => {
    // A claim's starts are logged at now(), its statement's start, but it counts (and a
    // claim prunes queue_starts) only once it holds the queue's row lock. A claim K that
    // began earlier may get the lock after a claim J that began later; the window K must
    // count reaches further back than J's, so J must not delete what K still needs.
    // Queue ra (a concurrency limit, so claims lock its row) comes first in K's claim order;
    // queue rx allows 2 starts per 1 s.
    await queues.setLimits('ra', { concurrencyLimit: 100 }, { create: true });
    await queues.setLimits('rx', { rateLimit: { limit: 2, windowMs: 1000 } }, { create: true });
    await producer.enqueue('race', {}, { queue: 'ra', runAt: new Date(Date.now() - 3_600_000) });
    await producer.enqueueMany(Array.from({ length: 6 }, () => ({ task: 'race', queue: 'rx' })));
    const [c, h, k] = await Promise.all([db.pool.connect(), db.pool.connect(), db.pool.connect()]);
    const claim = (client: pg.PoolClient, queueList: string, limit: number, free: number, who: string): Promise<number> =>
      client
        .query(`SELECT id FROM "${db.schema}".claim_jobs('{race}', $1, $2, $3, 60000, $4)`, [queueList, limit, free, who])
        .then((r) => r.rowCount ?? 0);
    try {
      expect(await claim(c, '{rx}', 1, 1, 'C0')).toBe(1); // t = 0
      await delay(300);
      expect(await claim(c, '{rx}', 1, 1, 'C1')).toBe(1); // t = 0.3: rx's window is full until t = 1
      await delay(300);
      // H holds ra's row (as any claim or settings change of ra does for a moment).
      await h.query('BEGIN');
      await h.query(`SELECT 1 FROM "${db.schema}".queues WHERE name = 'ra' FOR UPDATE`);
      // t = 0.6: K, one claim statement over ra and rx, waits for ra's row; its now() is 0.6,
      // so rx's starts at 0 and 0.3 are in its window: it must take nothing from rx.
      const kDone = claim(k, '{ra,rx}', 5, 5, 'K');
      await delay(600);
      // t = 1.2: J, a claim of rx from a worker with no idle slot: takes nothing, prunes the
      // starts older than its own window (C0's).
      expect(await claim(c, '{rx}', 1, 0, 'J')).toBe(0);
      await h.query('COMMIT');
      await kDone;
    } finally {
      await h.query('ROLLBACK').catch(() => undefined);
      for (const client of [c, h, k]) client.release();
    }
    const starts = await db.rows<{ locked_by: string; us: string }>(
      `SELECT locked_by, (extract(epoch FROM started_at) * 1000000)::bigint AS us FROM "${db.schema}".jobs
       WHERE queue = 'rx' AND started_at IS NOT NULL ORDER BY started_at`,
    );
    const us = starts.map((s) => Number(s.us));
    const inWindow = (i: number): string[] => starts.filter((_, j) => us[j]! >= us[i]! && us[j]! < us[i]! + 1_000_000).map((s) => s.locked_by);
    const windows = us.map((_, i) => inWindow(i));
    const worst = windows.reduce((a, b) => (b.length > a.length ? b : a), [] as string[]);
    console.info(`rate limit 2/1s, a claim that waited for another queue's lock: starts of rx ${starts.map((s) => s.locked_by).join(', ')}; most in one window: ${worst.join(', ')}`);
    expect(worst.length).toBeLessThanOrEqual(2);
  });
});

describe('limits at the SQL level: settings that change under a claim', () => {
  it('a limit set while a claim waits for another queue\'s lock holds for that claim', async () => {
    // K reads the settings (lq has no limit), then waits for the row of queue la, held by H.
    // Meanwhile lq gets a concurrency limit of 1 (set returns at once: K holds nothing of lq
    // yet). When K goes on to lq, it must not claim it as a queue without limits.
    await queues.setLimits('la', { concurrencyLimit: 100 }, { create: true });
    await producer.enqueue('race', {}, { queue: 'la', priority: 0 });
    await producer.enqueueMany(Array.from({ length: 5 }, () => ({ task: 'race', queue: 'lq', priority: 1 })));
    const [h, k] = await Promise.all([db.pool.connect(), db.pool.connect()]);
    try {
      await h.query('BEGIN');
      await h.query(`SELECT 1 FROM "${db.schema}".queues WHERE name = 'la' FOR UPDATE`);
      const kDone = k.query(`SELECT id FROM "${db.schema}".claim_jobs('{race}', '{la,lq}', 10, 10, 60000, 'K')`);
      await delay(300);
      await queues.setLimits('lq', { concurrencyLimit: 1 }, { create: true });
      await h.query('COMMIT');
      await kDone;
    } finally {
      await h.query('ROLLBACK').catch(() => undefined);
      h.release();
      k.release();
    }
    const [row] = await db.rows<{ n: number }>(`SELECT count(*)::int AS n FROM "${db.schema}".jobs WHERE queue = 'lq' AND status = 'running'`);
    expect(row?.n).toBeLessThanOrEqual(1);
    // The next claim goes by the limit: one job of lq, no more.
    await db.pool.query(`SELECT id FROM "${db.schema}".claim_jobs('{race}', '{lq}', 10, 10, 60000, 'next')`);
    const [after] = await db.rows<{ n: number }>(`SELECT count(*)::int AS n FROM "${db.schema}".jobs WHERE queue = 'lq' AND status = 'running'`);
    expect(after?.n).toBe(1);
  });
});

describe('limits across worker processes', () => {
  it('4 worker processes, concurrency limit 3: never more than 3 running, the limit used, every job once', async () => {
    const total = 120;
    await queues.setLimits('lim', { concurrencyLimit: 3 }, { create: true });
    // Two slots each: no process can fill the limit alone, so 3 running means processes
    // share it, and 8 slots race for 3 places. (With --concurrency 3 or more, the worker
    // that claims first usually keeps the whole limit: it claims again within ms of writing
    // a result, while the others only try at their 200 ms polls; one run in five had all
    // 120 jobs on one process.)
    const procs = Array.from({ length: 4 }, () => startWorkerProcess('lim', ['--concurrency', '2']));
    await listening(procs);

    // A sampler on a connection of its own: running jobs of the queue every ~5 ms.
    const sampler = await db.pool.connect();
    const samples: number[] = [];
    let sampling = true;
    const sampled = (async () => {
      try {
        while (sampling) {
          const { rows } = await sampler.query<{ n: string }>(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'lim' AND status = 'running'`);
          samples.push(Number(rows[0]?.n));
          await delay(5);
        }
      } finally {
        sampler.release();
      }
    })();

    const started = Date.now();
    const { ids } = await producer.enqueueMany(
      Array.from({ length: total }, (_, i) => ({ task: 'ledger', queue: 'lim', payload: { ms: 20 + ((i * 7) % 21) } })),
    );
    try {
      await waitFor(
        async () => (await count(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'lim' AND status = 'succeeded'`)) === total || undefined,
        40_000,
        'the limited jobs to succeed',
        { abortIf: () => (procs.some((p) => p.exitCode !== null) ? 'a worker process exited' : undefined) },
      );
    } finally {
      sampling = false;
      await sampled;
    }
    const seconds = (Date.now() - started) / 1000;
    await stopAll(procs);

    const maxSampled = Math.max(...samples);
    const attempts = await db.rows<{ attempts: number; n: string }>(
      `SELECT attempts, count(*) AS n FROM "${db.schema}".jobs WHERE id = ANY($1) GROUP BY attempts`,
      [ids],
    );
    const runs = await db.rows<{ pid: number; start: number; end: number }>(
      `SELECT l.pid, extract(epoch FROM l.started_at)::float8 * 1000 AS start, extract(epoch FROM j.finished_at)::float8 * 1000 AS end
       FROM ${ledger} AS l JOIN "${db.schema}".jobs AS j ON j.id = l.job_id WHERE j.id = ANY($1)`,
      [ids],
    );
    const overlap = maxOverlap(runs.map((r) => ({ key: 'lim', start: r.start, end: r.end }))).get('lim') ?? 0;
    const byPid = new Map<number, number>();
    for (const r of runs) byPid.set(r.pid, (byPid.get(r.pid) ?? 0) + 1);
    console.info(
      `concurrency limit 3, 4 processes x 2: ${total} jobs in ${seconds.toFixed(1)} s; ${samples.length} samples, max running ${maxSampled}; ` +
        `max overlap of executions ${overlap}; jobs per process ${[...byPid.values()].join('/')}`,
    );

    expect(maxSampled).toBeLessThanOrEqual(3);
    expect(maxSampled).toBe(3); // the limit is used, not serialised to 1
    expect(attempts).toEqual([{ attempts: 1, n: String(total) }]);
    expect(runs).toHaveLength(total); // each job ran once
    expect(new Set(runs.map((r) => r.pid)).size).toBeGreaterThanOrEqual(2); // the limit held across processes
    expect(overlap).toBeLessThanOrEqual(3);
  });

  it('3 worker processes, rate limit 20/1s set through the CLI: at most 20 starts in any 1 s window, drained on time', async () => {
    const total = 80;
    const set = await runCli(['queues', 'set', 'rate', '--rate-limit', '20/1s', '--create', '--database-url', db.connectionString, '--schema', db.schema]);
    expect(set.code).toBe(0);
    expect(set.stdout).toContain('rate limit 20/1s');
    expect(await db.rows(`SELECT rate_limit, rate_window_ms, concurrency_limit FROM "${db.schema}".queues WHERE name = 'rate'`)).toEqual([
      { rate_limit: 20, rate_window_ms: 1000, concurrency_limit: null },
    ]);
    const procs = Array.from({ length: 3 }, () => startWorkerProcess('rate', ['--concurrency', '4']));
    await listening(procs);

    const started = Date.now();
    const { ids } = await producer.enqueueMany(Array.from({ length: total }, (_, i) => ({ task: 'ledger', queue: 'rate', payload: { i } })));
    await waitFor(
      async () => (await count(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'rate' AND status = 'succeeded'`)) === total || undefined,
      30_000,
      'the rate-limited jobs to succeed',
      { abortIf: () => (procs.some((p) => p.exitCode !== null) ? 'a worker process exited' : undefined) },
    );
    const drainMs = Date.now() - started;
    await stopAll(procs);

    const rows = await db.rows<{ us: string; attempts: number }>(
      `SELECT (extract(epoch FROM started_at) * 1000000)::bigint AS us, attempts FROM "${db.schema}".jobs WHERE id = ANY($1) ORDER BY started_at`,
      [ids],
    );
    expect(rows).toHaveLength(total);
    expect(rows.every((r) => r.attempts === 1)).toBe(true);
    const starts = rows.map((r) => Number(r.us));
    // The most starts in any window [t_i, t_i + 1 s) opening at a start.
    let maxPerWindow = 0;
    for (let i = 0; i < starts.length; i++) {
      let n = 0;
      for (let j = i; j < starts.length && starts[j]! < starts[i]! + 1_000_000; j++) n++;
      maxPerWindow = Math.max(maxPerWindow, n);
    }
    const spreadMs = (starts[starts.length - 1]! - starts[0]!) / 1000;
    const pids = await count(`SELECT count(DISTINCT pid) AS n FROM ${ledger} WHERE job_id = ANY($1)`, [ids]);
    console.info(
      `rate limit 20/1s, 3 processes x 4: ${total} jobs drained in ${drainMs} ms (first to last start ${spreadMs.toFixed(0)} ms); ` +
        `max starts in any 1 s window ${maxPerWindow}; ${pids} processes did work`,
    );
    expect(maxPerWindow).toBeLessThanOrEqual(20);
    expect(maxPerWindow).toBe(20); // the limit is used
    // 80 starts, at most 20 per window: the first and last start lie at least 3 windows apart.
    expect(spreadMs).toBeGreaterThanOrEqual(3000);
    expect(drainMs).toBeGreaterThanOrEqual(2900);
    expect(drainMs).toBeLessThan(15_000); // the rate wake timers work (not one poll per window)
  });
});

describe('skiplock queues: bad input', () => {
  it('refuses malformed limits, unknown queues and bad names with exit 2 and one line, changing nothing', async () => {
    await queues.setLimits('q', { concurrencyLimit: 4, rateLimit: { limit: 9, windowMs: 2000 } }, { create: true });
    const snapshot = (): Promise<unknown[]> => db.rows(`SELECT * FROM "${db.schema}".queues ORDER BY name`);
    const before = await snapshot();
    const cases: string[][] = [
      ['set', 'q', '--rate-limit', '10'],
      ['set', 'q', '--rate-limit', 'abc/1s'],
      ['set', 'q', '--rate-limit', '0/1s'],
      ['set', 'q', '--rate-limit', '5/0s'],
      ['set', 'q', '--concurrency-limit', '0'],
      ['set', 'q', '--concurrency-limit', '-3'],
      ['set', 'q', '--concurrency-limit', '2.5'],
      ['set', 'unknownq', '--concurrency-limit', '3'],
      ['pause', 'unknownq'],
      ['set', 'q'],
      ['pause', 'bad name'],
    ];
    const results: Array<{ args: string[]; code: number | null; stderr: string; stdout: string }> = [];
    // A few at a time: each is a node process of its own.
    for (let i = 0; i < cases.length; i += 4) {
      const batch = cases.slice(i, i + 4);
      const done = await Promise.all(
        batch.map((args) => runCli(['queues', ...args, '--database-url', db.connectionString, '--schema', db.schema])),
      );
      done.forEach((r, k) => results.push({ args: batch[k]!, code: r.code, stderr: r.stderr, stdout: r.stdout }));
    }
    for (const r of results) {
      const label = `skiplock queues ${r.args.join(' ')}`;
      expect({ label, code: r.code }).toEqual({ label, code: 2 });
      const lines = r.stderr.split('\n').filter((l) => l !== '');
      expect(lines, label).toHaveLength(1);
      expect(lines[0], label).toMatch(/^skiplock: /);
      expect(r.stdout, label).toBe('');
    }
    expect(results.find((r) => r.args[1] === 'unknownq' && r.args[0] === 'set')?.stderr).toMatch(/unknown queue "unknownq"/);
    expect(results.find((r) => r.args[1] === 'unknownq' && r.args[0] === 'pause')?.stderr).toMatch(/unknown queue "unknownq"/);
    expect(await snapshot()).toEqual(before);
    expect(await count(`SELECT count(*) AS n FROM "${db.schema}".queues WHERE name IN ('unknownq', 'bad name')`)).toBe(0);
  });
});

describe('skiplock queues: the listing and the changes', () => {
  it('lists queues as a table and as JSON; pause, resume and set print the settings', async () => {
    const g = ['--database-url', db.connectionString, '--schema', db.schema];
    await producer.enqueueMany([
      { task: 'show', queue: 'cli-q' },
      { task: 'show', queue: 'cli-q' },
      { task: 'show', queue: 'cli-q', delay: '1h' },
    ]);
    const pause = await runCli(['queues', 'pause', 'cli-q', ...g]);
    expect(pause).toMatchObject({ code: 0, stdout: 'queue cli-q: paused, no concurrency limit, no rate limit\n', stderr: '' });
    const set = await runCli(['queues', 'set', 'cli-q', '--concurrency-limit', '5', '--rate-limit', '6000/1m', ...g]);
    expect(set).toMatchObject({ code: 0, stdout: 'queue cli-q: paused, concurrency limit 5, rate limit 6000/1m\n' });
    const created = await runCli(['queues', 'pause', 'cli-new', '--create', ...g]);
    expect(created.code).toBe(0);

    const table = await runCli(['queues', ...g]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^QUEUE\s+STATE\s+QUEUED\s+RUNNING\s+SCHEDULED\s+FAILED\s+OLDEST WAIT\s+CONCURRENCY LIMIT\s+RATE LIMIT$/);
    const row = lines.find((l) => l.startsWith('cli-q '))?.split(/\s{2,}/);
    expect(row?.slice(0, 6)).toEqual(['cli-q', 'paused', '2', '0', '1', '0']);
    expect(row?.slice(-2)).toEqual(['5', '6000/1m']);
    expect(lines.find((l) => l.startsWith('cli-new '))?.split(/\s{2,}/)).toEqual(['cli-new', 'paused', '0', '0', '0', '0', '-', '-', '-']);

    const json = await runCli(['queues', 'list', '--json', ...g]);
    const listed = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    expect(listed.find((q) => q.name === 'cli-q')).toMatchObject({
      paused: true,
      concurrencyLimit: 5,
      rateLimit: { limit: 6000, windowMs: 60_000 },
      queued: 2,
      scheduled: 1,
      running: 0,
    });
    const resume = await runCli(['queues', 'resume', 'cli-q', ...g]);
    expect(resume).toMatchObject({ code: 0, stdout: 'queue cli-q: active, concurrency limit 5, rate limit 6000/1m\n' });
    const cleared = await runCli(['queues', 'set', 'cli-q', '--rate-limit', 'none', '--concurrency-limit', 'none', ...g]);
    expect(cleared).toMatchObject({ code: 0, stdout: 'queue cli-q: active, no concurrency limit, no rate limit\n' });
  });
});
