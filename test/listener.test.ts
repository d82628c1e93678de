// The LISTEN connection's start-up check (src/notifications/listener.ts): a notification sent
// through another connection must arrive, else start() fails with one line; a connection
// lost while the check waits gets the notification sent again. Real server, one schema-free
// channel per listener; 3 connections at most.
import pg from 'pg';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { Listener, type ListenerOptions } from '../src/notifications/listener.js';
import { DATABASE_URL } from './helpers/db.js';

const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
afterAll(() => pool.end());

const notify = async (channel: string, payload: string): Promise<void> => {
  await pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
};

function listener(name: string, sendCheck: ListenerOptions['sendCheck']): Listener {
  return new Listener({
    connection: { connectionString: DATABASE_URL, application_name: name },
    channel: `listener_test_${name.replace(/\W/g, '_')}`,
    logger: pino({ level: 'silent' }),
    onNotify: () => undefined,
    onReconnect: () => undefined,
    sendCheck,
    checkTimeoutMs: 1000,
    target: 'the test server',
  });
}

describe('the LISTEN check at start', () => {
  it('passes when the notification arrives', async () => {
    let sent = 0;
    const l = listener('check ok', async (channel, payload) => {
      sent++;
      await notify(channel, payload);
    });
    await l.start();
    expect(sent).toBe(1);
    expect(l.isConnected).toBe(true);
    await l.stop();
  });

  it('fails with one line when none arrives, without retrying while the connection stayed up', async () => {
    let sent = 0;
    const l = listener('check lost', async () => {
      sent++; // sent nowhere: as behind a transaction pooler, it never reaches this connection
    });
    const err = await l.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toBe(
      'the LISTEN connection (the test server) received no notification within 1 s of one sent through the pool: LISTEN needs a session of its own, which a pooler in transaction mode (PgBouncer) does not give, and the same database as the pool; point --listen-url (listenConnectionString) straight at PostgreSQL, or poll only with --no-listen (listen: false)',
    );
    expect(sent).toBe(1);
  });

  it('sends again when the connection was lost while it waited (the first notification went with it)', async () => {
    let sent = 0;
    const name = 'check reconnect';
    const l = listener(name, async (channel, payload) => {
      sent++;
      if (sent === 1) {
        // The LISTEN backend is terminated instead of notified: the first one is lost.
        const { rows } = await pool.query<{ n: number }>(
          'SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()',
          [name],
        );
        expect(rows[0]?.n).toBe(1);
        return;
      }
      await notify(channel, payload);
    });
    await l.start();
    expect(sent).toBe(2);
    await l.stop();
  });
});
