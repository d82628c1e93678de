import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { Queues, type QueueInfo, SkiplockError, UnknownQueueError, type Worker } from '../src/index.js';
import { maxOverlap } from './helpers/measure.js';
import { failure } from './helpers/failure.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

// Small pools: the file stays within ~25 connections (workers below use concurrency + 5 or less).
const { db, producer, workers } = useTestSchema('queues', { max: 6 });
const queues = new Queues({ pool: db.pool, schema: db.schema });
const S = `"${db.schema}"`;

interface JobRow {
  id: string;
  queue: string;
  status: string;
  attempts: number;
  locked_by: string | null;
}

async function jobRows(ids: readonly string[]): Promise<JobRow[]> {
  return db.rows<JobRow>(`SELECT id, queue, status, attempts, locked_by FROM ${S}.jobs WHERE id = ANY($1) ORDER BY id`, [ids]);
}

async function byStatus(queue: string): Promise<Record<string, number>> {
  const rows = await db.rows<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM ${S}.jobs WHERE queue = $1 GROUP BY status`, [queue]);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

function waitStatus(ids: readonly string[], status: string, timeoutMs = 15_000): Promise<true> {
  return waitFor(
    async () => (await jobRows(ids)).filter((r) => r.status === status).length === ids.length || undefined,
    timeoutMs,
    `${ids.length} job(s) to be ${status}`,
  );
}

/** A promise the test opens by hand: a handler that awaits it runs until the test says so. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

async function queuesTable(): Promise<unknown[]> {
  return db.rows(`SELECT name, paused, concurrency_limit, rate_limit, rate_window_ms, updated_at FROM ${S}.queues ORDER BY name`);
}

async function handoffs(worker: Worker): Promise<number> {
  return (await worker.metrics.handoffs.get()).values.reduce((sum, v) => sum + v.value, 0);
}

/** Waits until the worker offers hand-off slots. */
function offered(worker: Worker): Promise<string> {
  return waitFor(
    async () => (await db.rows<{ channel: string }>(`SELECT channel FROM ${S}.waiters WHERE worker = $1 AND slots > 0`, [worker.id]))[0]?.channel,
    10_000,
    `worker ${worker.id} to offer hand-off slots`,
  );
}

interface Start {
  id: string;
  queue: string;
  t: number;
}

describe('Queues admin API', () => {
  it('list(): jobs by status per queue, oldestWaitMs, and queues that only have settings', async () => {
    const hold = gate();
    const worker = await workers.start(
      {
        'l-ok': () => undefined,
        'l-fail': () => {
          throw new Error('boom');
        },
        'l-hold': () => hold.promise,
      },
      { queues: ['lst'], concurrency: 3 },
    );
    const runAtPast = new Date(Date.now() - 60_000);
    // Nobody runs l-none: these stay queued (3 due, one of them due for a minute) or scheduled (2).
    await producer.enqueueMany([
      { task: 'l-none', queue: 'lst' },
      { task: 'l-none', queue: 'lst', runAt: runAtPast },
      { task: 'l-none', queue: 'lst' },
      { task: 'l-none', queue: 'lst', delay: '1h' },
      { task: 'l-none', queue: 'lst', runAt: new Date(Date.now() + 3_600_000) },
    ]);
    const { id: cancelled } = await producer.enqueue('l-none', {}, { queue: 'lst' });
    expect((await producer.cancel(cancelled)).changed).toBe(true);
    const { ids: okIds } = await producer.enqueueMany([
      { task: 'l-ok', queue: 'lst' },
      { task: 'l-ok', queue: 'lst' },
    ]);
    const { id: failId } = await producer.enqueue('l-fail', {}, { queue: 'lst', maxAttempts: 1 });
    const { id: holdId } = await producer.enqueue('l-hold', {}, { queue: 'lst' });
    await waitStatus(okIds, 'succeeded');
    await waitStatus([failId], 'failed');
    await waitStatus([holdId], 'running');
    // A queue with nothing due (one scheduled job), and one with settings only.
    await producer.enqueue('l-none', {}, { queue: 'lst-sched', delay: '1h' });
    await queues.pause('lst-row', { create: true });

    const before = Date.now();
    const list = await queues.list();
    const after = Date.now();
    const byName = new Map(list.map((q) => [q.name, q]));
    const lst = byName.get('lst');
    expect(lst).toMatchObject({
      name: 'lst',
      paused: false,
      concurrencyLimit: null,
      rateLimit: null,
      queued: 3,
      scheduled: 2,
      running: 1,
      succeeded: 2,
      failed: 1,
      cancelled: 1,
    } satisfies Partial<QueueInfo>);
    // The oldest due job has waited since runAtPast (a minute), not since its enqueue.
    expect(lst!.oldestWaitMs).not.toBeNull();
    expect(lst!.oldestWaitMs!).toBeGreaterThanOrEqual(before - runAtPast.getTime() - 5);
    expect(lst!.oldestWaitMs!).toBeLessThanOrEqual(after - runAtPast.getTime() + 5);
    expect(byName.get('lst-sched')).toEqual({
      name: 'lst-sched',
      paused: false,
      concurrencyLimit: null,
      rateLimit: null,
      queued: 0,
      scheduled: 1,
      running: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      oldestWaitMs: null,
    });
    expect(byName.get('lst-row')).toEqual({
      name: 'lst-row',
      paused: true,
      concurrencyLimit: null,
      rateLimit: null,
      queued: 0,
      scheduled: 0,
      running: 0,
      succeeded: 0,
      failed: 0,
      cancelled: 0,
      oldestWaitMs: null,
    });
    // Sorted by name.
    expect(list.map((q) => q.name)).toEqual([...list.map((q) => q.name)].sort());

    hold.open();
    await waitStatus([holdId], 'succeeded');
    const again = (await queues.list()).find((q) => q.name === 'lst');
    expect(again).toMatchObject({ queued: 3, scheduled: 2, running: 0, succeeded: 3, failed: 1, cancelled: 1 });
    await worker.stop();
  });

  it('pause/resume/setLimits return the settings; unknown queues and bad limits are refused and change nothing', async () => {
    const listener = new pg.Client({ connectionString: db.connectionString });
    await listener.connect();
    const notes: string[] = [];
    listener.on('notification', (n) => notes.push(n.payload ?? ''));
    await listener.query(`LISTEN "${db.schema}_queues"`);
    try {
      await producer.enqueue('adm-task', {}, { queue: 'adm-jobs' }); // known by its job, no row
      const initial = await queuesTable();

      // Unknown: refused, nothing written, no NOTIFY.
      const unknownCalls: Array<() => Promise<unknown>> = [
        () => queues.pause('adm-nope'),
        () => queues.resume('adm-nope'),
        () => queues.setLimits('adm-nope', { concurrencyLimit: 2 }),
        () => queues.setLimits('adm-nope', { rateLimit: null }),
      ];
      for (const call of unknownCalls) {
        const err = await failure(call);
        expect(err).toBeInstanceOf(UnknownQueueError);
        expect(err).toBeInstanceOf(SkiplockError);
        expect((err as UnknownQueueError).queue).toBe('adm-nope');
      }
      expect(await queuesTable()).toEqual(initial);
      expect((await queues.list()).some((q) => q.name === 'adm-nope')).toBe(false);

      // create: true makes the row.
      expect(await queues.pause('adm', { create: true })).toEqual({ name: 'adm', paused: true, concurrencyLimit: null, rateLimit: null });
      // A queue with jobs needs no create.
      expect(await queues.pause('adm-jobs')).toEqual({ name: 'adm-jobs', paused: true, concurrencyLimit: null, rateLimit: null });
      expect(await queues.resume('adm')).toEqual({ name: 'adm', paused: false, concurrencyLimit: null, rateLimit: null });
      expect(await queues.resume('adm-jobs')).toEqual({ name: 'adm-jobs', paused: false, concurrencyLimit: null, rateLimit: null });
      // A field left out keeps its value.
      expect(await queues.setLimits('adm', { concurrencyLimit: 5 })).toEqual({ name: 'adm', paused: false, concurrencyLimit: 5, rateLimit: null });
      expect(await queues.setLimits('adm', { rateLimit: { limit: 100, windowMs: 1000 } })).toEqual({
        name: 'adm',
        paused: false,
        concurrencyLimit: 5,
        rateLimit: { limit: 100, windowMs: 1000 },
      });
      // pause keeps the limits, setLimits keeps the pause.
      expect(await queues.pause('adm')).toEqual({ name: 'adm', paused: true, concurrencyLimit: 5, rateLimit: { limit: 100, windowMs: 1000 } });
      expect(await queues.setLimits('adm', { concurrencyLimit: 7 })).toEqual({
        name: 'adm',
        paused: true,
        concurrencyLimit: 7,
        rateLimit: { limit: 100, windowMs: 1000 },
      });
      // Each change's NOTIFY payload: "<state after it>:<queue>".
      const changes = ['paused:adm', 'paused:adm-jobs', 'active:adm', 'active:adm-jobs', 'active:adm', 'active:adm', 'paused:adm', 'paused:adm'];

      // Bad values: SkiplockError, nothing written (not even with create on a new name).
      const settled = await queuesTable();
      const bad: Array<Parameters<Queues['setLimits']>[1]> = [
        { concurrencyLimit: 0 },
        { concurrencyLimit: -1 },
        { concurrencyLimit: 1.5 },
        { concurrencyLimit: Number.NaN },
        { rateLimit: { limit: 0, windowMs: 1000 } },
        { rateLimit: { limit: -1, windowMs: 1000 } },
        { rateLimit: { limit: 1.5, windowMs: 1000 } },
        { rateLimit: { limit: 10, windowMs: 0 } },
        { rateLimit: { limit: 10, windowMs: -1 } },
        { rateLimit: { limit: 10, windowMs: 2.5 } },
        { concurrencyLimit: 3, rateLimit: { limit: 0, windowMs: 1000 } }, // one bad field spoils the call
        {},
      ];
      for (const limits of bad) {
        for (const name of ['adm', 'adm-bad']) {
          const err = await failure(() => queues.setLimits(name, limits, { create: true }));
          expect(err, JSON.stringify(limits)).toBeInstanceOf(SkiplockError);
          expect(err, JSON.stringify(limits)).not.toBeInstanceOf(UnknownQueueError);
        }
      }
      expect(await failure(() => queues.pause('bad name!', { create: true }))).toBeInstanceOf(SkiplockError);
      expect(await queuesTable()).toEqual(settled);

      // null clears one limit, the other stays.
      expect(await queues.setLimits('adm', { concurrencyLimit: null })).toEqual({
        name: 'adm',
        paused: true,
        concurrencyLimit: null,
        rateLimit: { limit: 100, windowMs: 1000 },
      });
      expect(await queues.setLimits('adm', { rateLimit: null, concurrencyLimit: 2 })).toEqual({ name: 'adm', paused: true, concurrencyLimit: 2, rateLimit: null });
      expect(await queues.setLimits('adm-new', { rateLimit: { limit: 3, windowMs: 250 } }, { create: true })).toEqual({
        name: 'adm-new',
        paused: false,
        concurrencyLimit: null,
        rateLimit: { limit: 3, windowMs: 250 },
      });
      changes.push('paused:adm', 'paused:adm', 'active:adm-new');

      expect((await queues.settings()).filter((s) => s.name.startsWith('adm'))).toEqual([
        { name: 'adm', paused: true, concurrencyLimit: 2, rateLimit: null },
        { name: 'adm-jobs', paused: false, concurrencyLimit: null, rateLimit: null },
        { name: 'adm-new', paused: false, concurrencyLimit: null, rateLimit: { limit: 3, windowMs: 250 } },
      ]);
      expect(await db.rows(`SELECT paused, concurrency_limit, rate_limit, rate_window_ms FROM ${S}.queues WHERE name = 'adm'`)).toEqual([
        { paused: true, concurrency_limit: 2, rate_limit: null, rate_window_ms: null },
      ]);
      // One NOTIFY per change made, none for a refused one.
      await waitFor(async () => notes.length >= changes.length || undefined, 5000, 'the notifications');
      await delay(100);
      expect(notes).toEqual(changes);
    } finally {
      await listener.end();
    }
  });
});

describe('pause against claims in progress', () => {
  it('a pause waits for a claim that found the queue active to commit; a claim after it takes nothing', async () => {
    await producer.enqueueMany(Array.from({ length: 6 }, () => ({ task: 'sq', queue: 'race-p' })));
    const claimer = await db.pool.connect();
    try {
      // A claim in an open transaction: it found the queue active and holds its pause lock.
      await claimer.query('BEGIN');
      const first = await claimer.query(`SELECT id FROM ${S}.claim_jobs('{sq}', '{race-p}', 2, 2, 60000, 'racer')`);
      expect(first.rows).toHaveLength(2);
      let settled = false;
      const pausing = queues.pause('race-p').then((r) => {
        settled = true;
        return r;
      });
      await delay(300);
      expect(settled).toBe(false); // still waiting for the claim
      await claimer.query('COMMIT');
      expect((await pausing).paused).toBe(true);
      // Every claim that comes after the pause returned takes nothing of the queue.
      const after = await db.pool.query(`SELECT id FROM ${S}.claim_jobs('{sq}', '{race-p}', 10, 10, 60000, 'racer')`);
      expect(after.rows).toHaveLength(0);
      expect(await byStatus('race-p')).toEqual({ running: 2, queued: 4 });
    } finally {
      claimer.release();
    }
  });

  it('a claim that comes while a pause waits for its lock sees the queue paused', async () => {
    await producer.enqueueMany(Array.from({ length: 4 }, () => ({ task: 'sq', queue: 'race-q' })));
    const holder = await db.pool.connect();
    const late = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query(`SELECT id FROM ${S}.claim_jobs('{sq}', '{race-q}', 1, 1, 60000, 'holder')`);
      const pausing = queues.pause('race-q');
      await delay(200); // the pause now waits for the holder's claim
      const lateClaim = late.query(`SELECT id FROM ${S}.claim_jobs('{sq}', '{race-q}', 10, 10, 60000, 'late')`);
      await delay(200);
      await holder.query('COMMIT');
      await pausing;
      expect((await lateClaim).rows).toHaveLength(0); // queued behind the pause, then saw it
      expect(await byStatus('race-q')).toEqual({ running: 1, queued: 3 });
    } finally {
      holder.release();
      late.release();
    }
  });
});

describe('workers and paused queues', () => {
  it('a pause stops new starts of the queue at once (NOTIFY); other queues go on; running jobs finish; resume drains', async () => {
    const P = 'pz-p';
    const Q = 'pz-q';
    const starts: Start[] = [];
    const hold = gate();
    const worker = await workers.start(
      {
        pz: async (payload: { ms?: number; hold?: boolean }, ctx) => {
          starts.push({ id: ctx.job.id, queue: ctx.job.queue, t: performance.now() });
          if (payload.hold) await hold.promise;
          else await delay(payload.ms ?? 0);
        },
      },
      // The 60 s poll leaves the NOTIFY as the only way the worker hears of the pause/resume.
      { queues: [P, Q], concurrency: 2, pollIntervalMs: 60_000 },
    );
    // A job of P that is running when the pause lands.
    const { id: holdId } = await producer.enqueue('pz', { hold: true }, { queue: P });
    await waitFor(async () => starts.some((s) => s.id === holdId) || undefined, 10_000, 'the long job of P to start');
    const batch = Array.from({ length: 24 }, (_, i) => ({ task: 'pz', queue: i % 2 === 0 ? P : Q, payload: { ms: 80 } }));
    const { ids } = await producer.enqueueMany(batch);
    const pIds = ids.filter((_, i) => i % 2 === 0);
    const qIds = ids.filter((_, i) => i % 2 === 1);
    await waitFor(async () => starts.filter((s) => s.queue === P && s.id !== holdId).length >= 2 || undefined, 10_000, 'two short jobs of P to start');

    expect((await queues.pause(P)).paused).toBe(true);
    const pausedAt = performance.now();
    // Enqueues still succeed.
    const late = await producer.enqueue('pz', { ms: 1 }, { queue: P });
    expect(late.created).toBe(true);
    await delay(300); // the NOTIFY's way to the worker
    const cutoff = performance.now();
    await delay(1000);

    const pStartsAfter = starts.filter((s) => s.queue === P && s.t > cutoff);
    expect(pStartsAfter).toEqual([]);
    expect(starts.filter((s) => s.queue === P && s.t > pausedAt + 300)).toEqual([]);
    // Q's jobs kept starting after the pause.
    expect(starts.filter((s) => s.queue === Q && s.t > cutoff).length).toBeGreaterThan(0);
    // P's jobs that have not started are queued (handed back ones with their attempt given back); only the long one runs.
    const startedP = new Set(starts.filter((s) => s.queue === P).map((s) => s.id));
    const pRows = await jobRows([...pIds, late.id, holdId]);
    for (const row of pRows) {
      if (row.id === holdId) expect(row).toMatchObject({ status: 'running', attempts: 1 });
      else if (startedP.has(row.id)) expect(row.status).toBe('succeeded');
      else expect(row, `job ${row.id} of the paused queue`).toMatchObject({ status: 'queued', attempts: 0 });
    }
    expect(pRows.filter((r) => r.status === 'queued').length).toBeGreaterThan(0);

    // The job running when the pause landed finishes.
    hold.open();
    await waitStatus([holdId], 'succeeded');
    await waitStatus(qIds, 'succeeded');
    await delay(200);
    expect(starts.filter((s) => s.queue === P && s.t > cutoff)).toEqual([]);
    expect(await byStatus(P)).toMatchObject({ queued: pRows.filter((r) => r.status === 'queued').length });

    // Resume: P drains (NOTIFY again, the poll is a minute away), each job once.
    expect((await queues.resume(P)).paused).toBe(false);
    await waitStatus([...pIds, late.id], 'succeeded', 10_000);
    const pStarts = starts.filter((s) => s.queue === P).map((s) => s.id);
    expect(new Set(pStarts).size).toBe(pStarts.length);
    expect(pStarts.length).toBe(pIds.length + 2);
    await worker.stop();
  });

  it('a pause hands the buffered jobs of the queue back: queued, attempt given back, never started', async () => {
    const B = 'buf';
    const starts: Start[] = [];
    const hold = gate();
    const worker = await workers.start(
      {
        'buf-job': async (payload: { hold?: boolean }, ctx) => {
          starts.push({ id: ctx.job.id, queue: ctx.job.queue, t: performance.now() });
          if (payload.hold) await hold.promise;
        },
      },
      { queues: [B], concurrency: 1, pollIntervalMs: 60_000 },
    );
    // Warm the buffer up: it stays cold (claims for free slots only) until a handler returns.
    const { ids: warm } = await producer.enqueueMany(Array.from({ length: 5 }, () => ({ task: 'buf-job', queue: B })));
    await waitStatus(warm, 'succeeded');
    // One long job at the head, ten behind it: claimed together, the ten sit in the buffer.
    const { ids } = await producer.enqueueMany([
      { task: 'buf-job', queue: B, payload: { hold: true }, priority: -1 },
      ...Array.from({ length: 10 }, () => ({ task: 'buf-job', queue: B })),
    ]);
    const [holdId, ...buffered] = ids as [string, ...string[]];
    await waitFor(async () => starts.some((s) => s.id === holdId) || undefined, 10_000, 'the long job to start');
    await waitFor(async () => worker.health().buffered === 10 || undefined, 5000, 'ten jobs in the buffer');
    for (const row of await jobRows(buffered)) expect(row).toMatchObject({ status: 'running', attempts: 1, locked_by: worker.id });

    await queues.pause(B);
    await waitFor(
      async () => (await jobRows(buffered)).every((r) => r.status === 'queued' && r.attempts === 0) || undefined,
      5000,
      'the buffered jobs to be handed back',
    );
    expect(worker.health().buffered).toBe(0);
    expect(starts.filter((s) => buffered.includes(s.id))).toEqual([]);
    // The long job finishes; the slot it frees takes nothing of the paused queue.
    hold.open();
    await waitStatus([holdId], 'succeeded');
    await delay(300);
    expect(starts.filter((s) => buffered.includes(s.id))).toEqual([]);
    for (const row of await jobRows(buffered)) expect(row).toMatchObject({ status: 'queued', attempts: 0 });

    await queues.resume(B);
    await waitStatus(buffered, 'succeeded', 10_000);
    for (const row of await jobRows(buffered)) expect(row.attempts).toBe(1);
    expect(starts.filter((s) => buffered.includes(s.id))).toHaveLength(10);
    await worker.stop();
  });

  it('without NOTIFY (listen: false) a pause takes effect within about one poll interval', async () => {
    const N = 'nolisten';
    const pollMs = 200;
    const marginMs = 400;
    const starts: Start[] = [];
    const hold = gate();
    const worker = await workers.start(
      {
        'nl-job': async (payload: { hold?: boolean }, ctx) => {
          starts.push({ id: ctx.job.id, queue: ctx.job.queue, t: performance.now() });
          if (payload.hold) await hold.promise;
        },
      },
      { queues: [N], concurrency: 1, listen: false, pollIntervalMs: pollMs },
    );
    expect(worker.health().listening).toBeNull();
    const { ids: warm } = await producer.enqueueMany(Array.from({ length: 5 }, () => ({ task: 'nl-job', queue: N })));
    await waitStatus(warm, 'succeeded');
    const { ids } = await producer.enqueueMany([
      { task: 'nl-job', queue: N, payload: { hold: true }, priority: -1 },
      ...Array.from({ length: 10 }, () => ({ task: 'nl-job', queue: N })),
    ]);
    const [holdId, ...buffered] = ids as [string, ...string[]];
    await waitFor(async () => starts.some((s) => s.id === holdId) || undefined, 10_000, 'the long job to start');
    await waitFor(async () => worker.health().buffered === 10 || undefined, 5000, 'ten jobs in the buffer');

    await queues.pause(N);
    const pausedAt = performance.now();
    const deadline = pausedAt + pollMs * 1.1 + marginMs;
    const handedBack = waitFor(
      async () => ((await jobRows(buffered)).every((r) => r.status === 'queued' && r.attempts === 0) ? performance.now() : undefined),
      10_000,
      'the buffered jobs to be handed back',
      { intervalMs: 10 },
    );
    // Free the slot once the poll must have seen the pause: a buffered job still held would start now.
    await delay(Math.max(0, deadline - performance.now()));
    hold.open();
    const backAt = await handedBack;
    await waitStatus([holdId], 'succeeded');
    await delay(500);
    expect(starts.filter((s) => s.t > pausedAt)).toEqual([]);
    expect(backAt).toBeLessThan(deadline);
    for (const row of await jobRows(buffered)) expect(row).toMatchObject({ status: 'queued', attempts: 0 });
    await worker.stop();
  });

  it('hand-off skips paused and limited queues: the job stays queued, or is claimed normally', async () => {
    const ran: string[] = [];
    await queues.pause('ho-paused', { create: true });
    await queues.setLimits('ho-limited', { concurrencyLimit: 5 }, { create: true });
    const worker = await workers.start({ ho: (_p, ctx) => void ran.push(ctx.job.id) }, { queues: ['ho-free', 'ho-paused', 'ho-limited'], concurrency: 2 });
    const timing = async (id: string) =>
      (await db.rows<{ status: string; locked_by: string | null; handed: boolean | null }>(`SELECT status, locked_by, started_at = created_at AS handed FROM ${S}.jobs WHERE id = $1`, [id]))[0];

    // Control: a free queue's job is handed off (inserted claimed: started_at = created_at).
    await offered(worker);
    const { id: free } = await producer.enqueue('ho', {}, { queue: 'ho-free' });
    await waitStatus([free], 'succeeded');
    expect(await timing(free)).toMatchObject({ handed: true, locked_by: worker.id });
    expect(await handoffs(worker)).toBe(1);

    // Paused: not handed off, not claimed.
    await offered(worker);
    const { id: paused } = await producer.enqueue('ho', {}, { queue: 'ho-paused' });
    expect(await timing(paused)).toEqual({ status: 'queued', locked_by: null, handed: null });
    await delay(500);
    expect(await timing(paused)).toEqual({ status: 'queued', locked_by: null, handed: null });
    expect(ran).not.toContain(paused);

    // Limited: not handed off, claimed (started_at after created_at).
    await offered(worker);
    const { id: limited } = await producer.enqueue('ho', {}, { queue: 'ho-limited' });
    await waitStatus([limited], 'succeeded');
    expect(await timing(limited)).toMatchObject({ handed: false, locked_by: worker.id });
    expect(await handoffs(worker)).toBe(1);
    expect(ran).toEqual([free, limited]);
    await worker.stop();
  });
});

describe('limits across workers', () => {
  it('concurrency limit 3 across 3 workers × concurrency 4: never more than 3 running, and 3 at some point', async () => {
    const C = 'cc';
    await queues.setLimits(C, { concurrencyLimit: 3 }, { create: true });
    const intervals: Array<{ key: string; start: number; end: number }> = [];
    const started: Worker[] = [];
    for (let i = 0; i < 3; i++) {
      started.push(
        await workers.start(
          {
            'cc-job': async () => {
              const start = performance.now();
              await delay(30);
              intervals.push({ key: C, start, end: performance.now() });
            },
          },
          { queues: [C], concurrency: 4, max: 4, pollIntervalMs: 200 },
        ),
      );
    }
    let sampling = true;
    let maxRunning = 0;
    let samples = 0;
    const sampler = (async () => {
      while (sampling) {
        const [row] = await db.rows<{ n: number }>(`SELECT count(*)::int AS n FROM ${S}.jobs WHERE queue = $1 AND status = 'running'`, [C]);
        maxRunning = Math.max(maxRunning, row!.n);
        samples++;
        await delay(5);
      }
    })();
    const t0 = Date.now();
    const { ids } = await producer.enqueueMany(Array.from({ length: 40 }, () => ({ task: 'cc-job', queue: C })));
    try {
      await waitStatus(ids, 'succeeded', 20_000);
    } finally {
      sampling = false;
      await sampler;
    }
    const drainMs = Date.now() - t0;
    const overlap = maxOverlap(intervals).get(C);
    console.log(`concurrency limit: 40 jobs in ${drainMs} ms, max overlap ${overlap}, max running in the table ${maxRunning} (${samples} samples)`);
    expect(intervals).toHaveLength(40);
    expect(overlap).toBeLessThanOrEqual(3);
    expect(overlap).toBe(3);
    expect(maxRunning).toBeLessThanOrEqual(3);
    expect(samples).toBeGreaterThan(5);
    await Promise.all(started.map((w) => w.stop()));
  });

  it('a busy worker does not buffer a concurrency-limited queue behind another queue: an idle worker runs its jobs', async () => {
    // README: "A limited queue's jobs are never prefetched beyond a worker's idle slots".
    const U = 'hoard-free';
    const L = 'hoard-lim';
    await queues.setLimits(L, { concurrencyLimit: 2 }, { create: true });
    const hold = gate();
    const starts: Array<Start & { worker: string }> = [];
    const handler =
      (worker: string) =>
      async (payload: { hold?: boolean }, ctx: { job: { id: string; queue: string } }): Promise<void> => {
        starts.push({ worker, id: ctx.job.id, queue: ctx.job.queue, t: performance.now() });
        if (payload.hold) await hold.promise;
      };
    const busy = await workers.start({ hoard: handler('busy') }, { queues: [U, L], concurrency: 2, pollIntervalMs: 60_000 });
    try {
      // Warm the busy worker's buffer up, so that its claims ask for more than its idle slots.
      const { ids: warm } = await producer.enqueueMany(Array.from({ length: 6 }, () => ({ task: 'hoard', queue: U })));
      await waitStatus(warm, 'succeeded');
      // One statement: two long jobs of the free queue first (they take both slots), then two of the limited one.
      const { ids } = await producer.enqueueMany([
        { task: 'hoard', queue: U, payload: { hold: true }, priority: -1 },
        { task: 'hoard', queue: U, payload: { hold: true }, priority: -1 },
        { task: 'hoard', queue: L },
        { task: 'hoard', queue: L },
      ]);
      const limitedIds = ids.slice(2);
      await waitFor(async () => starts.filter((s) => s.worker === 'busy' && s.queue === U && ids.includes(s.id)).length === 2 || undefined, 10_000, 'both long jobs to start');
      await delay(300); // the busy worker's claim rounds are over
      // No idle slot was left for the limited queue: none of its jobs is held by the busy worker.
      expect((await jobRows(limitedIds)).filter((r) => r.locked_by === busy.id)).toEqual([]);
      const idle = await workers.start({ hoard: handler('idle') }, { queues: [L], concurrency: 2, max: 3 });
      await waitStatus(limitedIds, 'succeeded', 5000);
      expect(starts.filter((s) => limitedIds.includes(s.id)).map((s) => s.worker)).toEqual(['idle', 'idle']);
      await idle.stop();
    } finally {
      hold.open();
    }
    await busy.stop();
  });

  it('rate limit 10 per 500 ms across 2 workers: no window holds more than 10 starts, and the drain does not wait for polls', async () => {
    const R = 'rate';
    const windowMs = 500;
    await queues.setLimits(R, { rateLimit: { limit: 10, windowMs } }, { create: true });
    const ran: string[] = [];
    const started: Worker[] = [];
    for (let i = 0; i < 2; i++) {
      // A 10 s poll: only the rate wake-up timer can take the next window's jobs in time.
      started.push(await workers.start({ 'rate-job': (_p, ctx) => void ran.push(ctx.job.id) }, { queues: [R], concurrency: 4, max: 4, pollIntervalMs: 10_000 }));
    }
    await delay(100); // both workers' first claim rounds are done
    const t0 = Date.now();
    const { ids } = await producer.enqueueMany(Array.from({ length: 40 }, () => ({ task: 'rate-job', queue: R })));
    await waitStatus(ids, 'succeeded', 20_000);
    const drainMs = Date.now() - t0;
    const times = (await db.rows<{ t: number }>(`SELECT extract(epoch FROM started_at)::float8 * 1000 AS t FROM ${S}.jobs WHERE queue = $1 ORDER BY started_at`, [R])).map(
      (r) => r.t,
    );
    expect(times).toHaveLength(40);
    let worst = 0;
    for (let i = 0; i < times.length; i++) {
      const inWindow = times.filter((t) => t >= times[i]! && t < times[i]! + windowMs).length;
      worst = Math.max(worst, inWindow);
    }
    console.log(`rate limit: 40 jobs in ${drainMs} ms (starts span ${Math.round(times[39]! - times[0]!)} ms), most starts in a 500 ms window ${worst}`);
    expect(worst).toBeLessThanOrEqual(10);
    expect(times[39]! - times[0]!).toBeGreaterThanOrEqual(1500 - 1);
    expect(new Set(ran).size).toBe(40);
    expect(ran).toHaveLength(40);
    // About 1.5 s of windows; a drain that waited for the 10 s poll would take 10 s or more.
    expect(drainMs).toBeLessThan(8000);
    await Promise.all(started.map((w) => w.stop()));
  });
});

describe('metrics', () => {
  it('skiplock_queue_paused reads the pause at scrape time', async () => {
    const worker = await workers.start({ 'm-job': () => undefined }, { queues: ['mp'], concurrency: 1 });
    expect(await worker.metrics.text()).not.toContain('skiplock_queue_paused{queue="mp"}');
    await queues.pause('mp', { create: true });
    expect(await worker.metrics.text()).toContain('skiplock_queue_paused{queue="mp"} 1');
    await queues.resume('mp');
    const text = await worker.metrics.text();
    expect(text).toContain('skiplock_queue_paused{queue="mp"} 0');
    expect(text).not.toContain('skiplock_queue_paused{queue="mp"} 1');
    await worker.stop();
  });
});
