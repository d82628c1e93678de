// The database functions: sql/functions/*.sql are the live definitions, and the claimed-job
// shape and lease-token scheme are shared by the claim and the hand-off.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobStore } from '../src/db/jobstore.js';
import { loadFunctionFiles, migrate } from '../src/db/migrate.js';
import { withSchema } from '../src/db/queries.js';
import { Producer } from '../src/index.js';
import { parseClaimedRow } from '../src/job.js';
import { type TestSchema, createTestSchema } from './helpers/db.js';

let db: TestSchema;

beforeAll(async () => {
  db = await createTestSchema('sqlfn', { max: 3 });
});

afterAll(async () => {
  await db.drop();
});

/** The body between AS $$ and $$, and the SET clauses, of a CREATE FUNCTION file. */
function definition(sql: string): { body: string; settings: string[] } {
  const body = /\bAS \$\$([\s\S]*?)\$\$/.exec(sql)?.[1];
  if (body === undefined) throw new Error('no $$ body');
  const head = sql.slice(0, sql.indexOf('AS $$'));
  const settings = [...head.matchAll(/^SET (\w+) = (\w+)$/gm)].map((m) => `${m[1]}=${m[2]}`);
  return { body, settings };
}

async function installed(name: string): Promise<{ prosrc: string; proconfig: string[] | null } | undefined> {
  const [row] = await db.rows<{ prosrc: string; proconfig: string[] | null }>(
    `SELECT p.prosrc, p.proconfig FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace WHERE n.nspname = $1 AND p.proname = $2`,
    [db.schema, name],
  );
  return row;
}

/** Hex of a bigint id as the last 8 bytes of a lease token. */
const idHex = (id: string): string => BigInt(id).toString(16).padStart(16, '0');
const tokenTail = (token: string): string => token.replaceAll('-', '').slice(16);

describe('sql/functions: the live definitions', () => {
  it('every function in the migrated schema is exactly its file: body and settings', async () => {
    const files = loadFunctionFiles();
    expect(files.map((f) => f.name)).toEqual(expect.arrayContaining(['claim_jobs', 'claimed_job', 'lease_nonce', 'lease_token']));
    for (const file of files) {
      const want = definition(withSchema(file.sql, db.schema));
      const got = await installed(file.name);
      expect(got?.prosrc, file.name).toBe(want.body);
      expect([...(got?.proconfig ?? [])].sort(), file.name).toEqual([...want.settings].sort());
    }
    // claim_jobs keeps the plan settings that older migrations added one by one.
    expect((await installed('claim_jobs'))?.proconfig).toEqual(
      expect.arrayContaining(['plan_cache_mode=force_generic_plan', 'enable_seqscan=off', 'enable_sort=off', 'enable_bitmapscan=off']),
    );
  });

  it('migrate re-applies a function whose file changed, and leaves one a newer skiplock applied', async () => {
    // A stale body, as an older release would have left it, with a stale checksum.
    await db.pool.query(`CREATE OR REPLACE FUNCTION "${db.schema}".lease_nonce() RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$`);
    await db.pool.query(`UPDATE "${db.schema}".functions SET checksum = 'old' WHERE name = 'lease_nonce'`);
    const again = await migrate(db.pool, db.schema);
    expect(again.applied).toEqual([]);
    expect(again.functions).toEqual(['lease_nonce']);
    expect((await installed('lease_nonce'))?.prosrc).toContain('gen_random_uuid');
    expect((await migrate(db.pool, db.schema)).functions).toEqual([]);

    // Applied by a newer skiplock (a higher schema version): an older one does not put its own back.
    await db.pool.query(`UPDATE "${db.schema}".functions SET checksum = 'newer', version = version + 1 WHERE name = 'lease_nonce'`);
    expect((await migrate(db.pool, db.schema)).functions).toEqual([]);
    await db.pool.query(`UPDATE "${db.schema}".functions SET version = version - 1 WHERE name = 'lease_nonce'`);
    expect((await migrate(db.pool, db.schema)).functions).toEqual(['lease_nonce']);
  });
});

