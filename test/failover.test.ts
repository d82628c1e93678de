/**
 * Standby failover (issue 15): a multi-host connection string
 * (postgres://...@127.0.0.1:5441,127.0.0.1:5442/postgres?target_session_attrs=read-write)
 * used by worker processes and a producer while the primary is killed and the synchronous
 * standby promoted. Everything finds the new primary by itself; acknowledged enqueues survive;
 * only jobs running at the kill run again. The primary and standby are private clusters built
 * for the test (test/helpers/standby.ts); the shared server is not used.
 */
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { parseHostList } from '../src/db/hosts.js';
import { Producer, SkiplockError, createPool, migrate } from '../src/index.js';
import { runCli, startCli } from './helpers/cli.js';
import { FIXTURE_TASKS } from './helpers/ledger.js';
import { freePort } from './helpers/measure.js';
import { type ReplicaPair, createReplicaPair, standbyUnavailable } from './helpers/standby.js';
import { waitFor } from './helpers/wait.js';

describe('multi-host connection strings', () => {
  it('parses the URL and key=value forms', () => {
    const url = parseHostList('postgres://u:p%40ss@a:5441,[::1]:5442,c/db?target_session_attrs=read-write&sslmode=disable');
    expect(url?.hosts).toEqual([
      { host: 'a', port: 5441 },
      { host: '::1', port: 5442 },
      { host: 'c', port: 5432 },
    ]);
    expect(url?.targetSessionAttrs).toBe('read-write');
    expect(url?.label).toBe('a:5441, [::1]:5442, c:5432');
    expect(url?.password).toBe('p@ss');
    expect(url?.connectionStringFor({ host: '::1', port: 5442 })).toBe('postgres://u:p%40ss@[::1]:5442/db?sslmode=disable');

    const kv = parseHostList("host=a,b port=5441,5442 user=u password='x y' dbname=d target_session_attrs=primary application_name=z");
    expect(kv?.hosts).toEqual([
      { host: 'a', port: 5441 },
      { host: 'b', port: 5442 },
    ]);
    expect(kv?.targetSessionAttrs).toBe('primary');
    expect(kv?.connectionStringFor({ host: 'b', port: 5442 })).toBe('postgres://u:x%20y@b:5442/d?application_name=z');
    expect(parseHostList('host=a,b port=5441 dbname=d')?.hosts.map((h) => h.port)).toEqual([5441, 5441]);
    expect(parseHostList('postgres://u@a:5441,b:5442/db')?.targetSessionAttrs).toBe('any'); // libpq's default

    // One host: pg parses it as always.
    expect(parseHostList('postgres://u@a:5441/db?target_session_attrs=read-write')).toBeUndefined();
    expect(parseHostList('postgres://u@a:5441/db?options=-c%20search_path%3Da,b')).toBeUndefined();
    expect(() => parseHostList('postgres://u@a:x,b/db')).toThrow('invalid port "x" in the connection string');
    expect(() => parseHostList('postgres://u@a,b/db?target_session_attrs=standby')).toThrow(/target_session_attrs=standby is not supported/);
  });

  it('an unreachable list fails with one line naming every host, from the CLI (exit 1) and the library, never the password', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    const url = `postgres://someone:s3cret-pw@127.0.0.1:${p1},127.0.0.1:${p2}/test?target_session_attrs=read-write`;
    const expected = `cannot connect to any of 127.0.0.1:${p1}, 127.0.0.1:${p2} (connection refused)`;

    const cli = await runCli(['migrate', '--database-url', url]);
    expect(cli.code).toBe(1);
    expect(cli.stdout).toBe('');
    expect(cli.stderr).toBe(`skiplock: ${expected}\n`);

    const pool = createPool({ connectionString: url });
    try {
      const err = await migrate(pool, 'skiplock').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SkiplockError);
      expect((err as Error).message).toBe(expected);
    } finally {
      await pool.end();
    }
    const producer = new Producer({ connectionString: url, schema: 'skiplock' });
    try {
      const err = await producer.enqueue('hello', {}).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).toBe(expected);
      expect(err?.message).not.toContain('s3cret');
    } finally {
      await producer.close();
    }
  });
});

