import { describe, expect, it } from 'vitest';
import { Jobs, type JobSummary, Queues, SkiplockError } from '../src/index.js';
import { failure } from './helpers/failure.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

// Connection budget: the file's pool (4) and at most two workers of concurrency 4 (8 + listener each).
const { db, producer, workers } = useTestSchema('admin', { max: 4 });
const jobs = new Jobs({ pool: db.pool, schema: db.schema });
const queues = new Queues({ pool: db.pool, schema: db.schema });
const S = `"${db.schema}"`;
const fast = { pollIntervalMs: 100, leaseMs: 5000, reaperIntervalMs: 200, concurrency: 4, backoff: { baseMs: 20, maxMs: 20, jitter: 0 } };

async function statusCounts(queue: string): Promise<Record<string, number>> {
  const rows = await db.rows<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM ${S}.jobs WHERE queue = $1 GROUP BY status`, [queue]);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

async function enqueueMany(queue: string, n: number, task = 'noop', payload: (i: number) => unknown = (i) => ({ i })): Promise<string[]> {
  const specs = Array.from({ length: n }, (_, i) => ({ task, queue, payload: payload(i) }));
  return (await producer.enqueueMany(specs)).ids;
}

describe('jobs list', () => {
  it('pages newest first with a cursor: every job once, none missing, across inserts between pages', async () => {
    const ids = await enqueueMany('list-a', 120);
    await enqueueMany('list-b', 30);
    const seen: JobSummary[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const page = await jobs.list({ queue: 'list-a' }, { limit: 25, ...(after !== undefined && { after }) });
      seen.push(...page.jobs);
      after = page.next ?? undefined;
      pages++;
      // New jobs arriving while someone pages do not shift the pages (keyset, not offset).
      if (pages === 2) await enqueueMany('list-a', 5);
    } while (after !== undefined);
    expect(seen.map((j) => j.id)).toEqual([...ids].reverse());
    expect(pages).toBe(5);
    expect(seen.every((j) => j.queue === 'list-a' && j.status === 'queued')).toBe(true);
    expect(Object.keys(seen[0]!)).not.toContain('payload');
  });

  it('filters by status, task, schedule and age, and counts', async () => {
    const [a, b, c] = await enqueueMany('list-c', 3, 'filtered');
    await producer.cancel(b!);
    await db.pool.query(`UPDATE ${S}.jobs SET created_at = now() - interval '2 hours', schedule_name = 'nightly' WHERE id = $1`, [c]);
    const ids = async (filter: Parameters<Jobs['list']>[0]) => (await jobs.list(filter)).jobs.map((j) => j.id);
    expect(await ids({ queue: 'list-c', statuses: ['cancelled'] })).toEqual([b]);
    expect(await ids({ queue: 'list-c', statuses: ['queued', 'cancelled'] })).toEqual([c, b, a]);
    expect(await ids({ task: 'filtered', olderThanMs: 3_600_000 })).toEqual([c]);
    expect(await ids({ schedule: 'nightly' })).toEqual([c]);
    expect(await jobs.count({ queue: 'list-c' })).toBe(3);
    expect(await jobs.count({ queue: 'list-c', statuses: ['failed'] })).toBe(0);
  });

  it('refuses bad filters and cursors before any query', async () => {
    const bad = [
      () => jobs.list({ statuses: ['done' as 'queued'] }),
      () => jobs.list({ statuses: [] }),
      () => jobs.list({ queue: 'a b' }),
      () => jobs.list({ olderThanMs: -1 }),
      () => jobs.list({}, { limit: 0 }),
      () => jobs.list({}, { limit: 1001 }),
      () => jobs.list({}, { after: '12; DROP' }),
    ];
    for (const call of bad) expect(await failure(call)).toBeInstanceOf(SkiplockError);
  });
});

describe('attempt history', () => {
  it('keeps every failed attempt with its worker, times and error, then the success', async () => {
    const worker = await workers.start(
      {
        flaky: async (_p, ctx) => {
          if (ctx.job.attempt < 3) throw new Error(`boom ${ctx.job.attempt}`);
        },
      },
      { ...fast, queues: ['history'] },
    );
    const { id } = await producer.enqueue('flaky', {}, { queue: 'history', maxAttempts: 5 });
    await waitFor(async () => (await jobs.get(id))?.status === 'succeeded', 10_000, 'the flaky job to succeed');
    const job = (await jobs.get(id))!;
    expect(job.attempt_history.map((a) => [a.attempt, a.outcome, a.error])).toEqual([
      [1, 'error', 'Error: boom 1'],
      [2, 'error', 'Error: boom 2'],
      [3, 'succeeded', null],
    ]);
    for (const a of job.attempt_history) {
      expect(a.worker).toBe(worker.id);
      expect(Date.parse(a.ended_at!)).toBeGreaterThanOrEqual(Date.parse(a.started_at!));
    }
    expect(job.attempt_history[0]!.retry_at).not.toBeNull();
    await worker.stop();
  });

  it('keeps the last 10 entries', async () => {
    const { id } = await producer.enqueue('never-run', {}, { queue: 'history-cap', maxAttempts: 25 });
    for (let i = 1; i <= 12; i++) {
      await db.pool.query(
        `UPDATE ${S}.jobs AS j SET attempts = $2, attempt_log = ${S}.log_attempt(j, 'error', 'e' || $2::int, NULL) WHERE j.id = $1`,
        [id, i],
      );
    }
    const history = (await jobs.get(id))!.attempt_history;
    // each entry records the attempt number the row had before the update
    expect(history.map((a) => a.attempt)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    expect(history.map((a) => a.error)).toEqual(['e3', 'e4', 'e5', 'e6', 'e7', 'e8', 'e9', 'e10', 'e11', 'e12']);
  });
});

describe('bulk actions', () => {
  it('refuse nothing silently: dry run counts, the action changes exactly those, single delete refuses running', async () => {
    const ids = await enqueueMany('bulk-a', 2500);
    expect(await jobs.bulk('cancel', { queue: 'bulk-a' }, { dryRun: true })).toEqual({ matched: 2500, changed: 0 });
    expect(await statusCounts('bulk-a')).toEqual({ queued: 2500 });
    const progress: number[] = [];
    const cancelled = await jobs.bulk('cancel', { queue: 'bulk-a' }, { onProgress: (n) => progress.push(n) });
    expect(cancelled).toEqual({ matched: 2500, changed: 2500 });
    expect(progress).toEqual([1000, 2000, 2500]);
    expect(await jobs.bulk('retry', { queue: 'bulk-a', statuses: ['failed'] })).toEqual({ matched: 0, changed: 0 });
    expect(await jobs.bulk('retry', { queue: 'bulk-a', statuses: ['queued'] })).toEqual({ matched: 0, changed: 0 });
    expect(await jobs.bulk('retry', { queue: 'bulk-a' })).toEqual({ matched: 2500, changed: 2500 });
    expect(await statusCounts('bulk-a')).toEqual({ queued: 2500 });
    expect(await jobs.bulk('delete', { queue: 'bulk-a' })).toEqual({ matched: 2500, changed: 2500 });
    expect(await statusCounts('bulk-a')).toEqual({});
    expect(await jobs.delete(ids[0]!)).toEqual({ previous: undefined, changed: false });
  });

  it('retry leaves a job whose dedupe key is held, and retries one of several sharing a key', async () => {
    const key = 'report-42';
    const first = await producer.enqueue('dedupe', {}, { queue: 'bulk-d', dedupeKey: key });
    await producer.cancel(first.id);
    const second = await producer.enqueue('dedupe', {}, { queue: 'bulk-d', dedupeKey: key });
    expect(await jobs.bulk('retry', { queue: 'bulk-d' })).toEqual({ matched: 1, changed: 0 });
    await producer.cancel(second.id);
    expect(await jobs.bulk('retry', { queue: 'bulk-d' })).toEqual({ matched: 2, changed: 1 });
    expect(await statusCounts('bulk-d')).toEqual({ queued: 1, cancelled: 1 });
  });

  it('cancel raced against running workers: each job is cancelled or succeeded, counts exact', async () => {
    const n = 3000;
    await enqueueMany('race-cancel', n, 'work');
    const handled = new Set<string>();
    const tasks = {
      work: async (_p: unknown, ctx: { job: { id: string } }) => {
        handled.add(ctx.job.id);
        await new Promise((r) => setTimeout(r, 1));
      },
    };
    await workers.start(tasks, { ...fast, queues: ['race-cancel'] });
    await workers.start(tasks, { ...fast, queues: ['race-cancel'] });
    await waitFor(async () => handled.size > 200 || undefined, 10_000, 'workers to be busy');
    const result = await jobs.bulk('cancel', { queue: 'race-cancel' }, { batchSize: 200 });
    await waitFor(async () => ((await statusCounts('race-cancel')).running ?? 0) === 0 || undefined, 15_000, 'running jobs to end');
    const counts = await statusCounts('race-cancel');
    expect(Object.keys(counts).sort()).toEqual(['cancelled', 'succeeded']);
    expect(counts.cancelled).toBe(result.changed);
    expect(counts.cancelled! + counts.succeeded!).toBe(n);
    expect(result.changed).toBeGreaterThan(0);
    // A job cancelled while running never has its success recorded afterwards.
    const both = await db.rows(`SELECT id FROM ${S}.jobs WHERE queue = 'race-cancel' AND status = 'succeeded' AND attempt_log::text LIKE '%cancelled%'`);
    expect(both).toEqual([]);
    await workers.stopAll();
  });

  it('retry raced against running workers: every job retried exactly once, and runs exactly twice', async () => {
    const n = 2000;
    const runs = new Map<string, number>();
    const tasks = {
      // The first run of each job fails for good (maxAttempts 1); the run after the retry succeeds.
      once: async (_p: unknown, ctx: { job: { id: string } }) => {
        const count = (runs.get(ctx.job.id) ?? 0) + 1;
        runs.set(ctx.job.id, count);
        if (count === 1) throw new Error('first run fails');
      },
    };
    await workers.start(tasks, { ...fast, queues: ['race-retry'] });
    await workers.start(tasks, { ...fast, queues: ['race-retry'] });
    await producer.enqueueMany(Array.from({ length: n }, (_, i) => ({ task: 'once', queue: 'race-retry', payload: { i }, maxAttempts: 1 })));
    // Bulk retries run while the workers are still failing jobs (and running the retried ones).
    let retried = 0;
    await waitFor(
      async () => {
        retried += (await jobs.bulk('retry', { queue: 'race-retry' }, { batchSize: 150 })).changed;
        return (await statusCounts('race-retry')).succeeded === n || undefined;
      },
      30_000,
      'every job to succeed after one retry',
    );
    expect(retried).toBe(n);
    expect(runs.size).toBe(n);
    expect([...runs.values()].every((c) => c === 2)).toBe(true);
    await workers.stopAll();
  });
});

describe('prune, stats, workers and why', () => {
  it('prunes finished jobs past the given ages only', async () => {
    const ids = await enqueueMany('prune', 4, 'p');
    await db.pool.query(
      `UPDATE ${S}.jobs SET status = (ARRAY['succeeded','failed','cancelled','succeeded'])[n], finished_at = now() - (ARRAY[interval '2 days', interval '2 days', interval '2 days', interval '1 minute'])[n]
       FROM unnest($1::bigint[]) WITH ORDINALITY AS u(id, n) WHERE jobs.id = u.id`,
      [ids],
    );
    expect(await jobs.prune({ succeededMs: 86_400_000, cancelledMs: 86_400_000 })).toEqual({ succeeded: 1, failed: 0, cancelled: 1 });
    expect(await statusCounts('prune')).toEqual({ failed: 1, succeeded: 1 });
  });

  it('stats: counts by status, recent throughput and waits per queue and task', async () => {
    const worker = await workers.start({ s: async () => undefined }, { ...fast, queues: ['stats'] });
    await enqueueMany('stats', 20, 's');
    await waitFor(async () => (await statusCounts('stats')).succeeded === 20 || undefined, 10_000, 'stats jobs');
    await worker.stop();
    await enqueueMany('stats', 3, 's');
    const row = (await jobs.stats()).find((r) => r.queue === 'stats' && r.task === 's')!;
    expect(row).toMatchObject({ queued: 3, succeeded: 20, succeeded_1m: 20, succeeded_1h: 20, started_1h: 20, failed: 0 });
    expect(row.wait_p50_ms).toBeGreaterThanOrEqual(0);
    expect(row.wait_p99_ms).toBeGreaterThanOrEqual(row.wait_p50_ms!);
    expect(row.oldest_wait_ms).toBeGreaterThanOrEqual(0);
  });

  it('workers: a live worker has a row with its tasks; it is gone after stop', async () => {
    const worker = await workers.start({ w1: async () => undefined }, { ...fast, queues: ['presence'] });
    const live = (await jobs.workers()).find((w) => w.id === worker.id);
    expect(live).toMatchObject({ tasks: ['w1'], queues: ['presence'], alive: true, concurrency: 4, pid: process.pid });
    const pairs = [
      { task: 'w1', queue: 'presence' },
      { task: 'w1', queue: 'elsewhere' },
      { task: 'w2', queue: 'presence' },
    ];
    expect(await jobs.unhandledTasks(pairs)).toEqual([pairs[1], pairs[2]]); // by task, then queue
    await worker.stop();
    expect((await jobs.workers()).find((w) => w.id === worker.id)).toBeUndefined();
    expect(await jobs.unhandledTasks(pairs)).toEqual([pairs[1], pairs[0], pairs[2]]); // by task, then queue
  });

  it('why: each reason a queued job waits, and the finished states', async () => {
    const why = async (id: string) => (await jobs.why(id))!;
    expect(await jobs.why('999999999')).toBeUndefined();

    const delayed = await producer.enqueue('why-task', {}, { queue: 'why', delay: '1h' });
    expect((await why(delayed.id)).reason).toBe('delayed');
    expect((await why(delayed.id)).message).toMatch(/delayed until .* \(in 59m/);

    const due = await producer.enqueue('why-task', {}, { queue: 'why' });
    expect((await why(due.id)).blockers).toEqual(['no_worker']);

    // A worker that handles another task only: still no worker for this one.
    const other = await workers.start({ unrelated: async () => undefined }, { ...fast, queues: ['why'] });
    expect((await why(due.id)).message).toMatch(/no live worker handles task "why-task" in queue "why" \(1 worker live/);
    await other.stop();

    await queues.pause('why');
    const paused = await why(due.id);
    expect(paused.reason).toBe('queue_paused');
    expect(paused.blockers).toEqual(['queue_paused', 'no_worker']);
    await queues.resume('why');

    // A concurrency key held by a running job: the worker is busy with it (gate never opens
    // until the test says so), a second job of the key waits.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    const worker = await workers.start({ 'why-task': () => gate }, { ...fast, queues: ['why'], concurrency: 4 });
    await producer.cancel(due.id);
    const holder = await producer.enqueue('why-task', {}, { queue: 'why', concurrencyKey: 'acct-1' });
    await waitFor(async () => (await jobs.get(holder.id))?.status === 'running', 10_000, 'the key holder to run');
    const waiting = await producer.enqueue('why-task', {}, { queue: 'why', concurrencyKey: 'acct-1' });
    const keyFull = await why(waiting.id);
    expect(keyFull.reason).toBe('concurrency_key_full');
    expect(keyFull.keyHolders).toEqual([holder.id]);
    expect(keyFull.message).toContain(`jobs ${holder.id}`);

    await queues.setLimits('why', { concurrencyLimit: 1 });
    const plain = await producer.enqueue('why-task', {}, { queue: 'why' });
    expect((await why(plain.id)).blockers).toContain('queue_concurrency_limit');
    expect((await why(holder.id)).reason).toBe('running');
    open();
    await waitFor(async () => (await jobs.get(plain.id))?.status === 'succeeded', 10_000, 'the plain job to run');
    await worker.stop();

    const failed = await producer.enqueue('why-task', {}, { queue: 'why-done', maxAttempts: 1 });
    await db.pool.query(`UPDATE ${S}.jobs SET status = 'failed', attempts = 1, finished_at = now(), last_error = 'disk full' WHERE id = $1`, [failed.id]);
    expect((await why(failed.id)).message).toMatch(/attempts exhausted \(1 of 1\); last error: disk full; `skiplock jobs retry/);
  });
});
