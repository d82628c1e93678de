// The prefetch buffer (claimed jobs waiting for a slot) and retention of finished jobs
// (deleted at once, or kept and pruned later).
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { type TaskList, Worker, type WorkerOptions } from '../src/index.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

const { db, producer, workers } = useTestSchema('retention');

function startWorker(tasks: TaskList, options: Partial<WorkerOptions> = {}): Promise<Worker> {
  return workers.start(tasks, options);
}

/** A promise with its resolve function, for handlers the test holds open. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

interface Row {
  id: string;
  status: string;
  attempts: number;
  locked_by: string | null;
}

async function jobsOf(queue: string): Promise<Row[]> {
  return db.rows<Row>(`SELECT id::text, status, attempts, locked_by FROM "${db.schema}".jobs WHERE queue = $1 ORDER BY id`, [queue]);
}

/**
 * Runs a few instant jobs through a worker's queue: the worker buffers only once it has
 * seen how long its jobs take.
 */
async function warmUp(task: string, queue: string): Promise<void> {
  await producer.enqueueMany(Array.from({ length: 10 }, () => ({ task, payload: { n: -1 }, queue })));
  await waitFor(async () => {
    const rows = await jobsOf(queue);
    return rows.every((r) => r.status === 'succeeded') || undefined;
  }, 10_000, 'the warm-up jobs');
  await db.rows(`DELETE FROM "${db.schema}".jobs WHERE queue = $1`, [queue]);
}

