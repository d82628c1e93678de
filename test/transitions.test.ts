// Job state transitions under concurrency, on the real server: cancel and retry raced on many connections, cancel vs
// completion, time limits, ctx.transaction fencing, the jobs CLI, and the ticket example (a naive handler oversells).
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobAbortedError, Producer, SkiplockError, type TaskContext, type TaskHandler, type TaskList, Worker, type WorkerOptions } from '../src/index.js';
import { normalizeJob } from '../src/producer/jobspec.js';
import type { TransitionResult } from '../src/producer/producer.js';
import buyTicket, { ticketTablesSql } from '../workers/buy-ticket.js';
import { type CliResult, runCli } from './helpers/cli.js';
import { type TestSchema, createTestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';
import { TestWorkers } from './helpers/workers.js';

let db: TestSchema;
let producer: Producer;
let jobs: string; // the qualified jobs table
let racers: pg.Pool; // separate connections for racing calls; their application_name shows them waiting on locks
let racerName: string;
const workers = new TestWorkers(() => db);

beforeAll(async () => {
  db = await createTestSchema('trans', { max: 5 });
  jobs = `"${db.schema}".jobs`;
  producer = new Producer({ pool: db.pool, schema: db.schema });
  racerName = `race ${db.schema}`;
  racers = new pg.Pool({ connectionString: db.connectionString, max: 16, idleTimeoutMillis: 500, application_name: racerName });
});

afterAll(async () => {
  await workers.stopAll();
  await racers?.end();
  await db?.drop();
});

function startWorker(tasks: TaskList, options: Partial<WorkerOptions> = {}): Promise<Worker> {
  return workers.start(tasks, options);
}

type JobRow = { id: string; status: string; attempts: number; run_at: Date; last_error: string | null; lease_token: string | null } & Record<string, unknown>;

async function job(id: string): Promise<JobRow> {
  const [row] = await db.rows<JobRow>(`SELECT * FROM ${jobs} WHERE id = $1`, [id]);
  if (!row) throw new Error(`no job ${id}`);
  return row;
}

function latch(): [Promise<void>, () => void] {
  let open: () => void = () => undefined;
  return [new Promise<void>((resolve) => (open = resolve)), () => open()];
}

function waitStatus(id: string, status: string, timeoutMs = 10_000): Promise<true> {
  return waitFor(async () => (await job(id)).status === status || undefined, timeoutMs, `job ${id} to be ${status}`);
}

async function statusCounts(ids: string[]): Promise<Record<string, number>> {
  const rows = await db.rows<{ status: string; n: number }>(`SELECT status, count(*)::int AS n FROM ${jobs} WHERE id = ANY ($1::bigint[]) GROUP BY status`, [ids]);
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** Inserts finished jobs straight into the table (a task nobody runs), returning their ids. */
async function insertFinished(n: number, status: 'failed' | 'succeeded', dedupeKey: string | null = null): Promise<string[]> {
  const sql = `INSERT INTO ${jobs} (task, queue, status, attempts, max_attempts, finished_at, last_error, dedupe_key, run_at)
    SELECT 'idle', 'nobody', $1, 1, 1, now(), 'Error: old', $3, now() - interval '1 hour' FROM generate_series(1, $2) RETURNING id::text`;
  return (await db.rows<{ id: string }>(sql, [status, n, dedupeKey])).map((r) => r.id);
}

/** Sum of a counter's samples whose labels include `labels`. */
type Sampled = { get(): Promise<{ values: ReadonlyArray<{ value: number; labels: Partial<Record<string, string | number>> }> }> };
async function counter(metric: Sampled, labels: Record<string, string>): Promise<number> {
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((sum, v) => sum + v.value, 0);
}

/** Runs all calls at once, each on its own connection. A gate transaction holds the jobs' row locks until every call
 * waits on them (pg_stat_activity), then lets go: the calls contend for the rows, with snapshots older than the winner. */
async function race<T>(ids: string[], calls: Array<(client: pg.PoolClient) => Promise<T>>): Promise<T[]> {
  const clients = await Promise.all(calls.map(() => racers.connect()));
  const gate = await db.pool.connect();
  let open = true; // a gate left open on failure is destroyed, not handed back to the pool mid-transaction
  try {
    await gate.query('BEGIN');
    await gate.query(`SELECT 1 FROM ${jobs} WHERE id = ANY ($1::bigint[]) FOR UPDATE`, [ids]);
    const results = Promise.all(calls.map((call, i) => call(clients[i] as pg.PoolClient)));
    results.catch(() => undefined); // observed below; do not let an early rejection go unhandled
    const waiting = `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`;
    await waitFor(async () => (await db.rows<{ n: number }>(waiting, [racerName]))[0]?.n === calls.length || undefined, 10_000, 'racers to block');
    await gate.query('COMMIT');
    open = false;
    return await results;
  } finally {
    gate.release(open);
    for (const c of clients) c.release();
  }
}

/** For each job, 2 to 4 concurrent calls of `op` on separate connections; results by job. */
async function raceEach(ids: string[], op: (id: string, client: pg.PoolClient) => Promise<TransitionResult>): Promise<TransitionResult[][]> {
  const out: TransitionResult[][] = [];
  for (let start = 0; start < ids.length; start += 5) {
    const batch = ids.slice(start, start + 5);
    const plan = batch.flatMap((id, i) => Array.from({ length: 2 + ((start + i) % 3) }, () => id));
    const results = await race(batch, plan.map((id) => (client: pg.PoolClient) => op(id, client)));
    for (const id of batch) out.push(results.filter((_, k) => plan[k] === id));
  }
  return out;
}

function expectOneWinner(perJob: TransitionResult[][], from: string, to: string): void {
  for (const results of perJob) {
    expect(results.length).toBeGreaterThanOrEqual(2);
    expect(results.filter((r) => r.changed)).toEqual([{ changed: true, previous: from }]);
    for (const r of results.filter((x) => !x.changed)) expect(r.previous).toBe(to); // the losers saw the winner's write
  }
}

describe('cancel', () => {
  it('queued -> cancelled once; a finished or unknown job is left alone', async () => {
    const { id } = await producer.enqueue('idle', {}, { queue: 'nobody' });
    expect(await producer.cancel(id)).toEqual({ changed: true, previous: 'queued' });
    const cancelled = await job(id);
    expect(cancelled).toMatchObject({ status: 'cancelled', lease_token: null });
    expect(cancelled.finished_at).toBeInstanceOf(Date);
    expect(await producer.cancel(id)).toEqual({ changed: false, previous: 'cancelled' });
    expect(await job(id)).toEqual(cancelled);
    const [done] = await insertFinished(1, 'succeeded');
    const before = await job(done!);
    expect(await producer.cancel(done!)).toEqual({ changed: false, previous: 'succeeded' });
    expect(await job(done!)).toEqual(before);
    expect(await producer.cancel('987654321')).toEqual({ changed: false, previous: undefined });
  });

  it('race: of 2-4 concurrent cancels of each of 50 queued jobs, exactly one changes it', async () => {
    const { ids } = await producer.enqueueMany(Array.from({ length: 50 }, (_, i) => ({ task: 'idle', queue: 'nobody', payload: { i } })));
    const perJob = await raceEach(ids, (id, client) => producer.cancel(id, client));
    expect(perJob).toHaveLength(50);
    expectOneWinner(perJob, 'queued', 'cancelled');
    expect(await statusCounts(ids)).toEqual({ cancelled: 50 });
  });

  it('of a running job: the handler is aborted at the next heartbeat, and the worker writes nothing after', async () => {
    let seen: TaskContext | undefined;
    const quick: string[] = [];
    const hang = (_p: unknown, ctx: TaskContext) => ((seen = ctx), delay(60_000, undefined, { signal: ctx.signal }));
    const worker = await startWorker({ hang, quick: (_p: unknown, ctx) => void quick.push(ctx.job.id) }, { queues: ['hang'], concurrency: 1, heartbeatIntervalMs: 100 });
    const { id } = await producer.enqueue('hang', {}, { queue: 'hang' });
    const ctx = await waitFor(async () => seen, 10_000, 'the handler to start');
    expect(worker.runningCount).toBe(1);
    const t0 = Date.now();
    expect(await producer.cancel(id)).toEqual({ changed: true, previous: 'running' });
    await waitFor(async () => ctx.signal.aborted || undefined, 5000, 'the signal to fire');
    expect(Date.now() - t0).toBeLessThan(1500); // a heartbeat is 100 ms
    expect(ctx.signal.reason instanceof JobAbortedError && ctx.signal.reason.reason).toBe('cancelled');
    await waitFor(async () => worker.runningCount === 0 || undefined, 2000, 'the slot to be freed');
    const after = await job(id);
    expect(after).toMatchObject({ status: 'cancelled', attempts: 1, last_error: null, lease_token: null });
    await delay(400); // several heartbeats later, still untouched
    expect(await job(id)).toEqual(after);
    const labels = { queue: 'hang', task: 'hang' };
    expect(await counter(worker.metrics.jobsCompleted, { ...labels, outcome: 'cancelled' })).toBe(1);
    expect(await counter(worker.metrics.jobsCompleted, { ...labels, outcome: 'lease_lost' })).toBe(0);
    expect(await counter(worker.metrics.leaseLosses, labels)).toBe(0);
    // The single slot takes new work.
    const { id: next } = await producer.enqueue('quick', {}, { queue: 'hang' });
    await waitStatus(next, 'succeeded', 5000);
    expect(quick).toEqual([next]);
    await worker.stop();
  });

  it('racing completion: each job ends cancelled (its cancel changed it) or succeeded (it did not), never both, never neither', async () => {
    const n = 12;
    // The worker's connections are open before the race, so its completions go out at once.
    const own = new pg.Pool({ connectionString: db.connectionString, max: n + 2 });
    await Promise.all(Array.from({ length: n + 2 }, () => own.query('SELECT pg_sleep(0.05)')));
    const [finish, go] = latch();
    let started = 0;
    const worker = await startWorker({ finisher: async () => void (started++, await finish) }, { queues: ['cvc'], concurrency: n, pool: own });
    const { ids } = await producer.enqueueMany(Array.from({ length: n }, () => ({ task: 'finisher', queue: 'cvc', maxAttempts: 1 })));
    await waitFor(async () => started === n || undefined, 10_000, 'every handler to start');
    const clients = await Promise.all(ids.map(() => racers.connect()));
    let results: TransitionResult[];
    try {
      await Promise.all(clients.map((c) => c.query('SELECT 1'))); // warm: nothing left to do but cancel
      // Every handler returns at once; around that instant, each cancel goes out just before,
      // at once, one turn after, or well after (when the batched completion has been written).
      const early = ids.map((id, i) => (i % 4 === 0 ? producer.cancel(id, clients[i]) : undefined));
      go();
      const cancelLater = async (id: string, i: number) => {
        if (i % 4 === 2) await new Promise<void>((resolve) => setImmediate(resolve));
        if (i % 4 === 3) {
          const done = async () => (await db.rows<{ status: string }>(`SELECT status FROM ${jobs} WHERE id = $1`, [id]))[0]?.status !== 'running';
          await waitFor(async () => (await done()) || undefined, 10_000, `job ${id} to finish`);
        }
        return producer.cancel(id, clients[i]);
      };
      results = await Promise.all(ids.map((id, i) => early[i] ?? cancelLater(id, i)));
    } finally {
      for (const c of clients) c.release();
    }
    await waitFor(async () => worker.runningCount === 0 || undefined, 10_000, 'every run to end');
    const rows = await db.rows<{ id: string; status: string }>(`SELECT id::text, status FROM ${jobs} WHERE id = ANY ($1::bigint[])`, [ids]);
    const status = new Map(rows.map((r) => [r.id, r.status]));
    ids.forEach((id, i) => {
      const expected = results[i]?.changed ? { status: 'cancelled', previous: 'running' } : { status: 'succeeded', previous: 'succeeded' };
      expect({ status: status.get(id), previous: results[i]?.previous }, `job ${id}`).toEqual(expected);
    });
    const won = results.filter((r) => r.changed).length;
    console.info(`cancel vs complete: the cancel won ${won} of ${n}`);
    expect(won > 0 && won < n, 'each side won some races').toBe(true);
    // The worker counts a cancel that beat its completion as a cancel, not as a lost lease.
    const labels = { queue: 'cvc', task: 'finisher' };
    // Results are recorded in batches after the slots free up: wait until all are counted.
    const counted = async (): Promise<number> =>
      (await counter(worker.metrics.jobsCompleted, { ...labels, outcome: 'cancelled' })) +
      (await counter(worker.metrics.jobsCompleted, { ...labels, outcome: 'succeeded' }));
    await waitFor(async () => (await counted()) === n || undefined, 10_000, 'every result to be counted');
    expect(await counter(worker.metrics.jobsCompleted, { ...labels, outcome: 'cancelled' })).toBe(won);
    expect(await counter(worker.metrics.jobsCompleted, { ...labels, outcome: 'succeeded' })).toBe(n - won);
    expect(await counter(worker.metrics.leaseLosses, labels)).toBe(0);
    await worker.stop();
    await own.end();
  });
});

describe('retry', () => {
  it('failed -> queued with attempts 0, due now; then it runs again. Unfinished or succeeded jobs are left alone', async () => {
    let failing = true;
    const attempts: number[] = [];
    const [blocked, release] = latch();
    const phoenix = (_p: unknown, ctx: TaskContext): void => {
      attempts.push(ctx.job.attempt);
      if (failing) throw new Error('first life');
    };
    const worker = await startWorker({ phoenix, blocker: () => blocked }, { queues: ['retry'] });
    const { id } = await producer.enqueue('phoenix', {}, { queue: 'retry', maxAttempts: 1, runAt: new Date(Date.now() - 3_600_000) });
    await waitStatus(id, 'failed');
    failing = false;
    // Look at the requeued row inside the retry's own transaction, before any worker can claim it.
    const client = await db.pool.connect();
    let open = true;
    try {
      await client.query('BEGIN');
      expect(await producer.retry(id, client)).toEqual({ changed: true, previous: 'failed' });
      const age = 'extract(epoch FROM clock_timestamp() - run_at)::float8 AS age';
      const { rows } = await client.query<{ age: number }>(`SELECT status, attempts, finished_at, ${age} FROM ${jobs} WHERE id = $1`, [id]);
      expect(rows[0]).toMatchObject({ status: 'queued', attempts: 0, finished_at: null });
      expect(rows[0]?.age).toBeGreaterThanOrEqual(0);
      expect(rows[0]?.age).toBeLessThan(5); // was an hour ago
      await client.query('COMMIT');
      open = false;
    } finally {
      client.release(open);
    }
    await waitStatus(id, 'succeeded');
    expect(attempts).toEqual([1, 1]);
    expect((await job(id)).attempts).toBe(1);
    const { id: queued } = await producer.enqueue('idle', {}, { queue: 'nobody' });
    const { id: running } = await producer.enqueue('blocker', {}, { queue: 'retry' });
    await waitStatus(running, 'running');
    for (const [jobId, status] of [[queued, 'queued'], [running, 'running'], [id, 'succeeded']] as const) {
      const { lease_expires_at: _ignored, ...before } = await job(jobId);
      expect(await producer.retry(jobId)).toEqual({ changed: false, previous: status });
      expect(await job(jobId)).toMatchObject(before);
    }
    release();
    await waitStatus(running, 'succeeded');
    await worker.stop();
  });

  it('race: of 2-4 concurrent retries of each of 50 failed jobs, exactly one requeues it', async () => {
    const ids = await insertFinished(50, 'failed');
    const perJob = await raceEach(ids, (id, client) => producer.retry(id, client));
    expectOneWinner(perJob, 'failed', 'queued');
    expect(await statusCounts(ids)).toEqual({ queued: 50 });
    const [row] = await db.rows<{ max: number }>(`SELECT max(attempts)::int AS max FROM ${jobs} WHERE id = ANY ($1::bigint[])`, [ids]);
    expect(row?.max).toBe(0);
  });

  it('refuses, clearly and without change, to requeue a job whose dedupe key another job now holds', async () => {
    const key = `dk-${db.schema}`;
    const [old] = await insertFinished(1, 'failed', key);
    const holder = await producer.enqueue('idle', {}, { queue: 'nobody', dedupeKey: key });
    expect(holder.created).toBe(true);
    const before = await job(old!);
    const err = await producer.retry(old!).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SkiplockError);
    expect((err as Error).message).toMatch(/dedupe key/);
    expect(await job(old!)).toEqual(before);
    expect((await job(holder.id)).status).toBe('queued');
    // Once the key is free again, the retry goes through.
    expect((await producer.cancel(holder.id)).changed).toBe(true);
    expect(await producer.retry(old!)).toEqual({ changed: true, previous: 'failed' });
  });
});

describe('CLI jobs', () => {
  it('cancel | retry | show, with exit codes 0, 1 and 2', async () => {
    const g = ['--database-url', db.connectionString, '--schema', db.schema];
    const oneLine = (r: CliResult, re: RegExp): void => void (expect(r.stderr.trimEnd().split('\n'), r.stderr).toHaveLength(1), expect(r.stderr).toMatch(re));
    const { id } = await producer.enqueue('idle', { n: 1 }, { queue: 'nobody' });
    const [cancel, bad, missing] = await Promise.all([runCli([...g, 'jobs', 'cancel', id]), runCli([...g, 'jobs', 'cancel', 'abc']), runCli([...g, 'jobs', 'show', '987654321'])]);
    expect([cancel.code, cancel.stdout], cancel.stderr).toEqual([0, `job ${id} cancelled (was queued)\n`]);
    expect((await job(id)).status).toBe('cancelled');
    expect([bad.code, missing.code]).toEqual([2, 1]);
    oneLine(bad, /invalid job id/);
    oneLine(missing, /no job 987654321/);
    const again = await runCli([...g, 'jobs', 'cancel', id]);
    expect([again.code, again.stdout]).toEqual([1, '']);
    oneLine(again, new RegExp(`job ${id} .*cancelled`));
    const retry = await runCli([...g, 'jobs', 'retry', id]);
    expect([retry.code, retry.stdout], retry.stderr).toEqual([0, `job ${id} requeued (was cancelled)\n`]);
    const retryAgain = await runCli([...g, 'jobs', 'retry', id]);
    expect(retryAgain.code).toBe(1);
    oneLine(retryAgain, /queued/);
    const show = await runCli([...g, 'jobs', 'show', id]);
    expect(show.code, show.stderr).toBe(0);
    expect(JSON.parse(show.stdout)).toMatchObject({ id, status: 'queued', attempts: 0, task: 'idle', payload: { n: 1 } });
  });
});

describe('timeouts', () => {
  it('fail the attempt at the limit even when the handler ignores its signal, and free its slot; a job timeout beats the task one', async () => {
    const signals = new Map<string, AbortSignal>();
    const stubborn = async (p: { ms: number }, ctx: TaskContext) => void (signals.set(ctx.job.id, ctx.signal), await delay(p.ms, undefined, { ref: false }));
    const worker = await startWorker({ stubborn: { handler: stubborn, options: { timeoutMs: 200 } }, quick: () => undefined }, { queues: ['timeout'], concurrency: 1 });
    const t0 = Date.now();
    const { id } = await producer.enqueue('stubborn', { ms: 5000 }, { queue: 'timeout', maxAttempts: 1 });
    await waitStatus(id, 'failed', 4000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    expect(Date.now() - t0).toBeLessThan(2000); // the handler sleeps 5 s
    expect((await job(id)).last_error).toContain('timed out after 200 ms');
    const signal = signals.get(id);
    expect(signal?.aborted && signal.reason instanceof JobAbortedError && signal.reason.reason).toBe('timeout');
    expect(worker.runningCount).toBe(0);
    // Concurrency 1 and the handler still sleeping: the slot is free all the same.
    const { id: next } = await producer.enqueue('quick', {}, { queue: 'timeout' });
    await waitStatus(next, 'succeeded', 2000);
    expect(Date.now() - t0).toBeLessThan(4000);
    const spec = { task: 'stubborn', queue: 'timeout', maxAttempts: 1 };
    const { ids } = await producer.enqueueMany([{ ...spec, payload: { ms: 500 }, timeout: 3000 }, { ...spec, payload: { ms: 5000 }, timeout: 50 }]);
    await waitStatus(ids[0]!, 'succeeded', 4000); // 500 ms is past the task's 200 ms, within the job's 3 s
    await waitStatus(ids[1]!, 'failed', 4000);
    expect((await job(ids[1]!)).last_error).toContain('timed out after 50 ms');
    await worker.stop({ graceMs: 0 });
  });

  it('are bounded: the worker rejects a task timeout over its lease or over 2^31-1 ms; a job timeout must be 1 .. 2^31-1', () => {
    const make = (timeoutMs: number, leaseMs: number) => () =>
      new Worker({ connectionString: db.connectionString, schema: db.schema, leaseMs, tasks: { t: { handler: () => undefined, options: { timeoutMs } } } });
    expect(make(5001, 5000)).toThrow(/lease/);
    expect(make(2 ** 31, 2 ** 31 - 1)).toThrow(SkiplockError);
    expect(make(2 ** 31, 2 ** 31 - 1)).toThrow(/timeout/);
    for (const timeout of [0, 2 ** 31]) expect(() => normalizeJob({ task: 't', timeout })).toThrow(/timeout/);
    expect([1, 2 ** 31 - 1].map((timeout) => normalizeJob({ task: 't', timeout }).timeoutMs)).toEqual([1, 2 ** 31 - 1]);
  });
});

describe('ctx.transaction', () => {
  it('commits the handler writes with the completion, rolls both back on a lost lease, and runs at most once', async () => {
    const effects = `"${db.schema}".effects`;
    await db.pool.query(`CREATE TABLE ${effects} (n serial PRIMARY KEY, job_id bigint NOT NULL, note text NOT NULL)`);
    const write = (c: pg.PoolClient, ctx: TaskContext, note: string) => c.query(`INSERT INTO ${effects} (job_id, note) VALUES ($1, $2)`, [ctx.job.id, note]);
    const [written, wrote] = latch();
    const [stolen, steal] = latch();
    const errors = new Map<string, unknown>();
    const settled = new Map<string, PromiseSettledResult<unknown>[]>();
    let secondRan = false;
    const tasks: TaskList = {
      'tx-ok': (_p: unknown, ctx) => ctx.transaction((c) => write(c, ctx, 'ok')),
      'tx-stolen': (_p: unknown, ctx) =>
        ctx.transaction(async (c) => (await write(c, ctx, 'stolen'), wrote(), await stolen)).catch((e: unknown) => void errors.set(ctx.job.id, e)),
      'tx-twice': async (_p: unknown, ctx) => {
        await ctx.transaction((c) => write(c, ctx, 'first'));
        await ctx.transaction(async (c) => ((secondRan = true), await write(c, ctx, 'second'))).catch((e: unknown) => void errors.set(ctx.job.id, e));
      },
      'tx-both': async (_p: unknown, ctx) =>
        void settled.set(ctx.job.id, await Promise.allSettled([ctx.transaction((c) => write(c, ctx, 'a')), ctx.transaction((c) => write(c, ctx, 'b'))])),
    };
    const worker = await startWorker(tasks, { queues: ['tx'] });
    const notes = async (id: string) => (await db.rows<{ note: string }>(`SELECT note FROM ${effects} WHERE job_id = $1 ORDER BY n`, [id])).map((r) => r.note);

    const { id: ok } = await producer.enqueue('tx-ok', {}, { queue: 'tx' });
    await waitStatus(ok, 'succeeded');
    expect(await notes(ok)).toEqual(['ok']);
    // Forced lease loss: the write is done, the completion not yet, when the job is taken over.
    const { id: lost } = await producer.enqueue('tx-stolen', {}, { queue: 'tx' });
    await written;
    await db.pool.query(`UPDATE ${jobs} SET lease_token = gen_random_uuid() WHERE id = $1`, [lost]);
    const taken = await job(lost);
    steal();
    const err = await waitFor(async () => errors.get(lost), 5000, 'ctx.transaction to throw');
    expect(err instanceof JobAbortedError && err.reason).toBe('lease_lost');
    expect(await notes(lost)).toEqual([]); // rolled back
    await waitFor(async () => worker.runningCount === 0 || undefined, 2000, 'the slot to be freed');
    await delay(300);
    expect(await job(lost)).toEqual(taken); // this worker wrote nothing to the job
    expect(taken).toMatchObject({ status: 'running', attempts: 1, last_error: null });
    expect(await counter(worker.metrics.leaseLosses, { task: 'tx-stolen' })).toBe(1);
    // A second call after the first committed throws, and its fn never runs.
    const { id: twice } = await producer.enqueue('tx-twice', {}, { queue: 'tx' });
    await waitStatus(twice, 'succeeded');
    await waitFor(async () => errors.get(twice), 5000, 'the second ctx.transaction to throw');
    expect(errors.get(twice)).toBeInstanceOf(Error);
    expect(secondRan).toBe(false);
    expect(await notes(twice)).toEqual(['first']);
    // Two overlapping calls: one commits with the completion, the other rolls back.
    const { id: both } = await producer.enqueue('tx-both', {}, { queue: 'tx' });
    const outcomes = await waitFor(async () => settled.get(both), 5000, 'both calls to settle');
    expect(outcomes.map((o) => o.status).sort()).toEqual(['fulfilled', 'rejected']);
    expect((await job(both)).status).toBe('succeeded');
    expect(await notes(both)).toHaveLength(1);
    await worker.stop();
  });
});

describe('tickets', () => {
  it('60 buyers on 3 workers x 8 never oversell 10 seats; a naive count-then-insert handler does', async () => {
    const ts = db.schema; // the tickets tables live in this file's own schema, dropped with it
    await db.pool.query(ticketTablesSql(ts));
    await db.pool.query(`INSERT INTO ${ts}.events (id, capacity) VALUES (1, 10), (2, 10)`);
    // No lock on the event row: every buyer counts before the others' sales commit.
    const naive: TaskHandler<{ eventId: number; buyer: string }> = (p, ctx) =>
      ctx.transaction(async (c) => {
        const sold = `(SELECT count(*)::int FROM ${ts}.tickets WHERE event_id = e.id) AS sold`;
        const { rows } = await c.query<{ capacity: number; sold: number }>(`SELECT capacity, ${sold} FROM ${ts}.events AS e WHERE id = $1`, [p.eventId]);
        await c.query('SELECT pg_sleep(0.05)');
        const outcome = (rows[0]?.sold ?? 0) < (rows[0]?.capacity ?? 0) ? 'sold' : 'refused';
        if (outcome === 'sold') await c.query(`INSERT INTO ${ts}.tickets (event_id, buyer, job_id) VALUES ($1, $2, $3)`, [p.eventId, p.buyer, ctx.job.id]);
        await c.query(`INSERT INTO ${ts}.purchases (job_id, event_id, buyer, outcome) VALUES ($1, $2, $3, $4)`, [ctx.job.id, p.eventId, p.buyer, outcome]);
      });
    const tasks: TaskList = { 'buy-ticket': buyTicket, 'buy-naive': naive };
    const crew = await Promise.all([1, 2, 3].map(() => startWorker(tasks, { queues: ['tickets'], concurrency: 8, max: 6 })));
    const sell = async (task: string, eventId: number) => {
      const { ids } = await producer.enqueueMany(Array.from({ length: 60 }, (_, i) => ({ task, queue: 'tickets', payload: { eventId, buyer: `b${i}`, schema: ts } })));
      const finished = async () => Object.entries(await statusCounts(ids)).filter(([s]) => s !== 'queued' && s !== 'running').reduce((a, [, n]) => a + n, 0);
      await waitFor(async () => (await finished()) === 60 || undefined, 30_000, `${task} jobs to finish`);
      const [t] = await db.rows<{ tickets: number; sold: number; refused: number; workers: number }>(
        `SELECT (SELECT count(*)::int FROM ${ts}.tickets WHERE event_id = $1) AS tickets, count(*) FILTER (WHERE outcome = 'sold')::int AS sold,
           count(*) FILTER (WHERE outcome = 'refused')::int AS refused, (SELECT count(DISTINCT locked_by)::int FROM ${jobs} WHERE id = ANY ($2::bigint[])) AS workers
         FROM ${ts}.purchases WHERE event_id = $1`,
        [eventId, ids],
      );
      return { ids, tickets: -1, sold: -1, refused: -1, workers: -1, ...t };
    };
    const safe = await sell('buy-ticket', 1);
    expect(await statusCounts(safe.ids)).toEqual({ succeeded: 60 });
    expect(safe).toMatchObject({ tickets: 10, sold: 10, refused: 50 });
    expect(safe.workers).toBeGreaterThanOrEqual(2); // it was contended across workers
    const unsafe = await sell('buy-naive', 2);
    expect(await statusCounts(unsafe.ids)).toEqual({ succeeded: 60 });
    expect(unsafe.sold + unsafe.refused).toBe(60);
    console.info(`naive handler sold ${unsafe.tickets} of 10 seats`);
    expect(unsafe.tickets).toBeGreaterThan(10); // the suite catches the oversell
    await Promise.all(crew.map((w) => w.stop()));
  });
});
