import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { type TaskList, Worker, type WorkerOptions } from '../src/index.js';
import { runCli } from './helpers/cli.js';
import { maxOverlap } from './helpers/measure.js';
import { useTestSchema } from './helpers/setup.js';
import { waitFor } from './helpers/wait.js';

const { db, producer, workers } = useTestSchema('keys', { max: 20, workerDefaults: { pollIntervalMs: 100 } });

function startWorker(tasks: TaskList, options: Partial<WorkerOptions> = {}): Promise<Worker> {
  return workers.start(tasks, options);
}

async function statuses(ids: string[]): Promise<Record<string, number>> {
  const rows = await db.rows<{ status: string; n: string }>(
    `SELECT status, count(*) AS n FROM "${db.schema}".jobs WHERE id = ANY($1) GROUP BY status`,
    [ids],
  );
  return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
}

describe('dedupe keys', () => {
  it('returns the queued job for a repeated key without rewriting it, and a new job once it finished', async () => {
    const first = await producer.enqueue('idem', { v: 1 }, { dedupeKey: 'order-1', queue: 'idem' });
    const again = await producer.enqueue('idem', { v: 2 }, { dedupeKey: 'order-1', queue: 'other', priority: 9 });
    expect(first.created).toBe(true);
    expect(again).toEqual({ id: first.id, created: false });
    const [row] = await db.rows<{ payload: unknown; queue: string; priority: number }>(
      `SELECT payload, queue, priority FROM "${db.schema}".jobs WHERE dedupe_key = 'order-1'`,
    );
    expect(row).toEqual({ payload: { v: 1 }, queue: 'idem', priority: 0 });
    await db.pool.query(`UPDATE "${db.schema}".jobs SET status = 'succeeded' WHERE id = $1`, [first.id]);
    const later = await producer.enqueue('idem', { v: 3 }, { dedupeKey: 'order-1', queue: 'idem' });
    expect(later.created).toBe(true);
    expect(later.id).not.toBe(first.id);
  });

  it('dedupes in bulk: against existing jobs and within one call, ids in input order', async () => {
    const existing = await producer.enqueue('idem', {}, { dedupeKey: 'bulk-a' });
    const res = await producer.enqueueMany([
      { task: 'idem', payload: { n: 0 } },
      { task: 'idem', payload: { n: 1 }, dedupeKey: 'bulk-a' },
      { task: 'idem', payload: { n: 2 }, dedupeKey: 'bulk-b' },
      { task: 'idem', payload: { n: 3 }, dedupeKey: 'bulk-b' },
      { task: 'idem', payload: { n: 4 } },
    ]);
    expect(res.created).toEqual([true, false, true, false, true]);
    expect(res.ids[1]).toBe(existing.id);
    expect(res.ids[3]).toBe(res.ids[2]);
    const rows = await db.rows<{ id: string; n: number }>(
      `SELECT id, (payload->>'n')::int AS n FROM "${db.schema}".jobs WHERE id = ANY($1) ORDER BY id`,
      [res.ids],
    );
    expect(rows.map((r) => [r.id, r.n])).toEqual([
      [existing.id, null],
      [res.ids[0], 0],
      [res.ids[2], 2],
      [res.ids[4], 4],
    ]);
  });

  for (const isolation of ['READ COMMITTED', 'REPEATABLE READ'] as const) {
    it(`32 concurrent enqueues of one key in ${isolation} transactions: one row, one id, no error`, async () => {
      const key = `race-${isolation.replace(' ', '-')}`;
      const racePool = new pg.Pool({ connectionString: db.connectionString, max: 32 });
      const clients = await Promise.all(Array.from({ length: 32 }, () => racePool.connect()));
      try {
        // Every transaction has its snapshot before any of them inserts.
        await Promise.all(clients.map((c) => c.query(`BEGIN ISOLATION LEVEL ${isolation}`).then(() => c.query('SELECT 1'))));
        const results = await Promise.all(
          clients.map(async (client, i) => {
            const job = await producer.enqueue('idem', { i }, { dedupeKey: key, client });
            await client.query('COMMIT');
            return job;
          }),
        );
        expect(new Set(results.map((r) => r.id)).size).toBe(1);
        expect(results.filter((r) => r.created)).toHaveLength(1);
        const rows = await db.rows(`SELECT id FROM "${db.schema}".jobs WHERE dedupe_key = $1`, [key]);
        expect(rows).toEqual([{ id: results[0]?.id }]);
      } finally {
        for (const c of clients) c.release();
        await racePool.end();
      }
    });
  }

  it('skiplock enqueue --dedupe-key prints the existing id', async () => {
    const args = ['enqueue', 'idem', '{}', '--dedupe-key', 'cli-key', '--database-url', db.connectionString, '--schema', db.schema];
    const one = await runCli(args);
    const two = await runCli([...args, '--json']);
    expect(one.code).toBe(0);
    expect(two.code).toBe(0);
    expect(JSON.parse(two.stdout)).toMatchObject({ id: one.stdout.trim(), created: false });
  });
});

