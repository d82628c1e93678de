import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { checkout } from '../src/db/pool.js';
import { DATABASE_URL } from './helpers/db.js';

/** Blocks the event loop, so that whatever the server sends meanwhile arrives in one read. */
function busyWait(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // spin
  }
}

const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });

afterAll(async () => {
  await admin.end();
});

describe('checkout', () => {
  // A client handed over by the pool while its socket's data is being parsed (here: the end
  // of another caller's query) can receive an error in the very same read, e.g. when the
  // server shuts down. The listener must be on before that: pool.connect()'s promise would
  // attach it one microtask too late, and the error would crash the process.
  it('holds a client handed over mid-read whose backend is terminated in the same read, without an unhandled error', async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1, application_name: 'skiplock test checkout' });
    const poolErrors: Error[] = [];
    pool.on('error', (err) => poolErrors.push(err));
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => {
      uncaught.push(err);
    };
    process.on('uncaughtException', onUncaught);
    try {
      const pid = (await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      // The pool's only client runs a query for 300 ms; a checkout waits for it.
      const first = pool.query('SELECT pg_sleep(0.3)');
      const waiting = checkout(pool);
      // The server terminates that backend 100 ms after the query ends ...
      const killer = admin.query('SELECT pg_sleep(0.4), pg_terminate_backend($1)', [pid]);
      await new Promise((r) => setTimeout(r, 150));
      // ... while this process does not read: the query's end and the termination then
      // arrive together, and the client changes hands between the two messages.
      busyWait(700);
      await first;
      const held = await waiting;
      await killer;
      await new Promise((r) => setTimeout(r, 100));
      await expect(held.client.query('SELECT 1')).rejects.toThrow();
      held.release();
      expect(uncaught).toEqual([]);
      // The failed client was destroyed, not returned to the pool: a new one works.
      const again = await pool.query<{ ok: number }>('SELECT 1 AS ok');
      expect(again.rows[0]?.ok).toBe(1);
      expect(poolErrors).toEqual([]);
    } finally {
      process.off('uncaughtException', onUncaught);
      await pool.end();
    }
  });
});
