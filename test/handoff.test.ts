import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Producer, type Worker } from '../src/index.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

const { db, producer, workers } = useTestSchema('handoff');

async function total(
  metric: { get(): Promise<{ values: Array<{ value: number; labels: Partial<Record<string, string | number>> }> }> },
  labels: Record<string, string> = {},
): Promise<number> {
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((sum, v) => sum + v.value, 0);
}

/** Waits until the worker offers hand-off slots; returns its channel. */
function offered(worker: Worker): Promise<string> {
  return waitFor(
    async () => (await db.rows<{ channel: string }>(`SELECT channel FROM "${db.schema}".waiters WHERE worker = $1 AND slots > 0`, [worker.id]))[0]?.channel,
    10_000,
    `worker ${worker.id} to offer hand-off slots`,
  );
}

async function jobRow(id: string): Promise<{ status: string; attempts: number; locked_by: string | null; last_error: string | null }> {
  const [row] = await db.rows<{ status: string; attempts: number; locked_by: string | null; last_error: string | null }>(
    `SELECT status, attempts, locked_by, last_error FROM "${db.schema}".jobs WHERE id = $1`,
    [id],
  );
  if (!row) throw new Error(`no job ${id}`);
  return row;
}

/** A job row claimed for `workerId` as a hand-off is, without the notification (one that got lost). */
async function lostHandoff(task: string, queue: string, workerId: string): Promise<string> {
  const [row] = await db.rows<{ id: string }>(
    `INSERT INTO "${db.schema}".jobs (queue, task, status, attempts, lease_token, lease_expires_at, locked_by, started_at)
     VALUES ($1, $2, 'running', 1, gen_random_uuid(), now() + interval '1 hour', $3, now()) RETURNING id`,
    [queue, task, workerId],
  );
  return row!.id;
}

