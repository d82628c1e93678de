import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../src/index.js';
import { startCli } from './helpers/cli.js';
import { type TestSchema, createTestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';
import { createLedger, startLedgerWorker } from './helpers/ledger.js';
import { freePort } from './helpers/measure.js';

/** Worker daemons in processes of their own, as `skiplock worker` runs them. */
let db: TestSchema;
let ledger: string;
let producer: Producer;
const children: Array<ReturnType<typeof startCli>> = [];

beforeAll(async () => {
  db = await createTestSchema('procs');
  ledger = await createLedger(db);
  producer = new Producer({ pool: db.pool, schema: db.schema });
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await db.drop();
});

function startWorkerProcess(queue: string, extra: string[] = []): ReturnType<typeof startCli> {
  const child = startLedgerWorker(db, ledger, queue, extra);
  children.push(child);
  return child;
}

async function count(sql: string, values: unknown[] = []): Promise<number> {
  const [row] = await db.rows<{ n: string }>(sql, values);
  return Number(row?.n ?? 0);
}

describe('worker processes', () => {
  it('serves /metrics and /healthz on 127.0.0.1 with the job metrics after some work', async () => {
    const port = await freePort();
    const worker = startWorkerProcess('scrape', ['--metrics-port', String(port)]);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => undefined))?.ok, 20_000, 'the worker to serve /healthz');
    const { ids } = await producer.enqueueMany(Array.from({ length: 50 }, (_, i) => ({ task: 'ledger', queue: 'scrape', payload: { i } })));
    await waitFor(
      async () => (await count(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE id = ANY($1) AND status = 'succeeded'`, [ids])) === 50 || undefined,
      30_000,
      'jobs to succeed',
    );
    const health = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ ok: true, state: 'running', listening: true });
    // Counters follow the batched write that made the rows succeeded: scrape until they have.
    const text = await waitFor(async () => {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      const body = await res.text();
      return body.includes('outcome="succeeded"} 50') ? body : undefined;
    });
    const value = (pattern: RegExp): number => Number(pattern.exec(text)?.[1] ?? NaN);
    expect(value(/^skiplock_jobs_completed_total\{queue="scrape",task="ledger",outcome="succeeded"\} (\d+)$/m)).toBe(50);
    expect(value(/^skiplock_job_duration_seconds_count\{queue="scrape",task="ledger"\} (\d+)$/m)).toBe(50);
    expect(value(/^skiplock_job_duration_seconds_sum\{queue="scrape",task="ledger"\} ([\d.e-]+)$/m)).toBeGreaterThan(0);
    expect(value(/^skiplock_job_wait_seconds_count\{queue="scrape",task="ledger"\} (\d+)$/m)).toBe(50);
    expect(value(/^skiplock_jobs_running (\d+)$/m)).toBe(0);
    expect(value(/^skiplock_queue_depth\{queue="scrape",status="succeeded"\} (\d+)$/m)).toBe(50);
    expect(value(/^skiplock_notifications_total (\d+)$/m)).toBeGreaterThanOrEqual(1);
    for (const name of ['skiplock_lease_losses_total', 'skiplock_reaper_jobs_total', 'skiplock_notify_reconnects_total', 'skiplock_process_resident_memory_bytes']) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect((await fetch(`http://127.0.0.1:${port}/nope`)).status).toBe(404);
    worker.kill('SIGTERM');
    expect((await worker.done).code).toBe(0);
  });

  // 6 processes x concurrency 3: at most 6 x (3 + 4 pool + 1 LISTEN) = 48 connections, so the
  // suite's budget (test/helpers/connections.ts) holds beside 30 foreign connections.
  it('6 worker processes drain 20,000 jobs: each runs exactly once, none lost', async () => {
    const total = 20_000;
    const jobs = Array.from({ length: total }, (_, i) => ({ task: 'ledger', queue: 'drain', payload: { i } }));
    const { ids } = await producer.enqueueMany(jobs);
    expect(ids).toHaveLength(total);
    const started = Date.now();
    const procs = Array.from({ length: 6 }, () => startWorkerProcess('drain', ['--concurrency', '3']));
    await waitFor(
      async () => (await count(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'drain' AND status = 'succeeded'`)) === total || undefined,
      240_000,
      'all jobs to succeed',
    );
    const seconds = (Date.now() - started) / 1000;
    for (const p of procs) p.kill('SIGTERM');
    const results = await Promise.all(procs.map((p) => p.done));
    expect(results.map((r) => r.code)).toEqual(Array(6).fill(0));

    const byStatus = await db.rows<{ status: string; n: string }>(
      `SELECT status, count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'drain' GROUP BY status`,
    );
    expect(byStatus).toEqual([{ status: 'succeeded', n: String(total) }]);
    expect(await count(`SELECT count(*) AS n FROM ${ledger} WHERE job_id = ANY($1)`, [ids])).toBe(total);
    expect(await count(`SELECT count(DISTINCT job_id) AS n FROM ${ledger} WHERE job_id = ANY($1)`, [ids])).toBe(total);
    // A retry is allowed only as a recorded failure (e.g. the server refusing a connection
    // on a loaded machine), never as a silent second claim.
    const retried = await db.rows<{ last_error: string | null }>(
      `SELECT id, attempts, last_error FROM "${db.schema}".jobs WHERE queue = 'drain' AND attempts <> 1`,
    );
    if (retried.length > 0) console.log('drain: jobs that needed a retry', retried);
    expect(retried.filter((r) => r.last_error === null || r.last_error.startsWith('lease expired'))).toEqual([]);
    const pids = await count(`SELECT count(DISTINCT pid) AS n FROM ${ledger} WHERE job_id = ANY($1)`, [ids]);
    expect(pids).toBeGreaterThan(1); // the work really was shared
    console.log(`drain: ${total} jobs, 6 processes x 3, ${seconds.toFixed(1)} s (${Math.round(total / seconds)} jobs/s), ${pids} processes did work`);
  });

  it('a job whose worker is SIGKILLed mid-run is reaped after the lease and completed by another worker', async () => {
    const victim = startWorkerProcess('kill', ['--lease', '1500', '--reaper-interval', '200', '--poll-interval', '200']);
    const { id } = await producer.enqueue('ledger', { ms: 60_000 }, { queue: 'kill', maxAttempts: 3 });
    await waitFor(async () => (await count(`SELECT count(*) AS n FROM ${ledger} WHERE job_id = $1`, [id])) === 1 || undefined, 20_000, 'the job to start');
    victim.kill('SIGKILL');
    expect((await victim.done).signal).toBe('SIGKILL');
    await db.pool.query(`UPDATE "${db.schema}".jobs SET payload = '{"ms": 10}' WHERE id = $1`, [id]);
    const killedAt = Date.now();
    const rescuer = startWorkerProcess('kill', ['--lease', '1500', '--reaper-interval', '200', '--poll-interval', '200']);
    await waitFor(
      async () => (await db.rows<{ status: string }>(`SELECT status FROM "${db.schema}".jobs WHERE id = $1`, [id]))[0]?.status === 'succeeded' || undefined,
      30_000,
      'the job to be rescued',
    );
    const [row] = await db.rows<{ attempts: number; last_error: string }>(`SELECT attempts, last_error FROM "${db.schema}".jobs WHERE id = $1`, [id]);
    expect(row?.attempts).toBe(2);
    expect(row?.last_error).toMatch(/^lease expired/);
    const runs = await db.rows<{ pid: number }>(`SELECT pid FROM ${ledger} WHERE job_id = $1 ORDER BY started_at`, [id]);
    expect(runs).toHaveLength(2);
    expect(runs[0]?.pid).toBe(victim.pid);
    expect(runs[1]?.pid).toBe(rescuer.pid);
    console.log(`rescue: requeued and completed ${Date.now() - killedAt} ms after SIGKILL (lease 1500 ms)`);
    rescuer.kill('SIGTERM');
    expect((await rescuer.done).code).toBe(0);
  });

  it('SIGTERM during long jobs: exits 0 within the grace period and the jobs are queued again at once', async () => {
    const worker = startWorkerProcess('term', ['--concurrency', '3', '--shutdown-grace', '1s', '--lease', '60s']);
    const { ids } = await producer.enqueueMany(
      Array.from({ length: 3 }, () => ({ task: 'ledger', queue: 'term', payload: { ms: 120_000, honourSignal: false } })),
    );
    await waitFor(async () => (await count(`SELECT count(*) AS n FROM ${ledger} WHERE job_id = ANY($1)`, [ids])) === 3 || undefined, 20_000, 'jobs to start');
    const sentAt = Date.now();
    worker.kill('SIGTERM');
    const result = await worker.done;
    const tookMs = Date.now() - sentAt;
    expect(result.code).toBe(0);
    expect(tookMs).toBeLessThan(10_000); // grace 1 s; the lease (60 s) played no part
    const rows = await db.rows<{ status: string; attempts: number; lease_token: string | null }>(
      `SELECT status, attempts, lease_token FROM "${db.schema}".jobs WHERE id = ANY($1)`,
      [ids],
    );
    expect(rows).toEqual(Array(3).fill({ status: 'queued', attempts: 0, lease_token: null }));
    console.log(`shutdown: exit 0 in ${tookMs} ms with grace 1000 ms; 3 jobs handed back`);
  });

  it('a second signal exits at once', async () => {
    const worker = startWorkerProcess('term2', ['--shutdown-grace', '60s']);
    const { id } = await producer.enqueue('ledger', { ms: 120_000, honourSignal: false }, { queue: 'term2' });
    await waitFor(async () => (await count(`SELECT count(*) AS n FROM ${ledger} WHERE job_id = $1`, [id])) === 1 || undefined, 20_000, 'job to start');
    worker.kill('SIGTERM');
    await delay(300);
    const sentAt = Date.now();
    worker.kill('SIGINT');
    const result = await worker.done;
    expect(result.code).not.toBe(0);
    expect(Date.now() - sentAt).toBeLessThan(5000);
  });
});
