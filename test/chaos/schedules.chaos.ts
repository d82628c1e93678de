import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { channelFor } from '../../src/config.js';
import { loadQueryFile } from '../../src/db/queries.js';
import { waitFor } from '../helpers/wait.js';
import {
  type BackendKillStats,
  type ChaosDb,
  Injector,
  POOL_APP,
  type Random,
  type WorkerFleet,
  clientPortsOf,
  seconds,
  serverControl,
  summary,
  terminateBackends,
  useChaosScenario,
} from './harness.js';
import { serverPort } from './harness/observe.js';

/**
 * Recurring schedules under crashes, terminated backends and a server outage. Four
 * `skiplock worker` processes (--schedule-interval 250ms: every one runs a scheduler) share
 * two schedules with catch-up "all", whose jobs run the task tasks/schedules-tick.ts:
 * - `every-second`: `* * * * * *` in UTC;
 * - `every-2s-kolkata`: `*\/2 * * * * *` in Asia/Kolkata (UTC+05:30).
 * For about a minute workers are SIGKILLed and restarted (every ~6 s: at a random moment, or
 * half the time the one whose connection is inside a scheduler transaction), their pool and
 * LISTEN connections are terminated every ~1.5 s (every other round first a connection caught
 * inside a scheduler transaction; a trigger makes those last up to 30 ms per slot), and in
 * the middle the PostgreSQL server is stopped for ~14 s and started again (a full outage:
 * slots more than 10 s old when it is back are caught up, marked late). A worker killed from
 * shortly before the stop until the server is back is restarted once it is (`skiplock
 * worker` exits when it cannot reach the server at start). Then every worker runs for a
 * settle period, the schedules are paused and every job they enqueued runs. From the jobs
 * table (succeeded jobs are kept: default retention):
 * - every slot from the schedule's first (its next_slot when defined) to its last enqueued
 *   slot has exactly one job: none missing (across the outage too), none twice;
 * - a job is late (ctx.job.schedule.late, recorded by the handler) exactly when it was
 *   enqueued more than 10 s after its slot (created_at - schedule_slot > 10 s); the late ones
 *   are slots of the outage, and there are some;
 * - no worker exits or crashes on its own.
 *
 * Exactly once by the row lock, not by the unique index: the scenario drops
 * jobs_schedule_slot_idx (the unique index on (schedule_name, schedule_slot)) first, so a
 * second job for a slot would be a row of its own. (The drop is tried with the schedulers'
 * insert, sql/queries/schedules.sql fire, in one transaction: should that statement ever
 * depend on the index again, the index stays, the run says so, and the test fails.) A
 * BEFORE INSERT trigger also logs every insert the schedulers attempt (slot_attempts),
 * committed only with the scheduler's transaction, the one that moves the schedule on:
 * attempts per (schedule, slot) must be 1 each, as must the jobs; the schedulers' own
 * "already enqueued" warnings must be 0.
 */
const WORKERS = 4;
const CONCURRENCY = 2;
const LEASE_MS = 2000;
const SCHEDULE_INTERVAL_MS = 250;
const RUN_MS = 60_000;
const OUTAGE_AT_MS = 22_000;
/** How long the server stays down (stop, wait, start): more than LATE_SLOT_MS, so the first slots of the outage are caught up late. */
const DOWN_MS = 14_000;
const KILL_EVERY_MS = 6000;
const TERMINATE_EVERY_MS = 1500;
const SETTLE_MS = 5000;
/** Killed workers are restarted only once the server is back from this long before the outage. */
const HOLD_BEFORE_MS = 4000;
const LATE_MS = 10_000;
/** The most the audit trigger sleeps per inserted slot (see below). */
const SLOT_SLEEP_MS = 30;

const TASK = 'schedules-tick';
const SCHEDULES = [
  { name: 'every-second', cron: '* * * * * *', timezone: 'UTC', periodMs: 1000 },
  { name: 'every-2s-kolkata', cron: '*/2 * * * * *', timezone: 'Asia/Kolkata', periodMs: 2000 },
] as const;

const execFileAsync = promisify(execFile);
const control = serverControl();
const scenario = useChaosScenario('schedules', {
  cleanup: () => control.ensureUp(), // after the fleet is killed, before the schema is dropped
});

afterAll(async () => {
  await control.ensureUp(); // whatever happened, leave the server running
});