describe('one claimed-job shape and one lease-token scheme for the claim and the hand-off', () => {
  it('a claimed job and a handed-off job arrive as the same object, tokens made of a nonce and the id', async () => {
    const store = new JobStore(db.pool, db.schema);
    const producer = new Producer({ pool: db.pool, schema: db.schema });
    await db.pool.query(`DELETE FROM "${db.schema}".jobs`);

    // The claim.
    const { id: claimedId } = await producer.enqueue('shape', { a: [1, 'x'] }, { queue: 'sq', priority: 3, timeout: 1500, concurrencyKey: 'k' });
    const [claimed] = await store.claim({ tasks: ['shape'], queues: ['sq'], limit: 5, free: 5, leaseMs: 60_000, workerId: 'w-claim' });
    expect(claimed?.toJSON()).toMatchObject({ id: claimedId, queue: 'sq', task: 'shape', payload: { a: [1, 'x'] }, priority: 3, attempt: 1, timeoutMs: 1500, concurrencyKey: 'k', dedupeKey: null });
    expect(tokenTail(claimed!.token)).toBe(idHex(claimedId));
    const [row] = await db.rows<{ lease_token: string; started_at: Date; run_at: Date }>(`SELECT lease_token, started_at, run_at FROM "${db.schema}".jobs WHERE id = $1`, [claimedId]);
    expect(claimed!.token).toBe(row!.lease_token);
    expect(claimed!.startedAt.getTime()).toBe(row!.started_at.getTime());
    expect(claimed!.runAt.getTime()).toBe(row!.run_at.getTime());

    // The hand-off: a registered waiter gets the job on its own channel, in the same shape.
    const listener = new pg.Client({ connectionString: db.connectionString });
    await listener.connect();
    try {
      const payloads: string[] = [];
      listener.on('notification', (n) => payloads.push(n.payload ?? ''));
      await listener.query('LISTEN sql_test_w');
      await store.registerWaiter({ workerId: 'w-hand', channel: 'sql_test_w', tasks: ['shape'], queues: ['sq'], leaseMs: 60_000, slots: 1, ttlMs: 60_000, received: 0 });
      const { id: handedId } = await producer.enqueue('shape', { b: true }, { queue: 'sq', priority: 2 });
      for (let i = 0; i < 100 && payloads.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      const handed = parseClaimedRow(JSON.parse(payloads[0] ?? 'null'));
      expect(handed?.toJSON()).toMatchObject({ id: handedId, queue: 'sq', task: 'shape', payload: { b: true }, priority: 2, attempt: 1, timeoutMs: null });
      expect(Object.keys(JSON.parse(payloads[0]!)).sort()).toEqual(Object.keys(claimed!).filter((k) => k !== 'dates').sort());
      const [h] = await db.rows<{ lease_token: string; locked_by: string; status: string }>(`SELECT lease_token, locked_by, status FROM "${db.schema}".jobs WHERE id = $1`, [handedId]);
      expect(h).toMatchObject({ status: 'running', locked_by: 'w-hand', lease_token: handed!.token });
      expect(tokenTail(handed!.token)).toBe(idHex(handedId));
      // The adoption of a lost hand-off reads the same shape from the table.
      const [adopted] = await store.adoptHandoffs('w-hand', []);
      expect(adopted?.toJSON()).toEqual(handed?.toJSON());
      expect(adopted?.token).toBe(handed?.token);
    } finally {
      await listener.end();
      await producer.close();
    }
  });

  it('a hand-off payload that is not a claimed job is refused', () => {
    for (const bad of [null, [], '1', { id: '1' }, { id: 'x', queue: 'q', task: 't', payload: 1, priority: 0, attempt: 1, maxAttempts: 1, token: 't', timeoutMs: null, dedupeKey: null, concurrencyKey: null, runAtMs: 0, createdAtMs: 0, startedAtMs: 0 }]) {
      expect(parseClaimedRow(bad)).toBeUndefined();
    }
  });
});