describe('concurrency keys', () => {
  it('20 keys with limit 3 across 4 workers: never more than 3 running per key, and not serialised', async () => {
    const intervals: Array<{ key: string; start: number; end: number }> = [];
    const tasks: TaskList = {
      keyed: async (p: { key: string }) => {
        const start = performance.now();
        await delay(15 + Math.random() * 25);
        intervals.push({ key: p.key, start, end: performance.now() });
      },
    };
    const jobs = Array.from({ length: 600 }, (_, i) => ({
      task: 'keyed',
      queue: 'ck',
      payload: { key: `k${i % 20}` },
      concurrencyKey: `k${i % 20}`,
      concurrencyLimit: 3,
    }));
    const { ids } = await producer.enqueueMany(jobs);
    for (let w = 0; w < 4; w++) await startWorker(tasks, { concurrency: 16, queues: ['ck'] });
    await waitFor(async () => (await statuses(ids)).succeeded === 600 || undefined, 60_000, 'keyed jobs to finish');
    const overlaps = maxOverlap(intervals);
    expect(overlaps.size).toBe(20);
    const values = [...overlaps.values()];
    expect(Math.max(...values)).toBeLessThanOrEqual(3);
    expect(Math.max(...values)).toBe(3); // the limit is used, not serialised to 1
    // Overall parallelism well above one key's worth.
    const all = maxOverlap(intervals.map((i) => ({ ...i, key: 'all' }))).get('all') ?? 0;
    expect(all).toBeGreaterThan(3);
    for (const w of workers.started.splice(0)) await w.stop();
  });

  it('jobs waiting for a full key do not hold up the jobs behind them; a crashed claim gives the slot back', async () => {
    const ran: string[] = [];
    // A job of key "busy" is running on a worker that died (its lease will expire).
    const { id: dead } = await producer.enqueue('slow', {}, { queue: 'hol', concurrencyKey: 'busy', priority: -10 });
    await db.pool.query(
      `UPDATE "${db.schema}".jobs SET status = 'running', attempts = 1, lease_token = gen_random_uuid(),
         lease_expires_at = now() + interval '2 seconds', locked_by = 'dead-worker' WHERE id = $1`,
      [dead],
    );
    const blocked = await producer.enqueueMany(
      Array.from({ length: 30 }, () => ({ task: 'slow', queue: 'hol', concurrencyKey: 'busy', priority: -5 })),
    );
    const free = await producer.enqueueMany(Array.from({ length: 10 }, (_, i) => ({ task: 'free', queue: 'hol', payload: { i } })));
    const worker = await startWorker(
      { slow: () => void ran.push('slow'), free: () => void ran.push('free') },
      { concurrency: 4, queues: ['hol'], reaperIntervalMs: 100, leaseMs: 5000 },
    );
    await waitFor(async () => (await statuses(free.ids)).succeeded === 10 || undefined, 10_000, 'unkeyed jobs to run');
    expect(ran.filter((r) => r === 'slow')).toHaveLength(0); // the key's slot is still held
    // The dead claim's lease expires, the reaper frees the slot, the key's jobs run one at a time.
    await waitFor(async () => (await statuses([dead, ...blocked.ids])).succeeded === 31 || undefined, 20_000, 'keyed jobs to run');
    await worker.stop();
  });

  it('the suite catches write skew: a naive count-then-claim without the key lock oversells', async () => {
    // The same claim without the advisory lock, with a pause between count and claim.
    await db.pool.query(`
      CREATE FUNCTION "${db.schema}".naive_claim(p_key text, p_limit int) RETURNS bigint LANGUAGE plpgsql AS $$
      DECLARE v_running int; v_id bigint;
      BEGIN
        SELECT count(*) INTO v_running FROM "${db.schema}".jobs WHERE concurrency_key = p_key AND status = 'running';
        PERFORM pg_sleep(0.02);
        IF v_running >= p_limit THEN RETURN NULL; END IF;
        UPDATE "${db.schema}".jobs SET status = 'running', attempts = attempts + 1, lease_token = gen_random_uuid(),
               lease_expires_at = now() + interval '1 minute'
        WHERE id = (SELECT id FROM "${db.schema}".jobs WHERE status = 'queued' AND concurrency_key = p_key
                    ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id INTO v_id;
        RETURN v_id;
      END $$`);
    const race = async (key: string, claim: (c: pg.PoolClient) => Promise<unknown>): Promise<number> => {
      await producer.enqueueMany(Array.from({ length: 20 }, () => ({ task: 'race', queue: 'skew', concurrencyKey: key, concurrencyLimit: 2 })));
      const clients = await Promise.all(Array.from({ length: 16 }, () => db.pool.connect()));
      try {
        await Promise.all(clients.map((c) => claim(c)));
      } finally {
        for (const c of clients) c.release();
      }
      const [row] = await db.rows<{ n: string }>(
        `SELECT count(*) AS n FROM "${db.schema}".jobs WHERE concurrency_key = $1 AND status = 'running'`,
        [key],
      );
      return Number(row?.n);
    };
    const naive = await race('skew-naive', (c) => c.query(`SELECT "${db.schema}".naive_claim('skew-naive', 2)`));
    const real = await race('skew-real', (c) =>
      c.query(`SELECT id FROM "${db.schema}".claim_jobs('{race}', '{skew}', 1, 1, 60000, 'racer')`),
    );
    expect(naive).toBeGreaterThan(2); // the anomaly the lock prevents
    // Racing claims that find the key locked skip it, so the race may fill one slot or two.
    expect(real).toBeGreaterThanOrEqual(1);
    expect(real).toBeLessThanOrEqual(2);
    // Claims one after another fill the key up to its limit and no further.
    for (let i = 0; i < 4; i++) await db.pool.query(`SELECT id FROM "${db.schema}".claim_jobs('{race}', '{skew}', 1, 1, 60000, 'racer')`);
    const [after] = await db.rows<{ n: string }>(
      `SELECT count(*) AS n FROM "${db.schema}".jobs WHERE concurrency_key = 'skew-real' AND status = 'running'`,
    );
    expect(Number(after?.n)).toBe(2);
  });
});