const PRIMARY_PORT = 5441;
const STANDBY_PORT = 5442;
const WORKERS = 2;
const CONCURRENCY = 4;
const BACKLOG = 1200;
const JOB_MS = 20;
const SCHEMA = 'skiplock_failover';
const KILL_AT = 0.3; // fraction of the backlog done when the primary is killed
/** Processing must resume within this long of the promotion. */
const RESUME_WITHIN_MS = 10_000;

describe('standby failover', () => {
  let pair: ReplicaPair | undefined;
  const workers: Array<ReturnType<typeof startCli>> = [];
  const closers: Array<() => Promise<void>> = [];

  afterAll(async () => {
    for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.done));
    for (const close of closers.splice(0)) await close().catch(() => undefined);
    await pair?.destroy();
  }, 60_000);

  it(
    'workers and a producer on a multi-host URL follow a promoted synchronous standby: no acknowledged enqueue lost, only interrupted jobs re-run',
    async (ctx) => {
      const unavailable = await standbyUnavailable();
      if (unavailable !== undefined) {
        process.stdout.write(`[failover] skipped: ${unavailable}\n`);
        ctx.skip();
        return;
      }
      const t0 = Date.now();
      pair = await createReplicaPair(PRIMARY_PORT, STANDBY_PORT);
      const setupMs = Date.now() - t0;
      const url = `postgres://postgres@127.0.0.1:${PRIMARY_PORT},127.0.0.1:${STANDBY_PORT}/postgres?target_session_attrs=read-write`;

      // The schema is migrated through the multi-host URL, by the CLI.
      const migrated = await runCli(['migrate', '--database-url', url, '--schema', SCHEMA]);
      expect(migrated.stderr).toBe('');
      expect(migrated.code).toBe(0);

      // New connections go to the writable server, whatever the order of the list.
      const serverPort = async (connectionString: string): Promise<number> => {
        const probe = createPool({ connectionString, max: 1 });
        try {
          return Number((await probe.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]?.port);
        } finally {
          await probe.end();
        }
      };
      const standbyFirst = `postgres://postgres@127.0.0.1:${STANDBY_PORT},127.0.0.1:${PRIMARY_PORT}/postgres`;
      expect(await serverPort(`${standbyFirst}?target_session_attrs=read-write`)).toBe(PRIMARY_PORT);
      expect(await serverPort(`${standbyFirst}?target_session_attrs=primary`)).toBe(PRIMARY_PORT);
      expect(await serverPort(standbyFirst)).toBe(STANDBY_PORT); // "any", libpq's default: the first that answers

      const pool = createPool({ connectionString: url, max: 2 });
      closers.push(() => pool.end());
      const ledger = `${SCHEMA}.ledger`;
      await pool.query(`CREATE TABLE ${ledger} (job_id bigint NOT NULL, attempt int NOT NULL, pid int NOT NULL, started_at timestamptz NOT NULL DEFAULT clock_timestamp())`);
      const producer = new Producer({ connectionString: url, schema: SCHEMA, max: 3 });
      closers.push(() => producer.close());

      // Acknowledged enqueues: id -> sequence number. A failed call is retried with the same
      // number; one that failed yet committed (the kill came between commit and answer) is
      // "in doubt": its row exists without an acknowledged id.
      const acked = new Map<string, number>();
      const failedSeqs = new Set<number>();
      const ackTimes: number[] = [];
      const backlog = await producer.enqueueMany(Array.from({ length: BACKLOG }, (_, i) => ({ task: 'ledger', payload: { ms: JOB_MS, seq: i } })));
      backlog.ids.forEach((id, i) => acked.set(id, i));

      for (let i = 1; i <= WORKERS; i++) {
        workers.push(
          startCli(
            [
              'worker',
              ...['--database-url', url, '--schema', SCHEMA, '--tasks', FIXTURE_TASKS, '--worker-id', `failover-w${i}`],
              ...['--concurrency', String(CONCURRENCY), '--prefetch', String(CONCURRENCY), '--lease', '4s'],
              ...['--poll-interval', '500ms', '--reaper-interval', '500ms', '--metrics-port', '0', '--log-level', 'warn'],
            ],
            { env: { LEDGER_TABLE: ledger } },
          ),
        );
      }
      const deathNotice = (): string | undefined => {
        const dead = workers.find((w) => w.exitCode !== null || w.signalCode !== null);
        return dead && `a worker exited (${dead.exitCode ?? dead.signalCode}): ${dead.output().stderr.slice(-2000)}`;
      };

      let producing = true;
      let enqueueFailures = 0;
      let seq = BACKLOG;
      const producerLoop = (async () => {
        while (producing) {
          const n = seq++;
          for (;;) {
            try {
              const { id } = await producer.enqueue('ledger', { ms: JOB_MS, seq: n });
              acked.set(id, n);
              ackTimes.push(Date.now());
              break;
            } catch {
              enqueueFailures++;
              failedSeqs.add(n);
              await delay(50);
            }
          }
          await delay(10);
        }
      })();

      const succeeded = async (): Promise<number> =>
        Number((await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${SCHEMA}.jobs WHERE status = 'succeeded'`)).rows[0]?.n);
      await waitFor(async () => (await succeeded()) >= BACKLOG * KILL_AT, 60_000, `${KILL_AT * 100}% of the backlog to succeed`, {
        intervalMs: 50,
        abortIf: deathNotice,
      });
      const [atKill] = (
        await pool.query<{ running: string; succeeded: string }>(
          `SELECT count(*) FILTER (WHERE status = 'running') AS running, count(*) FILTER (WHERE status = 'succeeded') AS succeeded FROM ${SCHEMA}.jobs`,
        )
      ).rows;

      const killAt = Date.now();
      await pair.killPrimary();
      const killedAt = Date.now();
      await pair.promoteStandby();
      const promotedAt = Date.now();
      // Watched from now on: both workers LISTEN on the new primary again.
      const direct = new pg.Pool({ connectionString: pair.urlOf(STANDBY_PORT), max: 2 });
      closers.push(() => direct.end());
      const rows = async <R extends pg.QueryResultRow>(text: string, values: unknown[] = []): Promise<R[]> => (await direct.query<R>(text, values)).rows;
      const listening = waitFor(
        async () => {
          const [r] = await rows<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name LIKE 'skiplock listener failover-w%'`);
          return Number(r?.n) === WORKERS ? Date.now() : undefined;
        },
        30_000,
        'both listeners to reconnect to the new primary',
        { intervalMs: 50 },
      );

      // The producer goes on for a while on the new primary, then stops.
      await waitFor(async () => ackTimes.some((t) => t > promotedAt), 30_000, 'an enqueue acknowledged by the new primary', { abortIf: deathNotice });
      await delay(2000);
      producing = false;
      await producerLoop;

      // Checks run on the new primary itself.
      const drainedAt = await waitFor(
        async () => {
          const [r] = await rows<{ open: string }>(`SELECT count(*) AS open FROM ${SCHEMA}.jobs WHERE status <> 'succeeded'`);
          return Number(r?.open) === 0 ? Date.now() : undefined;
        },
        60_000,
        'every job to succeed on the new primary',
        { intervalMs: 100, abortIf: deathNotice },
      );

      const listeners = await listening;

      // Every acknowledged enqueue is on the new primary, succeeded; every succeeded row is
      // acknowledged or in doubt.
      const jobs = await rows<{ id: string; status: string; seq: number; finished_ms: number }>(
        `SELECT id::text, status, (payload->>'seq')::int AS seq, extract(epoch FROM finished_at) * 1000 AS finished_ms FROM ${SCHEMA}.jobs`,
      );
      const byId = new Map(jobs.map((j) => [j.id, j]));
      const lost = [...acked.keys()].filter((id) => byId.get(id)?.status !== 'succeeded');
      const unacknowledged = jobs.filter((j) => !acked.has(j.id));
      const inDoubt = unacknowledged.filter((j) => failedSeqs.has(j.seq));
      expect(lost).toEqual([]);
      expect(unacknowledged).toEqual(inDoubt);
      expect(jobs.every((j) => j.status === 'succeeded')).toBe(true);
      expect(new Set(jobs.map((j) => j.id))).toEqual(new Set([...acked.keys(), ...inDoubt.map((j) => j.id)]));

      // Runs per job (the ledger): a job ran more than once only when it was running at the kill.
      const multi = await rows<{ job_id: string; starts: number[] }>(
        `SELECT job_id::text, array_agg(extract(epoch FROM started_at) * 1000 ORDER BY started_at) AS starts
           FROM ${ledger} GROUP BY job_id HAVING count(*) > 1`,
      );
      const ledgerJobs = Number((await rows<{ n: string }>(`SELECT count(DISTINCT job_id) AS n FROM ${ledger}`))[0]?.n);
      // Running at the kill: an earlier run started before it, at most 2 s before (a run takes JOB_MS).
      const interrupted = (starts: number[]): boolean => starts.slice(0, -1).every((s) => s <= killedAt && s >= killAt - 2000);
      const reRuns = multi.filter((m) => interrupted(m.starts.map(Number))).reduce((sum, m) => sum + m.starts.length - 1, 0);
      const duplicates = multi.filter((m) => !interrupted(m.starts.map(Number)));
      expect(ledgerJobs).toBe(jobs.length);
      expect(duplicates).toEqual([]);
      expect(reRuns).toBeLessThanOrEqual(WORKERS * CONCURRENCY);

      // Processing resumed by itself: the first job finished on the new primary (nothing
      // could finish anywhere between the kill and the promotion).
      const firstDone = Math.min(...jobs.map((j) => Number(j.finished_ms)).filter((t) => t > killedAt));
      // The producer's longest wait for an acknowledgement around the failover.
      const around = [Math.max(...ackTimes.filter((t) => t <= killAt)), ...ackTimes.filter((t) => t > killAt)].sort((a, b) => a - b);
      const producerBlocked = Math.max(...around.slice(1).map((t, i) => t - (around[i] ?? t)));
      expect(firstDone - promotedAt).toBeLessThan(RESUME_WITHIN_MS);
      expect(deathNotice()).toBeUndefined();
      if (process.env.FAILOVER_DEBUG) for (const w of workers) process.stdout.write(`--- worker ${w.pid}\n${w.output().stdout}${w.output().stderr}\n`);

      const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
      const figures = {
        setup: s(setupMs),
        jobs: jobs.length,
        acknowledged_enqueues: acked.size,
        claimed_at_kill: Number(atKill?.running),
        succeeded_at_kill: Number(atKill?.succeeded),
        kill_took: s(killedAt - killAt),
        promote_took: s(promotedAt - killedAt),
        outage_kill_to_first_job_done: s(firstDone - killAt),
        promote_to_first_job_done: s(firstDone - promotedAt),
        producer_blocked: s(producerBlocked),
        enqueue_failures_retried: enqueueFailures,
        in_doubt_enqueues_committed: inDoubt.length,
        listeners_back_after_promote: s(listeners - promotedAt),
        drained_after_promote: s(drainedAt - promotedAt),
        jobs_lost: lost.length,
        duplicates: duplicates.length,
        re_runs: reRuns,
        total: s(Date.now() - t0),
      };
      process.stdout.write(`[failover] ${Object.entries(figures).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);

      // The workers rode it out: they still stop cleanly.
      for (const w of workers) w.kill('SIGTERM');
      const stops = await Promise.all(workers.map((w) => w.done));
      expect(stops.map((r) => r.code)).toEqual(workers.map(() => 0));
    },
    180_000,
  );
});
