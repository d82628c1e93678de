import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Queues } from '../../src/index.js';
import {
  type BackendKillStats,
  CHAOS_TASK,
  type ChaosPayload,
  Injector,
  Sampler,
  coreViolations,
  crashAndRestart,
  ledgerFigures,
  ledgerSummary,
  maxOverlap,
  seconds,
  summary,
  terminateBackends,
  useChaosScenario,
  waitForDrain,
} from './harness.js';

/**
 * Queues as objects across worker processes: 4 processes x 6 slots drain three queues at once.
 * - `capped` (concurrency limit 4): the number of its jobs in status running, sampled from
 *   the jobs table every ~10 ms, never exceeds 4 (a SIGKILLed worker's jobs stay running
 *   until reaped, which keeps the bound).
 * - `metered` (rate limit 40 per 1 s): an AFTER INSERT trigger copies every row of the claim
 *   log (queue_starts) to an audit table; no window [t, t + 1 s) starting at a logged claim
 *   holds more than 40 starts. A second trigger on the jobs table logs every claim
 *   (status becoming running) of every queue: the claims of `metered` are exactly the starts
 *   the claim log counts, and its executions in the ledger are no more than that.
 * - `pausable` (no limit): fed in batches (bulk and single enqueues, which may be handed
 *   straight to an idle worker), paused ~1.5 s into the run and resumed ~3 s later. With T
 *   the database clock right after pause() returns: no claim or hand-off of its jobs after
 *   T (jobs.started_at and the claim log), no handler of it starting after T + one poll
 *   interval x 1.1 + 1 s (the ledger), the jobs enqueued meanwhile stay queued; after the
 *   resume every job runs.
 * Meanwhile two workers are SIGKILLed and restarted, and an injector terminates a few of the
 * workers' pool and LISTEN connections. Every job must succeed, none lost, re-runs bounded
 * by what the faults interrupted (coreViolations).
 */
const WORKERS = 4;
const CONCURRENCY = 6;
const LEASE_MS = 2000;
const POLL_MS = 500;
const KILLS = 2;

const CAPPED = 'capped';
const CAPPED_JOBS = 600;
const CAPPED_LIMIT = 4;
const METERED = 'metered';
const METERED_JOBS = 200;
const RATE_LIMIT = 40;
const RATE_WINDOW_MS = 1000;
const PAUSABLE = 'pausable';
const PAUSABLE_FIRST = 150;
const PAUSABLE_BATCHES = 9;
const PAUSABLE_BATCH = 50;
/** Of each batch, this many are enqueued one by one (eligible for hand-off), the rest in one statement. */
const PAUSABLE_SINGLES = 5;
const PAUSABLE_EVERY_MS = 400;
/**
 * Enqueued just before the pause, due 400 ms later: whatever the fleet's speed (it may have
 * drained everything due by then), the pause starts with queued jobs that become due while
 * it holds, so it is seen keeping due jobs from every claim.
 */
const PAUSABLE_DUE_IN_PAUSE = 60;
const PAUSABLE_JOBS = PAUSABLE_FIRST + PAUSABLE_BATCHES * PAUSABLE_BATCH + PAUSABLE_DUE_IN_PAUSE;
const TOTAL = CAPPED_JOBS + METERED_JOBS + PAUSABLE_JOBS;

const PAUSE_AT_MS = 1500;
const PAUSED_FOR_MS = 3000;
/** After T, how long a worker may still start a job of the paused queue it held (a missed NOTIFY is caught by the next poll). */
const PAUSE_ALLOWANCE_MS = POLL_MS * 1.1 + 1000;

const scenario = useChaosScenario('queues');

