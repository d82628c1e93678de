// The claim reads only the worker's own (queue, task) pairs: a backlog in another queue, or
// of a task the worker has no handler for, costs its claims nothing. Counted in index
// entries read (the server's own statistics for the claim's transaction), not in time.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { JobStore } from '../src/db/jobstore.js';
import { useTestSchema } from './helpers/setup.js';

const { db, producer } = useTestSchema('iso', { max: 3 });
const BACKLOG = 20_000;

/** Runs `sql` in a transaction that is rolled back; returns index entries and heap rows it read. */
async function reads(sql: string, values: unknown[], index: string): Promise<{ entries: number; rows: number; result: unknown[] }> {
  const client = await db.pool.connect();
  try {
    await client.query('BEGIN');
    const result = (await client.query(sql, values)).rows;
    const [row] = (
      await client.query<{ entries: string; rows: string }>(
        `SELECT pg_stat_get_xact_tuples_returned($1::regclass) AS entries, pg_stat_get_xact_tuples_fetched($2::regclass) AS rows`,
        [`"${db.schema}".${index}`, `"${db.schema}".jobs`],
      )
    ).rows;
    return { entries: Number(row?.entries), rows: Number(row?.rows), result };
  } finally {
    await client.query('ROLLBACK');
    client.release();
  }
}

const claim = (schema: string): string => `SELECT c.id FROM "${schema}".claim_jobs($1::text[], $2::text[], $3, $3, 30000, 'iso-test') AS c`;

describe('claim isolation', () => {
  it(`behind ${BACKLOG} jobs of another queue and ${BACKLOG} of an unhandled task, a claim reads only its own jobs`, async () => {
    // Both backlogs come first in claim order (older run_at, better priority).
    await db.pool.query(
      `INSERT INTO "${db.schema}".jobs (queue, task, priority, run_at)
       SELECT q, t, -1, now() - interval '1 hour'
       FROM generate_series(1, $1) AS g, (VALUES ('bulk', 'mine'), ('fast', 'unhandled')) AS v (q, t)`,
      [BACKLOG],
    );
    await db.pool.query(`ANALYZE "${db.schema}".jobs`);
    // An empty queue (an idle worker's poll), by queue list and by "all queues".
    for (const queues of [['fast'], null]) {
      const empty = await reads(claim(db.schema), [['mine-too'], queues, 10], 'jobs_claim_pair_idx');
      expect(empty.result).toEqual([]);
      expect(empty.entries).toBeLessThan(20);
    }
    const polled = await reads(claim(db.schema), [['mine'], ['fast'], 10], 'jobs_claim_pair_idx');
    expect(polled.result).toEqual([]);
    expect(polled.entries).toBeLessThan(20);

    // Its own jobs: it reads about what it takes.
    const { ids } = await producer.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ task: 'mine', queue: 'fast', payload: { i } })));
    const own = await reads(claim(db.schema), [['mine'], ['fast'], 10], 'jobs_claim_pair_idx');
    expect(own.result.map((r) => (r as { id: string }).id)).toEqual(ids.slice(0, 10));
    expect(own.entries).toBeLessThan(60);
    expect(own.rows).toBeLessThan(60);
  });

  it('negative control: a claim in global claim order, filtering by queue and task, reads the whole backlog', async () => {
    // The pre-0007 shape: an ordered scan of an index that knows no queue or task.
    await db.pool.query(`CREATE INDEX naive_claim_idx ON "${db.schema}".jobs (priority, run_at, id) WHERE status = 'queued'`);
    try {
      const naive = await reads(
        `SELECT c.id FROM "${db.schema}".jobs AS c
         WHERE c.status = 'queued' AND c.run_at <= now() AND c.task = ANY ($1) AND c.queue = ANY ($2)
         ORDER BY c.priority, c.run_at, c.id LIMIT $3 FOR UPDATE SKIP LOCKED`,
        [['mine'], ['fast'], 10],
        'naive_claim_idx',
      );
      expect(naive.result).toHaveLength(10);
      expect(naive.entries).toBeGreaterThan(2 * BACKLOG);
    } finally {
      await db.pool.query(`DROP INDEX "${db.schema}".naive_claim_idx`);
    }
  });

  it('claim order across pairs: priority first, then the pair whose head is older; FIFO within a pair', async () => {
    await db.pool.query(`DELETE FROM "${db.schema}".jobs`);
    const store = new JobStore(db.pool, db.schema);
    const at = (s: number): Date => new Date(Date.now() - 60_000 + s * 1000);
    const { ids } = await producer.enqueueMany([
      { task: 'a', queue: 'o1', runAt: at(1), priority: 5 }, // 0
      { task: 'b', queue: 'o1', runAt: at(2), priority: 0 }, // 1
      { task: 'a', queue: 'o2', runAt: at(3), priority: 0 }, // 2
      { task: 'b', queue: 'o1', runAt: at(4), priority: 0 }, // 3
      { task: 'a', queue: 'o1', runAt: at(5), priority: -1 }, // 4
      { task: 'c', queue: 'o1', runAt: at(0), priority: -9 }, // 5: a task this worker does not handle
    ]);
    const order: string[] = [];
    for (;;) {
      const got = await store.claim({ tasks: ['a', 'b'], queues: undefined, limit: 1, free: 1, leaseMs: 30_000, workerId: 'iso-order' });
      if (got.length === 0) break;
      order.push(...got.map((j) => j.id));
    }
    expect(order).toEqual([ids[4], ids[1], ids[2], ids[3], ids[0]]);
    // In one batch the same jobs come, best priority first.
    await db.pool.query(`UPDATE "${db.schema}".jobs SET status = 'queued', attempts = 0, lease_token = NULL, lease_expires_at = NULL WHERE task <> 'c'`);
    const batch = await store.claim({ tasks: ['a', 'b'], queues: ['o1', 'o2'], limit: 10, free: 10, leaseMs: 30_000, workerId: 'iso-order' });
    expect(batch.map((j) => j.id).sort()).toEqual([ids[0], ids[1], ids[2], ids[3], ids[4]].sort());
    expect(batch[0]?.id).toBe(ids[4]);
    expect(batch.at(-1)?.id).toBe(ids[0]);
  });
});

