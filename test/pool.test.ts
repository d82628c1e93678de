import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { checkout, isSessionLost, retrySessionLost } from '../src/db/pool.js';
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

describe('retrySessionLost', () => {
  // A worker's start-up reads (Worker.start, JobSource.connect) go through it: a backend
  // terminated under one of them is retried on another connection instead of failing the start.
  it('runs a step again on a new connection when its backend was terminated, and never retries a wrong statement', async () => {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 1, application_name: 'skiplock test retry' });
    pool.on('error', () => undefined);
    try {
      let calls = 0;
      const errors: unknown[] = [];
      const result = await retrySessionLost(async () => {
        calls += 1;
        if (calls === 1) {
          // the first attempt's backend is terminated while its statement runs
          const { rows } = await pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          const killer = (async () => {
            await new Promise((r) => setTimeout(r, 100));
            await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
          })();
          try {
            await pool.query('SELECT pg_sleep(5)');
          } catch (err) {
            errors.push(err);
            throw err;
          } finally {
            await killer;
          }
        }
        return (await pool.query<{ ok: number }>('SELECT 1 AS ok')).rows[0]!.ok;
      });
      expect(result).toBe(1);
      expect(calls).toBe(2);
      expect(errors).toHaveLength(1);
      expect(isSessionLost(errors[0])).toBe(true);

      let wrong = 0;
      const err = await retrySessionLost(async () => {
        wrong += 1;
        await pool.query('SELEC 1');
      }).catch((e: unknown) => e);
      expect(isSessionLost(err)).toBe(false);
      expect(wrong).toBe(1);
    } finally {
      await pool.end();
    }
  });

  it('gives up after its attempts and throws the last error', async () => {
    let calls = 0;
    const lost = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    await expect(
      retrySessionLost(
        async () => {
          calls += 1;
          throw lost;
        },
        3,
        1,
      ),
    ).rejects.toBe(lost);
    expect(calls).toBe(3);
    expect(isSessionLost(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe(false);
  });
});