describe('chaos: queues (pause, concurrency and rate limits)', () => {
  it(`capped (${CAPPED_LIMIT} at once), metered (${RATE_LIMIT}/${RATE_WINDOW_MS} ms) and pausable queues on ${WORKERS} processes x ${CONCURRENCY}, ${KILLS} SIGKILLs and terminated backends: limits and pause hold, all finish`, async () => {
    const { db, random, seed, t0 } = await scenario.start();
    const schema = `"${db.db.schema}"`;
    const queues = new Queues({ pool: db.db.pool, schema: db.db.schema });

    // Settings first: the workers read them at start.
    await queues.setLimits(CAPPED, { concurrencyLimit: CAPPED_LIMIT }, { create: true });
    await queues.setLimits(METERED, { rateLimit: { limit: RATE_LIMIT, windowMs: RATE_WINDOW_MS } }, { create: true });

    // Audit logs written by triggers, in the claims' own transactions (a claim rolled back by
    // a terminated backend leaves no row): every row of the claim log (queue_starts), and
    // every claim or hand-off of a job (its status becoming running).
    await db.db.pool.query(`
      CREATE TABLE ${schema}.starts_audit (
        id bigserial PRIMARY KEY, queue text NOT NULL, claimed_at timestamptz NOT NULL, n integer NOT NULL,
        logged_at timestamptz NOT NULL DEFAULT clock_timestamp());
      CREATE FUNCTION ${schema}.audit_starts() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ${schema}.starts_audit (queue, claimed_at, n) VALUES (NEW.queue, NEW.claimed_at, NEW.n);
        RETURN NULL;
      END $$;
      CREATE TRIGGER audit_starts AFTER INSERT ON ${schema}.queue_starts FOR EACH ROW EXECUTE FUNCTION ${schema}.audit_starts();
      CREATE TABLE ${schema}.claims_audit (
        id bigserial PRIMARY KEY, job_id bigint NOT NULL, queue text NOT NULL, attempt integer NOT NULL,
        claimed_at timestamptz NOT NULL, worker text, handoff boolean NOT NULL,
        logged_at timestamptz NOT NULL DEFAULT clock_timestamp());
      CREATE FUNCTION ${schema}.audit_claims() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO ${schema}.claims_audit (job_id, queue, attempt, claimed_at, worker, handoff)
        VALUES (NEW.id, NEW.queue, NEW.attempts, NEW.started_at, NEW.locked_by, TG_OP = 'INSERT');
        RETURN NULL;
      END $$;
      CREATE TRIGGER audit_claims AFTER UPDATE ON ${schema}.jobs FOR EACH ROW
        WHEN (NEW.status = 'running' AND OLD.status <> 'running') EXECUTE FUNCTION ${schema}.audit_claims();
      CREATE TRIGGER audit_handoffs AFTER INSERT ON ${schema}.jobs FOR EACH ROW
        WHEN (NEW.status = 'running') EXECUTE FUNCTION ${schema}.audit_claims();`);

    const fleet = await scenario.startFleet({ workers: WORKERS, concurrency: CONCURRENCY, leaseMs: LEASE_MS, pollIntervalMs: POLL_MS });

    // The jobs table from outside: running jobs per queue (dead workers' included).
    const maxRunning = new Map<string, number>();
    const sampler = new Sampler(10, async () => {
      const rows = await db.rows<{ queue: string; n: number }>(
        `SELECT queue, count(*)::int AS n FROM ${db.jobsTable} WHERE status = 'running' GROUP BY queue`,
      );
      for (const r of rows) maxRunning.set(r.queue, Math.max(maxRunning.get(r.queue) ?? 0, r.n));
    });

    const job = (queue: string, payload: ChaosPayload) => ({ task: CHAOS_TASK, queue, payload, maxAttempts: 25 });
    const runStart = Date.now();
    await db.producer.enqueueMany(Array.from({ length: CAPPED_JOBS }, (_, i) => job(CAPPED, { ms: 20 + random.int(41), tx: i % 2 === 0 })));
    await db.producer.enqueueMany(Array.from({ length: METERED_JOBS }, (_, i) => job(METERED, { ms: 5 + random.int(11), tx: i % 2 === 0 })));
    const pausablePayload = (): ChaosPayload => ({ ms: 10 + random.int(21), tx: random.next() < 0.5 });
    await db.producer.enqueueMany(Array.from({ length: PAUSABLE_FIRST }, () => job(PAUSABLE, pausablePayload())));
    // The rest of `pausable` arrives in batches, before, during and after the pause.
    const feederErrors: string[] = [];
    const feeder = (async () => {
      for (let b = 1; b <= PAUSABLE_BATCHES; b++) {
        await delay(Math.max(0, runStart + b * PAUSABLE_EVERY_MS - Date.now()));
        await db.producer.enqueueMany(Array.from({ length: PAUSABLE_BATCH - PAUSABLE_SINGLES }, () => job(PAUSABLE, pausablePayload())));
        for (let s = 0; s < PAUSABLE_SINGLES; s++) await db.producer.enqueue(CHAOS_TASK, pausablePayload(), { queue: PAUSABLE, maxAttempts: 25 });
      }
    })().catch((err: unknown) => void feederErrors.push(err instanceof Error ? err.message : String(err)));

    const kills: Array<{ pid: number; at: number }> = [];
    const killer = new Injector('queues-kill', {
      everyMs: 1500,
      jitter: 0.3,
      maxFaults: KILLS,
      random,
      until: () => fleet.deathNotice() !== undefined,
      action: crashAndRestart(fleet, random, kills),
    });
    const stats: BackendKillStats = { pool: 0, poolBusy: 0, listener: 0, listenerReturnMs: [], listenerNotBack: [] };
    const watches: Array<Promise<void>> = [];
    const terminator = new Injector('queues-backends', {
      everyMs: 1000,
      jitter: 0.3,
      forMs: 7000,
      random,
      until: () => fleet.deathNotice() !== undefined,
      action: terminateBackends(db, fleet, random, stats, { poolKills: 1, listenerKills: 1, listenerChance: 0.5 }, watches),
    });

    // Pause; T is the database clock right after pause() returns (kept as text: microseconds).
    await delay(Math.max(0, runStart + PAUSE_AT_MS - 100 - Date.now()));
    await db.producer.enqueueMany(Array.from({ length: PAUSABLE_DUE_IN_PAUSE }, () => ({ ...job(PAUSABLE, pausablePayload()), delay: 400 })));
    await delay(Math.max(0, runStart + PAUSE_AT_MS - Date.now()));
    await queues.pause(PAUSABLE);
    const [pausedRow] = await db.rows<{ t: string }>(`SELECT clock_timestamp()::text AS t`);
    const T = pausedRow!.t;
    const pausedWall = Date.now();
    const atPause = await db.rows<{ status: string; n: number }>(
      `SELECT status, count(*)::int AS n FROM ${db.jobsTable} WHERE queue = $1 GROUP BY status`,
      [PAUSABLE],
    );
    const queuedAtPause = atPause.find((r) => r.status === 'queued')?.n ?? 0;

    // Just before the resume, one snapshot of what the pause must have kept.
    await delay(Math.max(0, pausedWall + PAUSED_FOR_MS - Date.now()));
    const [during] = await db.rows<{
      now: string;
      max_started_ms: number | null;
      claims_after: number;
      last_claim_ms: number | null;
      ledger_late: number;
      last_start_ms: number | null;
      started_after_pause: number;
      unmatched_starts: number;
      enqueued_during: number;
      enqueued_during_not_queued: number;
      queued: number;
      running: number;
      succeeded: number;
    }>(
      `SELECT clock_timestamp()::text AS now,
              (SELECT (extract(epoch FROM max(j.started_at) - $2::timestamptz) * 1000)::float8
                 FROM ${db.jobsTable} AS j WHERE j.queue = $1) AS max_started_ms,
              (SELECT count(*)::int FROM ${schema}.claims_audit AS c WHERE c.queue = $1 AND c.claimed_at > $2::timestamptz) AS claims_after,
              (SELECT (extract(epoch FROM max(c.claimed_at) - $2::timestamptz) * 1000)::float8
                 FROM ${schema}.claims_audit AS c WHERE c.queue = $1) AS last_claim_ms,
              (SELECT count(*)::int FROM ${db.ledger} AS l JOIN ${db.jobsTable} AS j ON j.id = l.job_id
                WHERE j.queue = $1 AND l.started_at > $2::timestamptz + $3::float8 * interval '1 millisecond') AS ledger_late,
              (SELECT (extract(epoch FROM max(l.started_at) - $2::timestamptz) * 1000)::float8
                 FROM ${db.ledger} AS l JOIN ${db.jobsTable} AS j ON j.id = l.job_id WHERE j.queue = $1) AS last_start_ms,
              (SELECT count(*)::int FROM ${db.ledger} AS l JOIN ${db.jobsTable} AS j ON j.id = l.job_id
                WHERE j.queue = $1 AND l.started_at > $2::timestamptz) AS started_after_pause,
              -- Every execution so far has a claim of its (job, attempt) before it, made by T.
              (SELECT count(*)::int FROM ${db.ledger} AS l JOIN ${db.jobsTable} AS j ON j.id = l.job_id
                WHERE j.queue = $1 AND NOT EXISTS (
                  SELECT 1 FROM ${schema}.claims_audit AS c
                  WHERE c.job_id = l.job_id AND c.attempt = l.attempt AND c.claimed_at <= l.started_at
                    AND c.claimed_at <= $2::timestamptz)) AS unmatched_starts,
              (SELECT count(*)::int FROM ${db.jobsTable} AS j WHERE j.queue = $1 AND j.created_at > $2::timestamptz) AS enqueued_during,
              (SELECT count(*)::int FROM ${db.jobsTable} AS j
                WHERE j.queue = $1 AND j.created_at > $2::timestamptz AND (j.status <> 'queued' OR j.attempts <> 0)) AS enqueued_during_not_queued,
              (SELECT count(*)::int FROM ${db.jobsTable} AS j WHERE j.queue = $1 AND j.status = 'queued') AS queued,
              (SELECT count(*)::int FROM ${db.jobsTable} AS j WHERE j.queue = $1 AND j.status = 'running') AS running,
              (SELECT count(*)::int FROM ${db.jobsTable} AS j WHERE j.queue = $1 AND j.status = 'succeeded') AS succeeded`,
      [PAUSABLE, T, PAUSE_ALLOWANCE_MS],
    );
    // R: the database clock just before resume() (the snapshot's), when the queue was still paused.
    const R = during!.now;
    await queues.resume(PAUSABLE);
    const resumedWall = Date.now();

    await feeder;
    expect(feederErrors).toEqual([]); // every enqueue succeeded, the queue paused or not
    await killer.done;
    let drainedAt: number;
    try {
      drainedAt = await waitForDrain(db, TOTAL, 60_000, fleet);
    } finally {
      await sampler.stop();
      await terminator.stop();
      await Promise.all(watches);
    }

    // (b) the claim log of `metered`: the fullest window [t, t + W) that starts at a logged claim.
    const [rate] = await db.rows<{
      max_window: number | null;
      max_window_clock: number | null;
      claim_delay_ms: number | null;
      logged: number;
      claim_rows: number;
      claims: number;
      mismatched: number;
      executions: number;
      span_ms: number | null;
    }>(
      `SELECT (SELECT max(w.n)::int FROM (
                 SELECT (SELECT sum(b.n) FROM ${schema}.starts_audit AS b
                         WHERE b.queue = a.queue AND b.claimed_at >= a.claimed_at
                           AND b.claimed_at < a.claimed_at + $2::float8 * interval '1 millisecond') AS n
                 FROM ${schema}.starts_audit AS a WHERE a.queue = $1) AS w) AS max_window,
              -- Information: the same by the clock at each claim's UPDATE of the jobs (the trigger's
              -- clock_timestamp) instead of the start time it logged; a few ms of jitter can put more in a window.
              (SELECT max(w.n)::int FROM (
                 SELECT (SELECT count(*) FROM ${schema}.claims_audit AS b
                         WHERE b.queue = a.queue AND b.logged_at >= a.logged_at
                           AND b.logged_at < a.logged_at + $2::float8 * interval '1 millisecond') AS n
                 FROM ${schema}.claims_audit AS a WHERE a.queue = $1) AS w) AS max_window_clock,
              (SELECT (extract(epoch FROM max(logged_at - claimed_at)) * 1000)::float8 FROM ${schema}.claims_audit WHERE queue = $1) AS claim_delay_ms,
              (SELECT coalesce(sum(n), 0)::int FROM ${schema}.starts_audit WHERE queue = $1) AS logged,
              (SELECT count(*)::int FROM ${schema}.starts_audit WHERE queue = $1) AS claim_rows,
              (SELECT count(*)::int FROM ${schema}.claims_audit WHERE queue = $1) AS claims,
              -- Per claim (its jobs' started_at is the time it logged): jobs claimed vs starts logged.
              (SELECT count(*)::int FROM (
                 SELECT c.claimed_at, c.n AS claimed, s.n AS logged
                 FROM (SELECT claimed_at, count(*) AS n FROM ${schema}.claims_audit WHERE queue = $1 GROUP BY claimed_at) AS c
                 FULL JOIN (SELECT claimed_at, sum(n) AS n FROM ${schema}.starts_audit WHERE queue = $1 GROUP BY claimed_at) AS s
                   ON s.claimed_at = c.claimed_at
                 WHERE c.n IS DISTINCT FROM s.n) AS m) AS mismatched,
              (SELECT count(*)::int FROM ${db.ledger} AS l JOIN ${db.jobsTable} AS j ON j.id = l.job_id WHERE j.queue = $1) AS executions,
              (SELECT (extract(epoch FROM max(claimed_at) - min(claimed_at)) * 1000)::float8 FROM ${schema}.starts_audit WHERE queue = $1) AS span_ms`,
      [METERED, RATE_WINDOW_MS],
    );

    // When a window is over the limit: its claim-log rows in log order (= the order the claims held
    // the queue's lock), times relative to the window's start; * marks a row logged after a row
    // whose claim began later (its count ran after a later claim's clean-up of the log).
    let overLimit = '';
    if ((rate?.max_window ?? 0) > RATE_LIMIT) {
      const rows = await db.rows<{ id: string; claimed_ms: number; logged_ms: number; n: number; inverted: boolean }>(
        `WITH w AS (
           SELECT a.claimed_at FROM ${schema}.starts_audit AS a WHERE a.queue = $1
           ORDER BY (SELECT sum(b.n) FROM ${schema}.starts_audit AS b WHERE b.queue = a.queue AND b.claimed_at >= a.claimed_at
                       AND b.claimed_at < a.claimed_at + $2::float8 * interval '1 millisecond') DESC, a.claimed_at
           LIMIT 1)
         SELECT b.id, round(extract(epoch FROM b.claimed_at - w.claimed_at) * 1000)::float8 AS claimed_ms,
                round(extract(epoch FROM b.logged_at - w.claimed_at) * 1000)::float8 AS logged_ms, b.n,
                EXISTS (SELECT 1 FROM ${schema}.starts_audit AS e WHERE e.queue = b.queue AND e.id < b.id AND e.claimed_at > b.claimed_at) AS inverted
         FROM ${schema}.starts_audit AS b, w
         WHERE b.queue = $1 AND b.claimed_at >= w.claimed_at - interval '100 ms' AND b.claimed_at < w.claimed_at + ($2::float8 + 100) * interval '1 millisecond'
         ORDER BY b.id`,
        [METERED, RATE_WINDOW_MS],
      );
      overLimit = `; claim log around the fullest window (id: claimed_at/logged_at ms, n): ${rows
        .map((r) => `${r.id}:${r.claimed_ms}/${r.logged_ms},${r.n}${r.inverted ? '*' : ''}`)
        .join(' ')}`;
    }

    // (c) after the resume: every job of `pausable` queued at the resume ran after it; hand-backs.
    const [after] = await db.rows<{
      ran_after_resume: number;
      handed_back: number;
      handoffs: number;
      handoffs_after_pause: number;
      claims_between: number;
      logged_after_pause: number;
      logged_late_ms: number | null;
    }>(
      `SELECT (SELECT count(DISTINCT l.job_id)::int FROM ${db.ledger} AS l JOIN ${db.jobsTable} AS j ON j.id = l.job_id
                WHERE j.queue = $1 AND l.started_at > $3::timestamptz) AS ran_after_resume,
              -- claims made by T whose (job, attempt) was claimed again: handed back without using up the attempt
              (SELECT count(*)::int FROM ${schema}.claims_audit AS c
                WHERE c.queue = $1 AND c.claimed_at <= $2::timestamptz AND EXISTS (
                  SELECT 1 FROM ${schema}.claims_audit AS d WHERE d.job_id = c.job_id AND d.attempt = c.attempt AND d.id > c.id)) AS handed_back,
              (SELECT count(*)::int FROM ${schema}.claims_audit AS c WHERE c.queue = $1 AND c.handoff) AS handoffs,
              (SELECT count(*)::int FROM ${schema}.claims_audit AS c WHERE c.queue = $1 AND c.handoff AND c.claimed_at > $2::timestamptz) AS handoffs_after_pause,
              (SELECT count(*)::int FROM ${schema}.claims_audit AS c
                WHERE c.queue = $1 AND c.claimed_at > $2::timestamptz AND c.claimed_at < $3::timestamptz) AS claims_between,
              -- Information: claims of it that started by T (started_at) but whose UPDATE ran after T (a claim
              -- in flight when pause() returned).
              (SELECT count(*)::int FROM ${schema}.claims_audit AS c
                WHERE c.queue = $1 AND c.claimed_at <= $2::timestamptz AND c.logged_at > $2::timestamptz) AS logged_after_pause,
              (SELECT (extract(epoch FROM max(c.logged_at) - $2::timestamptz) * 1000)::float8 FROM ${schema}.claims_audit AS c
                WHERE c.queue = $1 AND c.claimed_at <= $2::timestamptz) AS logged_late_ms`,
      [PAUSABLE, T, R],
    );

    // (a) from the ledger too (information: a lease lost while alive can overlap its re-run).
    const killedAt = new Map(kills.map((k) => [k.pid, k.at]));
    const cappedRuns = await db.rows<{ pid: number; start_ms: number; end_ms: number | null; ms: number }>(
      `SELECT l.pid, extract(epoch FROM l.started_at)::float8 * 1000 AS start_ms, extract(epoch FROM l.finished_at)::float8 * 1000 AS end_ms,
              coalesce((j.payload->>'ms')::float8, 0) AS ms
       FROM ${db.ledger} AS l JOIN ${db.jobsTable} AS j ON j.id = l.job_id WHERE j.queue = $1`,
      [CAPPED],
    );
    const openEnded = cappedRuns.filter((r) => r.end_ms === null && !killedAt.has(r.pid)).length;
    const cappedOverlap =
      maxOverlap(cappedRuns.map((r) => ({ key: 'capped', start: r.start_ms, end: r.end_ms ?? Math.min(killedAt.get(r.pid) ?? Infinity, r.start_ms + r.ms) }))).get(
        'capped',
      ) ?? 0;

    const figures = await ledgerFigures(
      db,
      kills.map((k) => k.pid),
    );
    const faults = kills.length + stats.pool + stats.listener;
    const bound = faults * CONCURRENCY;
    const { unexpected, crashes, stops } = await fleet.finish();
    const cappedMax = maxRunning.get(CAPPED) ?? 0;
    summary('queues', {
      jobs: `${TOTAL} (capped=${CAPPED_JOBS} metered=${METERED_JOBS} pausable=${PAUSABLE_JOBS})`,
      capped_max_running: `${cappedMax} (limit ${CAPPED_LIMIT}, samples=${sampler.samples}; ledger_overlap=${cappedOverlap} open_ended=${openEnded})`,
      metered_max_per_window: `${rate?.max_window ?? 0} (by_update_clock=${rate?.max_window_clock ?? 0} claim_delay_max=${Math.round(rate?.claim_delay_ms ?? 0)}ms; limit ${RATE_LIMIT}/${RATE_WINDOW_MS}ms; claims=${rate?.claims} logged=${rate?.logged} in ${rate?.claim_rows} rows, mismatched=${rate?.mismatched}, executions=${rate?.executions}, span=${seconds(rate?.span_ms ?? 0)})`,
      paused_at: `${seconds(pausedWall - runStart)} (queued=${queuedAtPause}, running_max=${maxRunning.get(PAUSABLE) ?? 0})`,
      resumed_after: seconds(resumedWall - pausedWall),
      pausable_last_claim: `${Math.round(during?.last_claim_ms ?? 0)}ms (max_started_at ${Math.round(during?.max_started_ms ?? 0)}ms; claims_after=${during?.claims_after}, handoffs=${after?.handoffs} after_pause=${after?.handoffs_after_pause}; updates_after_pause=${after?.logged_after_pause} last=${Math.round(after?.logged_late_ms ?? 0)}ms)`,
      pausable_last_start: `${Math.round(during?.last_start_ms ?? 0)}ms (allowance ${PAUSE_ALLOWANCE_MS}ms; started_after_pause=${during?.started_after_pause} late=${during?.ledger_late} unmatched=${during?.unmatched_starts})`,
      at_resume: `queued=${during?.queued} running=${during?.running} succeeded=${during?.succeeded} enqueued_during=${during?.enqueued_during} (not_queued=${during?.enqueued_during_not_queued})`,
      after_resume: `ran=${after?.ran_after_resume} handed_back=${after?.handed_back}`,
      kills: kills.length,
      terminated: `${stats.pool + stats.listener} (pool=${stats.pool} busy=${stats.poolBusy} listener=${stats.listener})`,
      ...ledgerSummary(figures, bound, { byProcess: true }),
      time: seconds(drainedAt - runStart),
      total: seconds(Date.now() - t0),
      seed,
    });

    // The faults happened.
    expect(kills.length).toBe(KILLS);
    expect(stats.pool + stats.listener).toBeGreaterThanOrEqual(3);
    expect(stats.listenerNotBack).toEqual([]);
    // (a) concurrency limit, sampled from the table; and it is used, not serialised.
    expect(sampler.errors).toEqual([]);
    expect(sampler.samples).toBeGreaterThan(50);
    expect(cappedMax).toBeLessThanOrEqual(CAPPED_LIMIT);
    expect(cappedMax).toBeGreaterThanOrEqual(2);
    // (b) rate limit on the claim log, which logs every claim of the queue.
    expect(rate).toBeDefined();
    expect(rate!.max_window, `most starts of ${METERED} in a window of the claim log${overLimit}`).toBeLessThanOrEqual(RATE_LIMIT);
    expect(rate!.max_window).toBeGreaterThanOrEqual(RATE_LIMIT / 2);
    expect(rate!.mismatched).toBe(0);
    expect(rate!.claims).toBe(rate!.logged);
    expect(rate!.executions).toBeLessThanOrEqual(rate!.logged);
    // (c) pause: no claim after T, no handler start after T + allowance, enqueues kept queued.
    expect(queuedAtPause).toBeGreaterThan(0);
    expect(during).toBeDefined();
    expect(during!.max_started_ms ?? 0).toBeLessThanOrEqual(0);
    expect(during!.claims_after).toBe(0);
    expect(during!.unmatched_starts).toBe(0);
    expect(during!.ledger_late).toBe(0);
    expect(during!.enqueued_during).toBeGreaterThan(0);
    expect(during!.enqueued_during_not_queued).toBe(0);
    expect(after!.claims_between).toBe(0);
    expect(after!.handoffs_after_pause).toBe(0);
    // After the resume they all ran (every job of the queue succeeded: coreViolations below).
    expect(after!.ran_after_resume).toBeGreaterThanOrEqual(during!.queued);
    // (d) nothing lost, one completion per job, re-runs bounded by the faults.
    expect(coreViolations(figures, TOTAL, bound)).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.filter((s) => s.code !== 0)).toEqual([]);
  });
});