describe('claim isolation under concurrency', () => {
  it('6 claimers racing over 3 tasks x 2 queues of mixed priorities: every job claimed exactly once', async () => {
    await db.pool.query(`DELETE FROM "${db.schema}".jobs`);
    const jobs = Array.from({ length: 3000 }, (_, i) => ({ task: `r${i % 3}`, queue: `rq${i % 2}`, priority: i % 5 }));
    const { ids } = await producer.enqueueMany(jobs);
    const pool = new pg.Pool({ connectionString: db.connectionString, max: 6 });
    try {
      const racers = Array.from({ length: 6 }, (_, r) => {
        const store = new JobStore(pool, db.schema);
        return (async () => {
          const got: string[] = [];
          for (;;) {
            // Half the racers name their queues, half serve all queues (the skip-scan path).
            const batch = await store.claim({ tasks: ['r0', 'r1', 'r2'], queues: r % 2 === 0 ? ['rq0', 'rq1'] : undefined, limit: 25, free: 25, leaseMs: 30_000, workerId: `racer-${r}` });
            if (batch.length === 0) return got;
            got.push(...batch.map((j) => j.id));
          }
        })();
      });
      const claimed = (await Promise.all(racers)).flat();
      expect(claimed).toHaveLength(ids.length);
      expect(new Set(claimed).size).toBe(ids.length);
      const [row] = await db.rows<{ n: string }>(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE status = 'running' AND attempts = 1`);
      expect(Number(row?.n)).toBe(ids.length);
    } finally {
      await pool.end();
    }
  });
});
