// Opt-in asynchronous commit for enqueue: the insert's transaction runs with
// synchronous_commit = off, and only when asked for.
import { beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../src/index.js';
import { runCli } from './helpers/cli.js';
import { useTestSchema } from './helpers/setup.js';

const { db, producer } = useTestSchema('commit', { max: 4 });

/**
 * An AFTER INSERT statement trigger records the synchronous_commit setting the insert's
 * transaction has when the statement ends, i.e. the one its commit will use.
 */
beforeAll(async () => {
  await db.pool.query(`
    CREATE TABLE "${db.schema}".commit_modes (at bigserial, mode text);
    CREATE FUNCTION "${db.schema}".note_commit_mode() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      INSERT INTO "${db.schema}".commit_modes (mode) VALUES (current_setting('synchronous_commit'));
      RETURN NULL;
    END $$;
    CREATE TRIGGER note_commit_mode AFTER INSERT ON "${db.schema}".jobs
      FOR EACH STATEMENT EXECUTE FUNCTION "${db.schema}".note_commit_mode();`);
});

async function modes(run: () => Promise<unknown>): Promise<string[]> {
  await db.pool.query(`DELETE FROM "${db.schema}".commit_modes`);
  await run();
  return (await db.rows<{ mode: string }>(`SELECT mode FROM "${db.schema}".commit_modes ORDER BY at`)).map((r) => r.mode);
}

describe('synchronousCommit: false', () => {
  it('commits the producer’s own enqueues asynchronously: single (hand-off statement), coalesced, bulk and deduplicated', async () => {
    const fast = new Producer({ pool: db.pool, schema: db.schema, synchronousCommit: false });
    expect(await modes(() => fast.enqueue('t', { n: 1 }))).toEqual(['off']);
    expect(await modes(() => Promise.all([fast.enqueue('t', { n: 2 }), fast.enqueue('t', { n: 3 }), fast.enqueue('t', { n: 4 })]))).toEqual(['off']);
    expect(await modes(() => fast.enqueueMany([{ task: 't' }, { task: 't', delay: '1h' }]))).toEqual(['off']);
    expect(await modes(() => fast.enqueue('t', {}, { dedupeKey: 'async-1' }))).toEqual(['off']);
    expect(await modes(() => fast.enqueue('t', {}, { synchronousCommit: true }))).toEqual(['on']);
  });

  it('leaves the server’s setting alone by default', async () => {
    expect(await modes(() => producer.enqueue('t', { n: 1 }))).toEqual(['on']);
    expect(await modes(() => producer.enqueueMany([{ task: 't' }, { task: 't' }]))).toEqual(['on']);
    expect(await modes(() => producer.enqueue('t', {}, { dedupeKey: 'sync-1' }))).toEqual(['on']);
    expect(await modes(() => producer.enqueue('t', {}, { synchronousCommit: false }))).toEqual(['off']);
  });

  it('on a caller’s client, only an explicit per-call false changes the caller’s transaction', async () => {
    const fast = new Producer({ pool: db.pool, schema: db.schema, synchronousCommit: false });
    const client = await db.pool.connect();
    try {
      await client.query('BEGIN');
      await fast.enqueue('t', {}, { client });
      expect((await client.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]?.synchronous_commit).toBe('on');
      await fast.enqueue('t', {}, { client, synchronousCommit: false });
      expect((await client.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]?.synchronous_commit).toBe('off');
      await client.query('COMMIT');
      // Transaction-local: the next transaction on this connection is back to the server's setting.
      expect((await client.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]?.synchronous_commit).toBe('on');
    } finally {
      client.release();
    }
  });

  it('skiplock enqueue --async-commit, single and --stdin', async () => {
    const g = ['--database-url', db.connectionString, '--schema', db.schema];
    let result = await runCli([...g, 'enqueue', 't', '{}']);
    expect(result.code, result.stderr).toBe(0);
    expect(await modes(async () => expect((await runCli([...g, 'enqueue', 't', '{}', '--async-commit'])).code).toBe(0))).toEqual(['off']);
    expect(await modes(async () => expect((await runCli([...g, 'enqueue', 't', '{}'])).code).toBe(0))).toEqual(['on']);
    const lines = '{"task": "t"}\n{"task": "t", "dedupeKey": "cli-1"}\n';
    expect(
      await modes(async () => {
        result = await runCli([...g, 'enqueue', '--stdin', '--async-commit'], { input: lines });
        expect(result.code, result.stderr).toBe(0);
      }),
    ).toEqual(['off']); // one statement for the batch, in the CLI's transaction
  });
});