async function metricValue(worker: Worker, name: string, labels = ''): Promise<number> {
  const text = await worker.metrics.registry.getSingleMetricAsString(name);
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(name) || !line.includes(labels)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

describe('prefetch buffer', () => {
  it('claims beyond free slots, and hands buffered jobs back at once on shutdown', async () => {
    const hold = gate();
    const ran: number[] = [];
    const worker = await startWorker(
      {
        'pf-hold': async (p: { n: number }) => {
          if (p.n < 0) return;
          ran.push(p.n);
          await hold.promise;
        },
      },
      { concurrency: 1, prefetch: 5, queues: ['pf1'] },
    );
    await warmUp('pf-hold', 'pf1');
    await producer.enqueueMany(Array.from({ length: 8 }, (_, n) => ({ task: 'pf-hold', payload: { n }, queue: 'pf1' })));
    // One running plus five buffered: six claimed by this worker, two left queued.
    const claimed = await waitFor(async () => {
      const rows = await jobsOf('pf1');
      const running = rows.filter((r) => r.status === 'running');
      return running.length === 6 ? running : undefined;
    }, 10_000, 'six jobs claimed');
    expect(new Set(claimed.map((r) => r.locked_by)).size).toBe(1);
    expect(worker.health()).toMatchObject({ running: 1, buffered: 5 });
    expect(ran).toHaveLength(1);

    // Shutdown with a long grace: the buffered jobs go back before the running one ends.
    const stopping = worker.stop({ graceMs: 30_000 });
    const back = await waitFor(async () => {
      const rows = await jobsOf('pf1');
      return rows.filter((r) => r.status === 'queued').length === 7 ? rows : undefined;
    }, 10_000, 'the buffered jobs to be queued again');
    expect(back.filter((r) => r.status === 'running')).toHaveLength(1);
    // Handed back, not failed: the claim's attempt is given back too.
    expect(back.filter((r) => r.status === 'queued').every((r) => r.attempts === 0)).toBe(true);
    expect(ran).toHaveLength(1);
    hold.open();
    await stopping;
    const rows = await jobsOf('pf1');
    expect(rows.filter((r) => r.status === 'succeeded')).toHaveLength(1);
    expect(rows.filter((r) => r.status === 'queued')).toHaveLength(7);
  });

  it('renews the leases of buffered jobs, so a slow job ahead of them does not get them reaped', async () => {
    const ran: string[] = [];
    // Lease 1 s; the first job holds the only slot for 3 s while three wait in the buffer.
    const worker = await startWorker(
      {
        'pf-slow': async (p: { ms: number; n?: number }, ctx) => {
          if (p.n === -1) return;
          ran.push(ctx.job.id);
          await delay(p.ms);
        },
      },
      { concurrency: 1, prefetch: 3, queues: ['pf2'], leaseMs: 1000, reaperIntervalMs: 100 },
    );
    await warmUp('pf-slow', 'pf2');
    await producer.enqueue('pf-slow', { ms: 3000 }, { queue: 'pf2', priority: 10 });
    await waitFor(async () => ran.length === 1 || undefined, 10_000, 'the slow job to start');
    await producer.enqueueMany(Array.from({ length: 3 }, () => ({ task: 'pf-slow', payload: { ms: 1 }, queue: 'pf2' })));
    await waitFor(async () => worker.health().buffered === 3 || undefined, 10_000, 'three jobs buffered');
    await waitFor(async () => {
      const rows = await jobsOf('pf2');
      return rows.every((r) => r.status === 'succeeded') || undefined;
    }, 20_000, 'all four to succeed');
    const rows = await jobsOf('pf2');
    expect(rows.map((r) => r.attempts)).toEqual([1, 1, 1, 1]);
    expect(new Set(ran).size).toBe(4);
    expect(ran).toHaveLength(4);
    expect(await metricValue(worker, 'skiplock_lease_losses_total')).toBe(0);
    expect(await metricValue(worker, 'skiplock_reaper_jobs_total')).toBe(0);
    await worker.stop();
  });

  it('drops a buffered job cancelled before it started: its handler never runs', async () => {
    const hold = gate();
    const ran: number[] = [];
    const worker = await startWorker(
      {
        'pf-cancel': async (p: { n: number }) => {
          if (p.n < 0) return;
          ran.push(p.n);
          if (p.n === 0) await hold.promise;
        },
      },
      { concurrency: 1, prefetch: 3, queues: ['pf3'], leaseMs: 1500 },
    );
    await warmUp('pf-cancel', 'pf3');
    const { id: first } = await producer.enqueue('pf-cancel', { n: 0 }, { queue: 'pf3', priority: 10 });
    await waitFor(async () => ran.length === 1 || undefined, 10_000, 'the first job to start');
    const { ids } = await producer.enqueueMany([1, 2, 3].map((n) => ({ task: 'pf-cancel', payload: { n }, queue: 'pf3' })));
    await waitFor(async () => worker.health().buffered === 3 || undefined, 10_000, 'three jobs buffered');
    expect(await producer.cancel(ids[1]!)).toEqual({ changed: true, previous: 'running' });
    // The next heartbeat (every 500 ms) finds the cancellation and drops the job from the buffer.
    await waitFor(async () => worker.health().buffered === 2 || undefined, 10_000, 'the cancelled job to leave the buffer');
    hold.open();
    await waitFor(async () => {
      const rows = await jobsOf('pf3');
      return rows.filter((r) => r.status === 'succeeded').length === 3 || undefined;
    }, 10_000, 'the other three to succeed');
    expect(ran.sort()).toEqual([0, 1, 3]);
    const rows = await jobsOf('pf3');
    expect(rows.find((r) => r.id === ids[1])?.status).toBe('cancelled');
    expect(rows.find((r) => r.id === first)?.status).toBe('succeeded');
    await worker.stop();
  });

  it('buffers nothing before it knows how long jobs take', async () => {
    const hold = gate();
    const worker = await startWorker({ 'pf-cold': () => hold.promise }, { concurrency: 2, prefetch: 50, queues: ['pf4'] });
    await producer.enqueueMany(Array.from({ length: 10 }, () => ({ task: 'pf-cold', queue: 'pf4' })));
    await waitFor(async () => worker.health().running === 2 || undefined, 10_000, 'two jobs running');
    await delay(500); // polls every 200 ms: time for any further claim
    expect(worker.health()).toMatchObject({ running: 2, buffered: 0 });
    expect((await jobsOf('pf4')).filter((r) => r.status === 'running')).toHaveLength(2);
    hold.open();
    await worker.stop();
  });

  it('hands back buffered jobs stuck behind long ones, so an idle worker runs them', async () => {
    const hold = gate();
    const handler = async (p: { n: number; long?: boolean }): Promise<void> => {
      if (p.long) await hold.promise;
    };
    // Lease 1.5 s: heartbeats every 500 ms; a buffered job is handed back after 5 s.
    const busy = await startWorker({ 'pf-mixed': handler }, { concurrency: 2, prefetch: 10, queues: ['pf5'], leaseMs: 1500, workerId: 'busy' });
    await warmUp('pf-mixed', 'pf5');
    const { ids: long } = await producer.enqueueMany([0, 1].map((n) => ({ task: 'pf-mixed', payload: { n, long: true }, queue: 'pf5', priority: 10 })));
    await waitFor(async () => busy.health().running === 2 || undefined, 10_000, 'the long jobs to start');
    const { ids: short } = await producer.enqueueMany([2, 3, 4, 5, 6].map((n) => ({ task: 'pf-mixed', payload: { n }, queue: 'pf5' })));
    await waitFor(async () => busy.health().buffered === 5 || undefined, 10_000, 'the short jobs to be buffered behind the long ones');
    // An idle worker joins: it gets the short jobs once the busy one hands them back.
    await startWorker({ 'pf-mixed': handler }, { concurrency: 2, prefetch: 0, queues: ['pf5'], workerId: 'idle' });
    await waitFor(async () => {
      const rows = await jobsOf('pf5');
      return rows.filter((r) => short.includes(r.id) && r.status === 'succeeded').length === 5 || undefined;
    }, 20_000, 'the short jobs to run');
    const rows = await jobsOf('pf5');
    expect(rows.filter((r) => short.includes(r.id)).map((r) => [r.locked_by, r.attempts])).toEqual(Array(5).fill(['idle', 1]));
    expect(rows.filter((r) => long.includes(r.id)).map((r) => r.status)).toEqual(['running', 'running']);
    expect(busy.health().buffered).toBe(0);
    hold.open();
  });
});

describe('retention', () => {
  it('keepSucceededMs 0 deletes jobs as they succeed (batched and in ctx.transaction), and keeps failed ones', async () => {
    const worker = await startWorker(
      {
        'rt-ok': () => undefined,
        'rt-tx': async (_p, ctx) => {
          await ctx.transaction(async (client) => {
            await client.query(`INSERT INTO "${db.schema}".rt_effects (job_id) VALUES ($1)`, [ctx.job.id]);
          });
        },
        'rt-bad': () => {
          throw new Error('always');
        },
      },
      { concurrency: 4, queues: ['rt1'], keepSucceededMs: 0 },
    );
    await db.rows(`CREATE TABLE "${db.schema}".rt_effects (job_id bigint PRIMARY KEY)`);
    const ok = await producer.enqueueMany(Array.from({ length: 50 }, () => ({ task: 'rt-ok', queue: 'rt1' })));
    const tx = await producer.enqueueMany(Array.from({ length: 5 }, () => ({ task: 'rt-tx', queue: 'rt1' })));
    const { id: bad } = await producer.enqueue('rt-bad', {}, { queue: 'rt1', maxAttempts: 1 });
    await waitFor(async () => {
      const rows = await jobsOf('rt1');
      return (rows.length === 1 && rows[0]!.status === 'failed') || undefined;
    }, 20_000, 'succeeded jobs to be deleted');
    expect((await jobsOf('rt1'))[0]!.id).toBe(bad);
    const effects = await db.rows<{ job_id: string }>(`SELECT job_id::text FROM "${db.schema}".rt_effects ORDER BY job_id`);
    expect(effects.map((e) => e.job_id)).toEqual(tx.ids);
    await waitFor(async () => (await metricValue(worker, 'skiplock_jobs_completed_total', 'outcome="succeeded"')) === 55 || undefined, 10_000, 'the success count');
    expect(ok.ids).toHaveLength(50);
    await worker.stop();
  });

  it('the pruner deletes finished jobs past their retention and nothing else', async () => {
    // Finished jobs of every kind, some of them back-dated past the retention.
    const specs = ['succeeded', 'failed', 'cancelled', 'succeeded', 'failed', 'cancelled', 'queued', 'running'];
    const { ids } = await producer.enqueueMany(specs.map((s) => ({ task: 'rt-none', queue: 'rt2', payload: { s } })));
    await db.rows(
      `UPDATE "${db.schema}".jobs SET status = payload->>'s',
         finished_at = CASE WHEN payload->>'s' IN ('succeeded', 'failed', 'cancelled') THEN now() END,
         attempts = CASE WHEN payload->>'s' = 'queued' THEN 0 ELSE 1 END,
         lease_token = CASE WHEN payload->>'s' = 'running' THEN gen_random_uuid() END,
         lease_expires_at = CASE WHEN payload->>'s' = 'running' THEN now() + interval '1 hour' END,
         locked_by = CASE WHEN payload->>'s' = 'running' THEN 'elsewhere' END
       WHERE queue = 'rt2'`,
    );
    const old = ids.slice(0, 3);
    await db.rows(`UPDATE "${db.schema}".jobs SET finished_at = now() - interval '2 hours' WHERE id = ANY ($1::bigint[])`, [old]);

    // Succeeded jobs kept 1 h, failed/cancelled kept forever: only the old succeeded one goes.
    const keepFailed = await startWorker({ 'rt-none': () => undefined }, { queues: ['rt-none'], keepSucceededMs: 3_600_000, pruneIntervalMs: 100 });
    await waitFor(async () => (await jobsOf('rt2')).length === 7 || undefined, 10_000, 'the old succeeded job to be pruned');
    await delay(300);
    expect((await jobsOf('rt2')).map((r) => r.id)).toEqual(ids.filter((id) => id !== ids[0]));
    expect(await metricValue(keepFailed, 'skiplock_pruned_jobs_total', 'status="succeeded"')).toBe(1);
    await keepFailed.stop();

    // Failed and cancelled kept 1 h too: the old ones go, recent and unfinished ones stay.
    const both = await startWorker(
      { 'rt-none': () => undefined },
      { queues: ['rt-none'], keepSucceededMs: 3_600_000, keepFailedMs: 3_600_000, pruneIntervalMs: 100 },
    );
    await waitFor(async () => (await jobsOf('rt2')).length === 5 || undefined, 10_000, 'old failed and cancelled jobs to be pruned');
    await delay(300);
    const left = await jobsOf('rt2');
    expect(left.map((r) => r.id)).toEqual(ids.slice(3));
    expect(left.map((r) => r.status)).toEqual(['succeeded', 'failed', 'cancelled', 'queued', 'running']);
    expect(await metricValue(both, 'skiplock_pruned_jobs_total', 'status="failed"')).toBe(1);
    expect(await metricValue(both, 'skiplock_pruned_jobs_total', 'status="cancelled"')).toBe(1);
    await both.stop();
  });

  it('rejects a negative or non-integer retention', () => {
    const base = { connectionString: db.connectionString, schema: db.schema, tasks: { x: () => undefined } };
    expect(() => new Worker({ ...base, keepSucceededMs: -1 })).toThrow(/succeeded job retention/);
    expect(() => new Worker({ ...base, keepFailedMs: 1.5 })).toThrow(/failed job retention/);
    expect(() => new Worker({ ...base, prefetch: -1 })).toThrow(/prefetch/);
  });
});