/** Stops the local cluster (fast mode); serverControl() only restarts or starts it. */
async function stopServer(): Promise<void> {
  const ctl = ['/usr/bin/pg_ctlcluster', '/usr/sbin/pg_ctlcluster'].find((p) => existsSync(p)) ?? 'pg_ctlcluster';
  const version = readdirSync('/etc/postgresql').find((v) => existsSync(`/etc/postgresql/${v}/main`));
  if (version === undefined) throw new Error('no cluster under /etc/postgresql');
  await execFileAsync(ctl, ['--skip-systemctl-redirect', '--mode', 'fast', version, 'main', 'stop'], { timeout: 120_000 });
}

/**
 * Drops jobs_schedule_slot_idx if the schedulers' insert can run without it (tried in a
 * transaction, with nothing to insert); else leaves it and says why.
 */
async function dropSlotIndex(db: ChaosDb): Promise<{ dropped: boolean; why?: string }> {
  const schema = db.db.schema;
  const { fire } = loadQueryFile('schedules.sql', ['fire'] as const, schema);
  const client = await db.db.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query(`DROP INDEX "${schema}".jobs_schedule_slot_idx`);
    try {
      await client.query(fire.text, [[], [], [], [], [], channelFor(schema)]);
    } catch (err) {
      await client.query('ROLLBACK');
      const e = err as { code?: string; message?: string };
      return { dropped: false, why: `${e.code ?? '?'} ${e.message ?? String(err)}` };
    }
    await client.query('COMMIT');
    return { dropped: true };
  } finally {
    client.release();
  }
}

interface InFlight {
  pid: number;
  client_port: number;
  /** In the enqueuing statement (else between the lock and it, or locking). */
  fire: boolean;
}

/**
 * Waits up to `withinMs` for a worker connection inside a scheduler transaction (its statement
 * text names this scenario's schema, so no other session is ever picked): running lockDue or
 * fire, or idle in the transaction between them.
 */
async function schedulerInFlight(db: ChaosDb, random: Random, withinMs: number, stop: () => boolean): Promise<InFlight | undefined> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline && !stop()) {
    const rows = await db.rows<InFlight>(
      `SELECT pid, client_port, query LIKE '%unnest($1::text[], $2::timestamptz[])%' AS fire FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = $1 AND state IN ('active', 'idle in transaction')
         AND query LIKE $2 AND (query LIKE '%FOR UPDATE SKIP LOCKED%' OR query LIKE '%unnest($1::text[], $2::timestamptz[])%')`,
      [POOL_APP, `%"${db.db.schema}".schedules%`],
    );
    const hit = random.pick(rows);
    if (hit) return hit;
    await delay(5);
  }
  return undefined;
}

/**
 * Every other round on average: terminate a worker connection caught inside a scheduler
 * transaction (counted in `inScheduler` and as a busy pool kill).
 */
function terminateInScheduler(db: ChaosDb, random: Random, stats: BackendKillStats, inScheduler: { n: number }, stop: () => boolean): () => Promise<number> {
  return async () => {
    if (random.next() >= 0.5) return 0;
    const hit = await schedulerInFlight(db, random, 1500, stop);
    if (!hit) return 0;
    const [row] = await db.rows<{ ok: boolean }>('SELECT pg_terminate_backend($1) AS ok', [hit.pid]);
    if (!row?.ok) return 0;
    stats.pool += 1;
    stats.poolBusy += 1;
    inScheduler.n += 1;
    return 1;
  };
}

/** The live worker holding a connection on this client port. */
function ownerOf(fleet: WorkerFleet, clientPort: number): ReturnType<WorkerFleet['live']>[number] | undefined {
  return fleet.live().find((p) => clientPortsOf([p.pid], serverPort()).includes(clientPort));
}