describe('direct hand-off to idle workers', () => {
  it('an idle worker gets a single enqueued job handed over and runs it without a claim statement', async () => {
    const ran: Array<{ id: string; attempt: number }> = [];
    const worker = await workers.start({ 'h-one': (_p, ctx) => void ran.push({ id: ctx.job.id, attempt: ctx.job.attempt }) }, { queues: ['h1'], concurrency: 2 });
    await offered(worker);
    const claimsBefore = await total(worker.metrics.claims, { result: 'jobs' });
    const { id } = await producer.enqueue('h-one', { n: 1 }, { queue: 'h1' });
    await waitFor(async () => (await jobRow(id)).status === 'succeeded', 10_000, 'the handed-off job to succeed');
    expect(ran).toEqual([{ id, attempt: 1 }]);
    expect(await total(worker.metrics.handoffs)).toBe(1);
    expect(await total(worker.metrics.claims, { result: 'jobs' })).toBe(claimsBefore);
    expect(await jobRow(id)).toMatchObject({ status: 'succeeded', attempts: 1, locked_by: worker.id });
    await worker.stop();
    // Its offer is gone with it.
    expect(await db.rows(`SELECT 1 FROM "${db.schema}".waiters WHERE worker = $1`, [worker.id])).toHaveLength(0);
  });

  it('8 producers racing 4 idle workers: every job runs exactly once, handed off or claimed', async () => {
    const runs = new Map<string, number>();
    const running = new Map<string, number>();
    let overlap = 0;
    const started: Worker[] = [];
    for (let w = 0; w < 4; w++) {
      const worker = await workers.start(
        {
          'h-race': async (_p, ctx) => {
            runs.set(ctx.job.id, (runs.get(ctx.job.id) ?? 0) + 1);
            const now = (running.get(worker.id) ?? 0) + 1;
            running.set(worker.id, now);
            overlap = Math.max(overlap, now);
            await delay(Math.random() * 15);
            running.set(worker.id, (running.get(worker.id) ?? 1) - 1);
          },
        },
        { queues: ['h2'], concurrency: 2, prefetch: 0 },
      );
      started.push(worker);
    }
    await Promise.all(started.map((w) => offered(w)));
    const producers = Array.from({ length: 8 }, () => new Producer({ connectionString: db.connectionString, schema: db.schema, max: 2 }));
    const ids: string[] = [];
    await Promise.all(
      producers.map(async (p) => {
        for (let k = 0; k < 50; k++) {
          ids.push((await p.enqueue('h-race', { k }, { queue: 'h2' })).id);
          await delay(Math.random() * 8);
        }
      }),
    );
    await waitFor(async () => runs.size === ids.length || undefined, 30_000, 'every job to run');
    await waitFor(
      async () => Number((await db.rows<{ n: string }>(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'h2' AND status = 'succeeded'`))[0]?.n) === ids.length || undefined,
      10_000,
      'every job to be recorded as succeeded',
    );
    await delay(300); // a duplicate run, if any, would show by now
    expect(new Set(ids).size).toBe(400);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(runs.size).toBe(400);
    expect(overlap).toBeLessThanOrEqual(2);
    let handedOff = 0;
    for (const w of started) handedOff += await total(w.metrics.handoffs);
    console.log(`handoff race: 400 jobs, ${handedOff} handed off, ${400 - handedOff} claimed; max running per worker ${overlap}`);
    expect(handedOff).toBeGreaterThan(0);
    await Promise.all(producers.map((p) => p.close()));
    await Promise.all(started.map((w) => w.stop()));
  });

  it('a job handed to a worker that is gone is reaped after its lease and runs elsewhere', async () => {
    // A waiter row of a worker that died without taking its offer back.
    await db.pool.query(
      `INSERT INTO "${db.schema}".waiters (worker, channel, tasks, queues, lease_ms, slots, expires_at)
       VALUES ('ghost:1:dead', 'skiplock_w_ghost', '{h-ghost}', '{h3}', 1000, 100, now() + interval '1 minute')`,
    );
    const { id } = await producer.enqueue('h-ghost', {}, { queue: 'h3' });
    expect(await jobRow(id)).toMatchObject({ status: 'running', attempts: 1, locked_by: 'ghost:1:dead' });
    const ran: string[] = [];
    const worker = await workers.start({ 'h-ghost': (_p, ctx) => void ran.push(ctx.job.id) }, { queues: ['h3'] });
    await waitFor(async () => (await jobRow(id)).status === 'succeeded', 15_000, 'the job to be reaped and run elsewhere');
    expect(ran).toEqual([id]);
    expect(await jobRow(id)).toMatchObject({ attempts: 2, locked_by: worker.id, last_error: 'lease expired (worker ghost:1:dead)' });
    await worker.stop();
  });

  it('jobs handed over while the listener was down are found and run when it reconnects', async () => {
    const ran: string[] = [];
    const worker = await workers.start({ 'h-lost': (_p, ctx) => void ran.push(ctx.job.id) }, { queues: ['h4'], leaseMs: 60_000, pollIntervalMs: 60_000 });
    await offered(worker);
    const id = await lostHandoff('h-lost', 'h4', worker.id);
    await db.pool.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, [`skiplock listener ${worker.id}`.slice(0, 63)]);
    // Long before its 60 s lease or the 60 s poll: the reconnect finds it and runs it.
    await waitFor(async () => ran.length > 0 || undefined, 15_000, 'the lost hand-off to run after the reconnect');
    expect(ran).toEqual([id]);
    await waitFor(async () => (await jobRow(id)).status === 'succeeded', 10_000, 'it to succeed');
    expect(await total(worker.metrics.notifyReconnects)).toBeGreaterThanOrEqual(1);
    await worker.stop();
  });

  it('shutdown hands back a job handed over whose notification never arrived', async () => {
    const worker = await workers.start({ 'h-stop': () => undefined }, { queues: ['h5'], leaseMs: 60_000 });
    await offered(worker);
    const id = await lostHandoff('h-stop', 'h5', worker.id);
    await worker.stop();
    expect(await jobRow(id)).toMatchObject({ status: 'queued', attempts: 0 });
  });

  it('delayed, keyed and batched jobs are never handed off, and junk on the channel is ignored', async () => {
    const ran: string[] = [];
    const worker = await workers.start({ 'h-kinds': (_p, ctx) => void ran.push(ctx.job.id) }, { queues: ['h6'] });
    const channel = await offered(worker);
    for (const junk of ['{', '[1,2,3]', 'hello', JSON.stringify(Array(14).fill(null))]) await db.pool.query('SELECT pg_notify($1, $2)', [channel, junk]);
    const delayed = await producer.enqueue('h-kinds', {}, { queue: 'h6', delay: 300 });
    expect((await jobRow(delayed.id)).status).toBe('queued');
    const keyed = await producer.enqueue('h-kinds', {}, { queue: 'h6', concurrencyKey: 'k', concurrencyLimit: 1 });
    const deduped = await producer.enqueue('h-kinds', {}, { queue: 'h6', dedupeKey: 'd1' });
    const batch = await producer.enqueueMany([
      { task: 'h-kinds', queue: 'h6' },
      { task: 'h-kinds', queue: 'h6' },
    ]);
    const all = [delayed.id, keyed.id, deduped.id, ...batch.ids];
    await waitFor(async () => all.every((id) => ran.includes(id)) || undefined, 15_000, 'every job to run');
    expect(await total(worker.metrics.handoffs)).toBe(0);
    expect(worker.isRunning).toBe(true);
    // Hand-offs still work after the junk.
    await offered(worker);
    const single = await producer.enqueue('h-kinds', {}, { queue: 'h6' });
    await waitFor(async () => ran.includes(single.id) || undefined, 10_000, 'the single job to run');
    expect(await total(worker.metrics.handoffs)).toBe(1);
    await worker.stop();
  });

  it('a producer with no idle worker queues the job; with handoff: false it never hands off', async () => {
    const { id } = await producer.enqueue('h-none', {}, { queue: 'h7' });
    expect(await jobRow(id)).toMatchObject({ status: 'queued', attempts: 0, locked_by: null });
    const worker = await workers.start({ 'h-none': () => undefined }, { queues: ['h7'] });
    await waitFor(async () => (await jobRow(id)).status === 'succeeded', 10_000, 'the queued job to be claimed');
    await offered(worker);
    const plain = new Producer({ pool: db.pool, schema: db.schema, handoff: false });
    const second = await plain.enqueue('h-none', {}, { queue: 'h7' });
    await waitFor(async () => (await jobRow(second.id)).status === 'succeeded', 10_000, 'the second job to run');
    expect(await total(worker.metrics.handoffs)).toBe(0);
    await worker.stop();
  });
});
