// Concurrent single-job enqueue() calls share INSERT statements (and NOTIFYs), each call
// still getting its own committed job; a job the database refuses fails only its own call.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../src/index.js';
import { type TestSchema, createTestSchema } from './helpers/db.js';
import { waitFor } from './helpers/wait.js';

let db: TestSchema;
let listener: pg.Client;
const notes: string[] = [];

beforeAll(async () => {
  db = await createTestSchema('coalesce');
  listener = new pg.Client({ connectionString: db.connectionString });
  await listener.connect();
  listener.on('notification', (n) => notes.push(n.payload ?? ''));
  await listener.query(`LISTEN "${db.schema}_jobs"`);
});

afterAll(async () => {
  await listener.end();
  await db.drop();
});

/**
 * Forgets every notification sent so far, once it has arrived: a marker sent now is
 * delivered after them (notifications arrive in commit order), so earlier calls' late
 * notifications cannot be counted as this test's.
 */
async function freshNotes(): Promise<void> {
  const marker = `marker-${Math.random()}`;
  await db.pool.query('SELECT pg_notify($1, $2)', [`${db.schema}_jobs`, marker]);
  await waitFor(async () => notes.includes(marker) || undefined, 5000, 'the marker notification');
  notes.length = 0;
}

async function payloads(ids: readonly string[]): Promise<Map<string, unknown>> {
  const rows = await db.rows<{ id: string; payload: unknown }>(`SELECT id::text, payload FROM "${db.schema}".jobs WHERE id = ANY ($1::bigint[])`, [ids]);
  return new Map(rows.map((r) => [r.id, r.payload]));
}

describe('enqueue coalescing', () => {
  it('200 concurrent enqueue() calls: 200 jobs, each call its own id and payload, in a few statements', async () => {
    const producer = new Producer({ pool: db.pool, schema: db.schema });
    await freshNotes();
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => producer.enqueue('c', { i }, { queue: 'c1', priority: i % 3 })));
    const ids = results.map((r) => r.id);
    expect(new Set(ids).size).toBe(200);
    expect(results.every((r) => r.created)).toBe(true);
    const stored = await payloads(ids);
    ids.forEach((id, i) => expect(stored.get(id), `job ${id}`).toEqual({ i }));
    const [{ n } = { n: '0' }] = await db.rows<{ n: string }>(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'c1'`);
    expect(Number(n)).toBe(200);
    // One NOTIFY per statement: far fewer statements than calls.
    await waitFor(async () => notes.length > 0 || undefined, 5000, 'a notification');
    const jobsNotified = notes.reduce((sum, p) => sum + Number(p), 0);
    expect(jobsNotified).toBe(200);
    expect(notes.length).toBeLessThan(20);
  });

  it('a job the database refuses fails only its own call; the others commit', async () => {
    // A real constraint of the server: payloads marked bad violate it.
    await db.rows(`ALTER TABLE "${db.schema}".jobs ADD CONSTRAINT test_no_bad CHECK (NOT (payload ? 'bad')) NOT VALID`);
    try {
      const producer = new Producer({ pool: db.pool, schema: db.schema });
      const settled = await Promise.allSettled(
        Array.from({ length: 30 }, (_, i) => producer.enqueue('c', i === 7 || i === 20 ? { i, bad: true } : { i }, { queue: 'c2' })),
      );
      const failed = settled.flatMap((s, i) => (s.status === 'rejected' ? [i] : []));
      expect(failed).toEqual([7, 20]);
      const reason = (settled[7] as PromiseRejectedResult).reason as Error;
      expect(reason.message).toMatch(/test_no_bad/);
      const ids = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.id] : []));
      const stored = await payloads(ids);
      expect(stored.size).toBe(28);
      const [{ n } = { n: '0' }] = await db.rows<{ n: string }>(`SELECT count(*) AS n FROM "${db.schema}".jobs WHERE queue = 'c2'`);
      expect(Number(n)).toBe(28);
    } finally {
      await db.rows(`ALTER TABLE "${db.schema}".jobs DROP CONSTRAINT test_no_bad`);
    }
  });

  it('calls made one after another, each as the last one resolves, all go through', async () => {
    const producer = new Producer({ pool: db.pool, schema: db.schema });
    const ids: string[] = [];
    for (let i = 0; i < 50; i++) ids.push((await producer.enqueue('c', { i }, { queue: 'c5' })).id);
    expect(new Set(ids).size).toBe(50);
    expect((await payloads(ids)).size).toBe(50);
  });

  it('coalesce: false sends one statement per call', async () => {
    const producer = new Producer({ pool: db.pool, schema: db.schema, coalesce: false });
    await freshNotes();
    await Promise.all(Array.from({ length: 20 }, (_, i) => producer.enqueue('c', { i }, { queue: 'c3' })));
    await waitFor(async () => notes.length === 20 || undefined, 5000, 'twenty notifications');
    expect(notes.every((p) => p === '1')).toBe(true);
  });

  it('close() waits for calls still being written', async () => {
    const producer = new Producer({ connectionString: db.connectionString, schema: db.schema, max: 2 });
    const calls = Array.from({ length: 50 }, (_, i) => producer.enqueue('c', { i }, { queue: 'c4' }));
    await producer.close();
    const ids = (await Promise.all(calls)).map((r) => r.id);
    expect((await payloads(ids)).size).toBe(50);
  });
});