describe('chaos: recurring schedules', () => {
  it(`two schedules (1 s UTC, 2 s Asia/Kolkata, catch-up all) on ${WORKERS} worker processes through SIGKILLs, terminated backends and a ${DOWN_MS / 1000} s server outage: one job per slot, none missing, late exactly when enqueued > 10 s after the slot`, async (ctx) => {
    if (control.unavailable !== undefined) {
      summary('schedules', { skipped: JSON.stringify(control.unavailable) });
      ctx.skip();
      return;
    }
    const { db, random, seed, t0 } = await scenario.start();
    const schema = `"${db.db.schema}"`;
    const runsTable = db.ledger;

    // What the handler saw of each execution (the ledger, one row each), and every insert the schedulers attempted.
    await db.db.pool.query(`
      ALTER TABLE ${runsTable} ADD COLUMN schedule_name text, ADD COLUMN slot timestamptz, ADD COLUMN late boolean;
      CREATE TABLE ${schema}.slot_attempts (
        id bigserial PRIMARY KEY, schedule_name text NOT NULL, schedule_slot timestamptz NOT NULL,
        txid bigint NOT NULL DEFAULT txid_current(), backend integer NOT NULL DEFAULT pg_backend_pid(),
        at timestamptz NOT NULL DEFAULT clock_timestamp());
      CREATE FUNCTION ${schema}.log_slot_attempt() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ${schema}.slot_attempts (schedule_name, schedule_slot) VALUES (NEW.schedule_name, NEW.schedule_slot);
        -- Up to 30 ms per slot: the schedulers' transactions last long enough for kills and
        -- terminated backends to land inside them, and for the others to find rows locked.
        PERFORM pg_sleep(random() * ${SLOT_SLEEP_MS / 1000});
        RETURN NEW;
      END $$;
      -- BEFORE: fires for every row the INSERT tries, also one ON CONFLICT DO NOTHING then skips.
      CREATE TRIGGER log_slot_attempt BEFORE INSERT ON ${schema}.jobs FOR EACH ROW
        WHEN (NEW.schedule_name IS NOT NULL) EXECUTE FUNCTION ${schema}.log_slot_attempt();`);
    const index = await dropSlotIndex(db);
    expect(index, 'the schedulers\' insert must not need the unique index').toEqual({ dropped: true });

    const f = await scenario.startFleet({
      workers: WORKERS,
      concurrency: CONCURRENCY,
      leaseMs: LEASE_MS,
      extraArgs: ['--schedule-interval', String(SCHEDULE_INTERVAL_MS)],
    });

    // The schedules, defined once the workers run: each starts at its first slot after now.
    const firstSlot = new Map<string, number>();
    for (const s of SCHEDULES) {
      const info = await db.producer.schedule(s.name, s.cron, TASK, { schedule: s.name }, { timezone: s.timezone, catchUp: 'all', maxCatchUp: 100 });
      firstSlot.set(s.name, info.nextSlot!.getTime());
    }
    const runStart = Date.now();

    // serverDown: no termination rounds; holdRespawns: a killed worker's slot waits for the server (held).
    let serverDown = false;
    let holdRespawns = false;
    const held: number[] = [];
    let killing: Promise<number> = Promise.resolve(0);
    const kills: Array<{ pid: number; at: number; inScheduler: boolean }> = [];
    const kill = async (): Promise<number> => {
      let victim = random.pick(f.live());
      let inScheduler = false;
      // Every other kill on average: the process whose connection is inside a scheduler transaction.
      if (!serverDown && random.next() < 0.5) {
        const hit = await schedulerInFlight(db, random, 2000, () => serverDown).catch(() => undefined);
        const owner = hit && ownerOf(f, hit.client_port);
        if (owner) {
          victim = owner;
          inScheduler = true;
        }
      }
      if (!victim) return 0;
      await f.kill(victim, 'SIGKILL');
      kills.push({ pid: victim.pid, at: Date.now(), inScheduler });
      if (holdRespawns) held.push(victim.slot);
      else await f.spawn(victim.slot);
      return 1;
    };
    const killer = new Injector('schedules-kill', {
      everyMs: KILL_EVERY_MS,
      jitter: 0.6,
      forMs: RUN_MS,
      random,
      until: () => f.deathNotice() !== undefined,
      action: () => (killing = kill()),
    });
    const stats: BackendKillStats = { pool: 0, poolBusy: 0, listener: 0, listenerReturnMs: [], listenerNotBack: [] };
    const inScheduler = { n: 0 };
    const watches: Array<Promise<void>> = [];
    const targeted = terminateInScheduler(db, random, stats, inScheduler, () => serverDown);
    // A listener terminated just before the outage comes back only after it: watched for 60 s.
    const anyBackend = terminateBackends(db, f, random, stats, { poolKills: 2, listenerKills: 1, listenerChance: 0.4, listenerBackWithinMs: 60_000 }, watches);
    const terminator = new Injector('schedules-backends', {
      everyMs: TERMINATE_EVERY_MS,
      jitter: 0.4,
      forMs: RUN_MS,
      random,
      until: () => f.deathNotice() !== undefined,
      action: async () => (serverDown ? 0 : (await targeted()) + (serverDown ? 0 : await anyBackend())),
    });

    // The outage. Restarts are held from a little before it (a worker that starts while the
    // server is away exits), and every live worker is ready when the server goes. The
    // database clock is read just before the stop and once it answers again.
    await delay(Math.max(0, runStart + OUTAGE_AT_MS - HOLD_BEFORE_MS - Date.now()));
    holdRespawns = true;
    await killing;
    for (const p of f.live()) await f.ready(p, 30_000);
    await delay(Math.max(0, runStart + OUTAGE_AT_MS - Date.now()));
    serverDown = true;
    const [before] = await db.rows<{ now: string }>(`SELECT clock_timestamp()::text AS now`);
    const stoppedAt = Date.now();
    await stopServer();
    await delay(DOWN_MS);
    await control.ensureUp();
    const [after] = await waitFor(() => db.rows<{ now: string }>(`SELECT clock_timestamp()::text AS now`), 60_000, 'the server to answer again', {
      intervalMs: 100,
      retryOnError: true,
    });
    const backAt = Date.now();
    serverDown = false;
    const outageMs = backAt - stoppedAt;
    await killing;
    holdRespawns = false;
    const heldDuringOutage = held.length;
    for (const slot of held.splice(0)) await f.spawn(slot);

    // Until the end of the run the faults go on; then every worker runs for a settle period.
    await delay(Math.max(0, runStart + RUN_MS - Date.now()));
    await killer.stop();
    await terminator.stop();
    await Promise.all(watches);
    const abortIf = (): string | undefined => f.deathNotice();
    for (const p of f.live()) await f.ready(p, 60_000);
    expect(f.live()).toHaveLength(WORKERS);
    await delay(SETTLE_MS);
    for (const s of SCHEDULES) await db.producer.pauseSchedule(s.name);
    const pausedAt = Date.now();

    // Every job the schedules enqueued runs (those that failed while the server was away are retried).
    await waitFor(
      async () => (await db.count(`SELECT count(*) AS n FROM ${db.jobsTable} WHERE schedule_name IS NOT NULL AND status <> 'succeeded'`)) === 0,
      90_000,
      'every scheduled job to succeed',
      { intervalMs: 200, retryOnError: true, abortIf },
    );

    // Per schedule: its slots (epoch ms) with the jobs and the attempted inserts of each.
    const perSchedule = await Promise.all(
      SCHEDULES.map(async (s) => {
        const slots = await db.rows<{ slot_ms: number; jobs: number; attempts: number }>(
          `SELECT coalesce(j.slot_ms, a.slot_ms) AS slot_ms, coalesce(j.n, 0) AS jobs, coalesce(a.n, 0) AS attempts
           FROM (SELECT extract(epoch FROM schedule_slot)::float8 * 1000 AS slot_ms, count(*)::int AS n FROM ${db.jobsTable}
                 WHERE schedule_name = $1 GROUP BY 1) AS j
           FULL JOIN (SELECT extract(epoch FROM schedule_slot)::float8 * 1000 AS slot_ms, count(*)::int AS n FROM ${schema}.slot_attempts
                 WHERE schedule_name = $1 GROUP BY 1) AS a ON a.slot_ms = j.slot_ms
           ORDER BY 1`,
          [s.name],
        );
        const [row] = await db.rows<{ last_ms: number | null; next_ms: number; paused: boolean }>(
          `SELECT extract(epoch FROM last_slot)::float8 * 1000 AS last_ms, extract(epoch FROM next_slot)::float8 * 1000 AS next_ms, paused
           FROM ${schema}.schedules WHERE name = $1`,
          [s.name],
        );
        const first = firstSlot.get(s.name)!;
        const present = new Set(slots.filter((r) => r.jobs > 0).map((r) => r.slot_ms));
        const last = Math.max(...present);
        // Every slot of the expression from the first to the last: whole seconds (even ones for */2; the zone's offset is whole minutes).
        const expected: number[] = [];
        for (let t = first; t <= last; t += s.periodMs) expected.push(t);
        const missing = expected.filter((t) => !present.has(t));
        const unexpected = [...present].filter((t) => (t - first) % s.periodMs !== 0 || t < first);
        return {
          s,
          first,
          last,
          expected: expected.length,
          jobs: slots.reduce((n, r) => n + r.jobs, 0),
          duplicates: slots.filter((r) => r.jobs > 1).map((r) => `${new Date(r.slot_ms).toISOString()} x${r.jobs}`),
          attemptDuplicates: slots.filter((r) => r.attempts > 1).map((r) => `${new Date(r.slot_ms).toISOString()} x${r.attempts}`),
          attemptsWithoutJob: slots.filter((r) => r.jobs === 0).length,
          missing: missing.map((t) => new Date(t).toISOString()),
          unexpected: unexpected.map((t) => new Date(t).toISOString()),
          schedule: row,
        };
      }),
    );

    // Late: as the handler saw it (ctx.job.schedule.late) against created_at - schedule_slot > 10 s.
    const [late] = await db.rows<{
      jobs: number;
      late: number;
      in_outage: number;
      late_in_outage: number;
      late_outside: number;
      mismatched: number;
      runs: number;
      wrong_slot: number;
      unrun: number;
      max_delay_ms: number;
      max_on_time_delay_ms: number | null;
      min_late_delay_ms: number | null;
    }>(
      `WITH jr AS (
         SELECT j.id, j.schedule_name, j.schedule_slot, j.created_at,
                (j.created_at - j.schedule_slot > interval '${LATE_MS / 1000} seconds') AS overdue,
                (j.schedule_slot > $1::timestamptz AND j.schedule_slot <= $2::timestamptz) AS in_outage
         FROM ${db.jobsTable} AS j WHERE j.schedule_name IS NOT NULL)
       SELECT (SELECT count(*)::int FROM jr) AS jobs,
              (SELECT count(*)::int FROM jr WHERE overdue) AS late,
              (SELECT count(*)::int FROM jr WHERE in_outage) AS in_outage,
              (SELECT count(*)::int FROM jr WHERE overdue AND in_outage) AS late_in_outage,
              -- a slot can only be late if no scheduler could enqueue it for 10 s: the outage (its last second before the stop included)
              (SELECT count(*)::int FROM jr WHERE overdue AND NOT (jr.schedule_slot > $1::timestamptz - interval '1 second' AND jr.schedule_slot <= $2::timestamptz)) AS late_outside,
              (SELECT count(*)::int FROM ${runsTable} AS r JOIN jr ON jr.id = r.job_id WHERE r.late IS DISTINCT FROM jr.overdue) AS mismatched,
              (SELECT count(*)::int FROM ${runsTable}) AS runs,
              (SELECT count(*)::int FROM ${runsTable} AS r JOIN jr ON jr.id = r.job_id
                WHERE r.schedule_name IS DISTINCT FROM jr.schedule_name OR r.slot IS DISTINCT FROM jr.schedule_slot) AS wrong_slot,
              (SELECT count(*)::int FROM jr WHERE NOT EXISTS (SELECT 1 FROM ${runsTable} AS r WHERE r.job_id = jr.id)) AS unrun,
              (SELECT (extract(epoch FROM max(created_at - schedule_slot)) * 1000)::float8 FROM jr) AS max_delay_ms,
              (SELECT (extract(epoch FROM max(created_at - schedule_slot)) * 1000)::float8 FROM jr WHERE NOT overdue) AS max_on_time_delay_ms,
              (SELECT (extract(epoch FROM min(created_at - schedule_slot)) * 1000)::float8 FROM jr WHERE overdue) AS min_late_delay_ms`,
      [before!.now, after!.now],
    );
    const mismatches = await db.rows<{ job_id: string; slot: string; created: string; late: boolean }>(
      `SELECT r.job_id, j.schedule_slot::text AS slot, j.created_at::text AS created, r.late
       FROM ${runsTable} AS r JOIN ${db.jobsTable} AS j ON j.id = r.job_id
       WHERE r.late IS DISTINCT FROM (j.created_at - j.schedule_slot > interval '${LATE_MS / 1000} seconds') LIMIT 10`,
    );

    // Which scheduler transactions enqueued the slots: spread over the workers' connections.
    const [fireTx] = await db.rows<{ backends: number; txs: number; largest: number }>(
      `SELECT count(DISTINCT backend)::int AS backends, count(DISTINCT txid)::int AS txs,
              (SELECT max(n)::int FROM (SELECT count(*) AS n FROM ${schema}.slot_attempts GROUP BY txid) AS t) AS largest
       FROM ${schema}.slot_attempts`,
    );
    const logs = f.all.flatMap((p) => f.logs(p));
    const alreadyEnqueued = logs.filter((l) => l.msg === 'schedule slots were already enqueued; not enqueued again').length;
    const roundFailures = logs.filter((l) => l.msg === 'scheduler round failed; will retry').length;
    const { unexpected: unexpectedExits, crashes, stops } = await f.finish();

    const fmt = (p: (typeof perSchedule)[number]): string =>
      `${p.expected} (jobs=${p.jobs} duplicates=${p.duplicates.length} attempt_duplicates=${p.attemptDuplicates.length} missing=${p.missing.length})`;
    summary('schedules', {
      workers: `${WORKERS}x${CONCURRENCY} (scheduler every ${SCHEDULE_INTERVAL_MS}ms)`,
      unique_index: index.dropped ? 'dropped' : `kept (fire needs it: ${index.why?.split(' ')[0]}; inserts attempted logged by trigger)`,
      fired_by: `${fireTx?.backends} backends in ${fireTx?.txs} transactions (largest ${fireTx?.largest} slots)`,
      ...Object.fromEntries(perSchedule.map((p) => [`slots_${p.s.name}`, fmt(p)])),
      duplicates: perSchedule.reduce((n, p) => n + p.duplicates.length + p.attemptDuplicates.length, 0),
      missing: perSchedule.reduce((n, p) => n + p.missing.length, 0),
      late: `${late?.late} (in_outage=${late?.late_in_outage} outside=${late?.late_outside}; outage_slots=${late?.in_outage}; handler_mismatch=${late?.mismatched}; min_late=${seconds(late?.min_late_delay_ms ?? 0)} max_on_time=${seconds(late?.max_on_time_delay_ms ?? 0)})`,
      outage: `${seconds(outageMs)} (down ${seconds(DOWN_MS)} at ${seconds(stoppedAt - runStart)})`,
      kills: `${kills.length} (in_scheduler_tx=${kills.filter((k) => k.inScheduler).length} restart_held_for_outage=${heldDuringOutage})`,
      terminated: `${stats.pool + stats.listener} (pool=${stats.pool} busy=${stats.poolBusy} in_scheduler_tx=${inScheduler.n} listener=${stats.listener})`,
      runs: `${late?.runs} for ${late?.jobs} jobs`,
      scheduler_round_failures: roundFailures,
      already_enqueued_warnings: alreadyEnqueued,
      crashes: unexpectedExits.length + crashes.length,
      run: seconds(pausedAt - runStart),
      total: seconds(Date.now() - t0),
      seed,
    });

    // The faults happened.
    expect(killer.errors).toEqual([]);
    expect(kills.length).toBeGreaterThanOrEqual(3);
    expect(stats.pool + stats.listener).toBeGreaterThanOrEqual(10);
    expect(stats.listenerNotBack).toEqual([]);
    expect(outageMs).toBeGreaterThan(LATE_MS);
    // One job per slot, every slot from the first to the last, by the jobs and by the attempted inserts.
    for (const p of perSchedule) {
      expect(p.schedule?.paused).toBe(true);
      expect(p.duplicates, `${p.s.name}: slots with more than one job`).toEqual([]);
      expect(p.attemptDuplicates, `${p.s.name}: slots inserted by more than one committed scheduler transaction`).toEqual([]);
      expect(p.attemptsWithoutJob).toBe(0);
      expect(p.missing, `${p.s.name}: slots without a job`).toEqual([]);
      expect(p.unexpected, `${p.s.name}: jobs for times that are no slot`).toEqual([]);
      expect(p.jobs).toBe(p.expected);
      // The run covered the minute, and the schedule stands right after its last slot.
      expect(p.expected).toBeGreaterThanOrEqual(((pausedAt - runStart) / p.s.periodMs) * 0.9);
      expect(p.schedule?.last_ms).toBe(p.last);
      expect(p.schedule?.next_ms).toBe(p.last + p.s.periodMs);
    }
    expect(alreadyEnqueued).toBe(0);
    // Late exactly when enqueued more than 10 s after the slot; those are slots of the outage.
    expect(late).toBeDefined();
    expect(late!.unrun).toBe(0);
    expect(late!.wrong_slot).toBe(0);
    expect(mismatches, 'executions whose ctx.job.schedule.late disagrees with created_at - schedule_slot > 10 s').toEqual([]);
    expect(late!.mismatched).toBe(0);
    expect(late!.late).toBeGreaterThan(0);
    expect(late!.late_outside).toBe(0);
    // No worker exited or crashed on its own; all stopped cleanly.
    expect(unexpectedExits).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.filter((s) => s.code !== 0)).toEqual([]);
  });
});
