import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { JobStore } from '../src/db/jobstore.js';
import { Metrics, type TaskHandler, type TaskList, Worker, type WorkerOptions } from '../src/index.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

const { db, producer, workers } = useTestSchema('worker');

function startWorker(tasks: TaskList, options: Partial<WorkerOptions> = {}): Promise<Worker> {
  return workers.start(tasks, options);
}

async function job(id: string): Promise<{ status: string; attempts: number; last_error: string | null; locked_by: string }> {
  const [row] = await db.rows<{ status: string; attempts: number; last_error: string | null; locked_by: string }>(
    `SELECT status, attempts, last_error, locked_by FROM "${db.schema}".jobs WHERE id = $1`,
    [id],
  );
  if (!row) throw new Error(`no job ${id}`);
  return row;
}

function waitStatus(id: string, status: string, timeoutMs = 20_000): Promise<true> {
  return waitFor(async () => (await job(id)).status === status || undefined, timeoutMs, `job ${id} to be ${status}`);
}

describe('worker', () => {
  it('wakes on NOTIFY well before the poll interval', async () => {
    const started: number[] = [];
    // The broadcast path: no hand-off (test/handoff.test.ts covers that one).
    const worker = await startWorker({ 'wake-up': () => void started.push(Date.now()) }, { pollIntervalMs: 60_000, queues: ['wake'], handoff: false });
    await delay(300); // the first fetch at start has run and found nothing
    const enqueuedAt = Date.now();
    await producer.enqueue('wake-up', {}, { queue: 'wake' });
    const startedAt = await waitFor(async () => started[0], 10_000, 'the handler to start');
    expect(startedAt - enqueuedAt).toBeLessThan(5000); // the only other path is the 60 s poll
    const notified = (await worker.metrics.registry.getSingleMetricAsString('skiplock_notifications_total')).match(/ (\d+)$/m);
    expect(Number(notified?.[1])).toBeGreaterThanOrEqual(1);
    await worker.stop();
  });

  it('runs a job enqueued in a committed transaction, and never sees one rolled back', async () => {
    const seen: string[] = [];
    const worker = await startWorker({ 'tx-job': (p: { tag: string }) => void seen.push(p.tag) }, { queues: ['tx'] });
    const listener = new pg.Client({ connectionString: db.connectionString });
    await listener.connect();
    const notes: string[] = [];
    listener.on('notification', (n) => notes.push(n.channel));
    await listener.query(`LISTEN "${db.schema}_jobs"`);

    const client = await db.pool.connect();
    await client.query('BEGIN');
    const { id: rolledBack } = await producer.enqueue('tx-job', { tag: 'rolled-back' }, { client, queue: 'tx' });
    await client.query('ROLLBACK');
    await delay(500);
    expect(notes).toEqual([]);
    expect(await db.rows(`SELECT 1 FROM "${db.schema}".jobs WHERE id = $1`, [rolledBack])).toHaveLength(0);

    await client.query('BEGIN');
    const { id: committed } = await producer.enqueue('tx-job', { tag: 'committed' }, { client, queue: 'tx' });
    await delay(300);
    expect(notes).toEqual([]); // not before commit
    await client.query('COMMIT');
    client.release();
    await waitStatus(committed, 'succeeded');
    expect(notes).toHaveLength(1);
    expect(seen).toEqual(['committed']);
    await listener.end();
    await worker.stop();
  });

  it('sends one NOTIFY per bulk enqueue, not one per job', async () => {
    const listener = new pg.Client({ connectionString: db.connectionString });
    await listener.connect();
    const notes: string[] = [];
    listener.on('notification', (n) => notes.push(n.payload ?? ''));
    await listener.query(`LISTEN "${db.schema}_jobs"`);
    const { ids } = await producer.enqueueMany(
      Array.from({ length: 1000 }, (_, i) => ({ task: 'nobody-runs-this', payload: { i }, queue: 'bulk' })),
    );
    expect(ids).toHaveLength(1000);
    expect(new Set(ids).size).toBe(1000);
    await delay(300);
    expect(notes).toEqual(['1000']);
    // Delayed jobs need no wake-up.
    await producer.enqueueMany([{ task: 'nobody-runs-this', queue: 'bulk', delay: 60_000 }]);
    await delay(300);
    expect(notes).toEqual(['1000']);
    await listener.end();
  });

  it('retries with backoff: fails twice then succeeds with attempts = 3', async () => {
    const flaky: TaskHandler = (_payload, ctx) => {
      if (ctx.job.attempt < 3) throw new Error(`boom ${ctx.job.attempt}`);
    };
    const worker = await startWorker(
      { flaky: { handler: flaky, options: { backoff: { baseMs: 20, maxMs: 100, jitter: 0 } } } },
      { queues: ['retry'] },
    );
    const { id } = await producer.enqueue('flaky', {}, { queue: 'retry', maxAttempts: 5 });
    await waitStatus(id, 'succeeded');
    const row = await job(id);
    expect(row.attempts).toBe(3);
    expect(row.last_error).toBe('Error: boom 2');
    await worker.stop();
  });

  it('fails a job that always throws at max attempts and keeps its last error', async () => {
    const worker = await startWorker(
      {
        doomed: {
          handler: (_p: unknown, ctx) => Promise.reject(new TypeError(`nope ${ctx.job.attempt}`)),
          options: { backoff: { baseMs: 10, maxMs: 10 } },
        },
      },
      { queues: ['doomed'] },
    );
    const { id } = await producer.enqueue('doomed', {}, { queue: 'doomed', maxAttempts: 3 });
    await waitStatus(id, 'failed');
    const row = await job(id);
    expect(row.attempts).toBe(3);
    expect(row.last_error).toBe('TypeError: nope 3');
    // The metric follows the batched write that made the row failed: wait for it.
    const text = await waitFor(async () => {
      const t = await worker.metrics.registry.getSingleMetricAsString('skiplock_jobs_completed_total');
      return t.includes('outcome="failed"} 1') ? t : undefined;
    });
    expect(text).toContain('outcome="retried"} 2');
    expect(text).toContain('outcome="failed"} 1');
    await worker.stop();
  });

  it('never claims jobs of tasks or queues it has no handler for', async () => {
    const ran: string[] = [];
    const worker = await startWorker({ mine: (p: { q: string }) => void ran.push(p.q) }, { queues: ['mine-q'] });
    const { id: other } = await producer.enqueue('not-mine', {}, { queue: 'mine-q' });
    const { id: otherQueue } = await producer.enqueue('mine', { q: 'elsewhere' }, { queue: 'elsewhere' });
    const { id: ok } = await producer.enqueue('mine', { q: 'mine-q' }, { queue: 'mine-q' });
    await waitStatus(ok, 'succeeded');
    await delay(500);
    expect((await job(other)).status).toBe('queued');
    expect((await job(otherQueue)).status).toBe('queued');
    expect(ran).toEqual(['mine-q']);
    await worker.stop();
  });

  it('fences a worker whose lease expired and was re-claimed: its writes change nothing', async () => {
    // Worker A takes the job and hangs; its heartbeat is too slow to save the lease.
    let releaseA: (outcome: 'resolve' | 'reject') => void = () => undefined;
    const aStarted = new Promise<void>((resolveStarted) => {
      void startWorker(
        {
          fenced: () =>
            new Promise<void>((resolve, reject) => {
              releaseA = (outcome) => (outcome === 'resolve' ? resolve() : reject(new Error('late failure')));
              resolveStarted();
            }),
        },
        { queues: ['fence'], concurrency: 1, leaseMs: 60_000, heartbeatIntervalMs: 59_000, reaperIntervalMs: 0, workerId: 'worker-a' },
      );
    });
    const { id } = await producer.enqueue('fenced', {}, { queue: 'fence', maxAttempts: 5 });
    await aStarted;
    const [claimA] = await db.rows<{ lease_token: string }>(`SELECT lease_token FROM "${db.schema}".jobs WHERE id = $1`, [id]);
    // Expire A's lease by the database clock; B's reaper requeues it and B re-claims it.
    let releaseB: () => void = () => undefined;
    const bStarted = new Promise<void>((resolveStarted) => {
      void startWorker(
        {
          fenced: () =>
            new Promise<void>((resolve) => {
              releaseB = resolve;
              resolveStarted();
            }),
        },
        { queues: ['fence'], workerId: 'worker-b', reaperIntervalMs: 50 },
      );
    });
    await db.pool.query(`UPDATE "${db.schema}".jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [id]);
    await bStarted;
    expect(await job(id)).toMatchObject({ status: 'running', attempts: 2, locked_by: 'worker-b' });

    // A's stale writes, straight through the store, touch no row.
    const store = new JobStore(db.pool, db.schema);
    expect(await store.complete({ id, token: claimA!.lease_token })).toBe(false);
    expect((await store.finishMany([{ id, token: claimA!.lease_token, ok: false, delayMs: 0, error: 'stale' }])).get(id)).toBeUndefined();
    expect((await store.renew([{ id, token: claimA!.lease_token }], 60_000)).get(id)).toBe('running'); // not renewed
    expect(await store.handBack([{ id, token: claimA!.lease_token }])).toEqual(new Set());
    // A's handler now finishes: A's completion is refused and counted as a lease loss.
    releaseA('resolve');
    const workerA = workers.byId('worker-a');
    await waitFor(async () => /task="fenced"} 1/.test(await workerA.metrics.registry.getSingleMetricAsString('skiplock_lease_losses_total')) || undefined);
    expect(await job(id)).toMatchObject({ status: 'running', attempts: 2, locked_by: 'worker-b' });
    // Only the second attempt's result stands.
    releaseB();
    await waitStatus(id, 'succeeded');
    expect(await job(id)).toMatchObject({ status: 'succeeded', attempts: 2, locked_by: 'worker-b', last_error: 'lease expired (worker worker-a)' });
    await workerA.stop();
    await workers.byId('worker-b').stop();
  });

  it('issues a distinct lease token to every row of a claim and to every later claim of a row', async () => {
    const { ids } = await producer.enqueueMany(Array.from({ length: 50 }, () => ({ task: 'tokens', queue: 'tokens' })));
    const claim = async (): Promise<Map<string, string>> => {
      const rows = await db.rows<{ id: string; lease_token: string }>(
        `SELECT id::text, lease_token::text FROM "${db.schema}".claim_jobs('{tokens}', '{tokens}', 100, 100, 60000, 'token-test')`,
      );
      return new Map(rows.map((r) => [r.id, r.lease_token]));
    };
    const first = await claim();
    expect([...first.keys()].sort()).toEqual([...ids].sort());
    expect(new Set(first.values()).size).toBe(50);
    // Requeue them (as the reaper would) and claim again: no token comes back.
    await db.rows(`UPDATE "${db.schema}".jobs SET status = 'queued', lease_token = NULL, lease_expires_at = NULL WHERE queue = 'tokens'`);
    const second = await claim();
    expect(second.size).toBe(50);
    for (const [id, token] of second) expect(token).not.toBe(first.get(id));
    expect(new Set([...first.values(), ...second.values()]).size).toBe(100);
  });

  it('aborts the handler when a heartbeat finds the lease gone', async () => {
    let signal: AbortSignal | undefined;
    const worker = await startWorker(
      {
        held: (_p: unknown, ctx) => {
          signal = ctx.signal;
          return delay(60_000, undefined, { signal: ctx.signal });
        },
      },
      { queues: ['held'], leaseMs: 2000, heartbeatIntervalMs: 100 },
    );
    const { id } = await producer.enqueue('held', {}, { queue: 'held' });
    await waitFor(async () => signal);
    await delay(300);
    expect(signal!.aborted).toBe(false); // heartbeats keep the lease
    // Someone else takes the job over (as a re-claim would): a new token.
    await db.pool.query(`UPDATE "${db.schema}".jobs SET lease_token = gen_random_uuid() WHERE id = $1`, [id]);
    await waitFor(async () => signal!.aborted || undefined, 5000, 'the handler to be aborted');
    expect(String((signal!.reason as Error).message)).toContain('lease lost');
    expect((await job(id)).status).toBe('running'); // the stale worker wrote nothing
    expect(worker.runningCount).toBe(0); // and freed its slot
    await worker.stop();
  });

  it('after the listener connection is killed, reconnects and fetches at once', async () => {
    const ran: string[] = [];
    const worker = await startWorker({ reconnecting: (p: { n: string }) => void ran.push(p.n) }, { pollIntervalMs: 60_000, queues: ['reconnect'] });
    await delay(200);
    const killed = await db.rows<{ ok: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = $1`,
      [`skiplock listener ${worker.id}`],
    );
    expect(killed).toEqual([{ ok: true }]);
    // Enqueued while the listener is down: its NOTIFY is lost, the fetch after reconnecting finds it.
    await producer.enqueue('reconnecting', { n: 'missed' }, { queue: 'reconnect' });
    await waitFor(async () => ran.includes('missed') || undefined, 10_000, 'the missed job to run');
    const reconnects = await worker.metrics.registry.getSingleMetricAsString('skiplock_notify_reconnects_total');
    expect(reconnects).toMatch(/skiplock_notify_reconnects_total 1$/m);
    // And NOTIFY works again.
    await producer.enqueue('reconnecting', { n: 'after' }, { queue: 'reconnect' });
    await waitFor(async () => ran.includes('after') || undefined, 10_000, 'the next job to run');
    await worker.stop();
  });

  it('shrugs off junk and oversized payloads on its channel', async () => {
    const ran: string[] = [];
    const worker = await startWorker({ junk: () => void ran.push('ok') }, { pollIntervalMs: 60_000, queues: ['junk'] });
    await db.pool.query('SELECT pg_notify($1, $2), pg_notify($1, $3), pg_notify($1, $4)', [
      `${db.schema}_jobs`,
      '{not json',
      'x'.repeat(7999),
      '',
    ]);
    await delay(200);
    await producer.enqueue('junk', {}, { queue: 'junk' });
    await waitFor(async () => ran.length === 1 || undefined, 10_000, 'the job to run');
    expect(worker.isRunning).toBe(true);
    await worker.stop();
  });

  it('serves every listed metric with plausible values after some work', async () => {
    const metrics = new Metrics();
    const worker = await startWorker({ measured: () => delay(5) }, { queues: ['metrics'], metrics });
    const { ids } = await producer.enqueueMany(Array.from({ length: 20 }, () => ({ task: 'measured', queue: 'metrics' })));
    await waitFor(async () => {
      const rows = await db.rows<{ n: string }>(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE id = ANY($1) AND status = 'succeeded'`, [ids]);
      return rows[0]?.n === '20' || undefined;
    });
    const text = await waitFor(async () => {
      const t = await metrics.text();
      return t.includes('outcome="succeeded"} 20') ? t : undefined;
    });
    expect(text).toContain('skiplock_jobs_completed_total{queue="metrics",task="measured",outcome="succeeded"} 20');
    expect(text).toContain('skiplock_job_duration_seconds_count{queue="metrics",task="measured"} 20');
    expect(text).toContain('skiplock_job_wait_seconds_count{queue="metrics",task="measured"} 20');
    expect(text).toMatch(/skiplock_jobs_running \d+/);
    expect(text).toMatch(/skiplock_queue_depth\{queue="metrics",status="succeeded"\} 20/);
    for (const name of [
      'skiplock_lease_losses_total',
      'skiplock_reaper_jobs_total',
      'skiplock_notify_reconnects_total',
      'skiplock_process_cpu_seconds_total',
      'skiplock_nodejs_heap_size_used_bytes',
    ]) {
      expect(text).toContain(`# TYPE ${name}`);
    }
    await worker.stop();
  });

  it('serves the vacuum gauges: the jobs table\'s live and dead rows and size, and a long-held snapshot\'s age', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const worker = await startWorker({ counted: () => undefined }, { queues: ['vacuum'], metrics });
    const gauge = (text: string, name: string): number => {
      const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
      return m === null ? NaN : Number(m[1]);
    };
    // A backend flushes its table statistics when idle, at most once a second and otherwise up
    // to 10 s later: this one is told to flush when it next goes idle, so the inserts show at once.
    const inserter = await db.pool.connect();
    let ids: string[];
    try {
      ({ ids } = await producer.enqueueMany(Array.from({ length: 30 }, () => ({ task: 'counted', queue: 'vacuum' })), { client: inserter }));
      await inserter.query('SELECT pg_stat_force_next_flush()');
    } finally {
      inserter.release();
    }
    await waitFor(async () => {
      const rows = await db.rows<{ n: string }>(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE id = ANY($1) AND status = 'succeeded'`, [ids]);
      return rows[0]?.n === '30' || undefined;
    });
    // Dead rows: each claim and completion left one, less what page pruning removed since.
    const text = await waitFor(async () => {
      const t = await metrics.text();
      return gauge(t, 'skiplock_table_live_tuples') >= 30 ? t : undefined;
    }, 15_000, 'the statistics to count the jobs');
    expect(text).toContain('# TYPE skiplock_oldest_transaction_age_seconds gauge');
    expect(text).toMatch(/^skiplock_table_dead_tuples\{table="jobs"\} \d+$/m);
    expect(text).toMatch(/^skiplock_table_live_tuples\{table="jobs"\} \d+$/m);
    // Heap and four indexes at least, of one page each.
    expect(gauge(text, 'skiplock_table_size_bytes')).toBeGreaterThanOrEqual(5 * 8192);
    expect(gauge(text, 'skiplock_oldest_transaction_age_seconds')).toBeGreaterThanOrEqual(0);

    // A session idle in a REPEATABLE READ transaction holds its snapshot: the gauge shows its age.
    const holder = new pg.Client({ connectionString: db.connectionString });
    await holder.connect();
    try {
      await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await holder.query(`SELECT 1 FROM "${db.schema}".jobs LIMIT 1`);
      await delay(1500);
      const held = gauge(await metrics.text(), 'skiplock_oldest_transaction_age_seconds');
      expect(held).toBeGreaterThanOrEqual(1.4);
      expect(held).toBeLessThan(3600);
      await holder.query('COMMIT');
    } finally {
      await holder.end();
    }
    await worker.stop();
  });
});
