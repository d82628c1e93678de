import { describe, expect, it } from 'vitest';
import {
  CHAOS_TASK,
  Injector,
  Sampler,
  coreViolations,
  crashAndRestart,
  ledgerFigures,
  maxOverlap,
  rescueTimes,
  seconds,
  summary,
  useChaosScenario,
  waitForDrain,
} from './harness.js';

/**
 * Concurrency keys across worker processes: 20 keys with a limit of 3 each, drained by 4
 * processes x 8 slots; the last third of the jobs belong to 5 of the keys, so at the end
 * the limit, not the slots, is what holds those keys back.
 * Jobs sleep tens of ms; the ledger records each execution's start and end by the database
 * clock. Per key, no more than 3 executions may overlap, and the limit must be reached (not
 * serialised); overall, far more than 3 run at once. Meanwhile the number of running jobs per
 * key is sampled from the jobs table. Two workers are SIGKILLed mid-run: the jobs they held
 * keep their keys' slots until their leases expire and the reaper gives the slots back, and
 * every job must still finish.
 */
const KEYS = 20;
const LIMIT = 3;
const TOTAL = 2400;
const HOT = 5;
const WORKERS = 4;
const CONCURRENCY = 8;
const LEASE_MS = 2000;
const KILLS = 2;

const scenario = useChaosScenario('keys', { fleet: { workers: WORKERS, concurrency: CONCURRENCY, leaseMs: LEASE_MS } });

describe('chaos: concurrency keys', () => {
  it(`${KEYS} keys with limit ${LIMIT} on ${WORKERS} processes x ${CONCURRENCY}, ${KILLS} of them SIGKILLed: never over the limit, not serialised, all finish`, async () => {
    const { db, fleet, random, seed, t0 } = await scenario.start();

    // Two thirds round robin over all keys (in claim order), the last third over the first
    // HOT keys only: once the others drain, those few keys have the free slots to themselves
    // and run at their limit. Half complete in ctx.transaction.
    const keyOf = (i: number): number => (i < (TOTAL * 2) / 3 ? i % KEYS : i % HOT);
    const jobs = Array.from({ length: TOTAL }, (_, i) => ({
      task: CHAOS_TASK,
      queue: 'keys',
      payload: { ms: 20 + random.int(41), tx: i % 2 === 0 },
      concurrencyKey: `k${keyOf(i)}`,
      concurrencyLimit: LIMIT,
      maxAttempts: 25,
    }));

    // The jobs table's view, from outside: running jobs per key (dead workers' included).
    let dbMaxPerKey = 0;
    let dbMaxRunning = 0;
    const sampler = new Sampler(10, async () => {
      const rows = await db.rows<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${db.jobsTable} WHERE status = 'running' GROUP BY concurrency_key`,
      );
      let all = 0;
      for (const r of rows) {
        dbMaxPerKey = Math.max(dbMaxPerKey, r.n);
        all += r.n;
      }
      dbMaxRunning = Math.max(dbMaxRunning, all);
    });

    const kills: Array<{ pid: number; at: number }> = [];
    const startedAt = Date.now();
    await db.producer.enqueueMany(jobs);
    // The first kill once the run is well under way, the second a little later.
    const killer = new Injector('keys', {
      everyMs: 1500,
      jitter: 0.3,
      maxFaults: KILLS,
      random,
      until: () => fleet.deathNotice() !== undefined,
      action: crashAndRestart(fleet, random, kills),
    });
    await killer.done;
    let drainedAt: number;
    try {
      drainedAt = await waitForDrain(db, TOTAL, 60_000, fleet);
    } finally {
      await sampler.stop();
    }
    const finishedAfterLastKill = await db.count(`SELECT count(*) AS n FROM ${db.jobsTable} WHERE finished_at > $1::timestamptz`, [
      new Date(kills[kills.length - 1]?.at ?? Date.now()),
    ]);

    // Running intervals by the database clock. A killed execution never finished: it ran until the kill.
    const killedAt = new Map(kills.map((k) => [k.pid, k.at]));
    const rows = await db.rows<{ key: string; pid: number; start_ms: number; end_ms: number | null }>(
      `SELECT j.concurrency_key AS key, l.pid, extract(epoch FROM l.started_at)::float8 * 1000 AS start_ms,
              extract(epoch FROM l.finished_at)::float8 * 1000 AS end_ms
       FROM ${db.ledger} AS l JOIN ${db.jobsTable} AS j ON j.id = l.job_id`,
    );
    const openEnded = rows.filter((r) => r.end_ms === null && !killedAt.has(r.pid)).length;
    const intervals = rows.map((r) => ({
      key: r.key,
      start: r.start_ms,
      // Not finished and not killed (its lease lost while alive): counted as running to the end.
      end: r.end_ms ?? killedAt.get(r.pid) ?? Number.MAX_SAFE_INTEGER,
    }));
    const perKey = maxOverlap(intervals);
    const perKeyValues = [...perKey.values()];
    const maxPerKey = Math.max(...perKeyValues);
    const keysAtLimit = perKeyValues.filter((n) => n === LIMIT).length;
    const overall = maxOverlap(intervals.map((i) => ({ ...i, key: 'all' }))).get('all') ?? 0;

    const figures = await ledgerFigures(
      db,
      kills.map((k) => k.pid),
    );
    const rescues = await rescueTimes(db, kills);
    const rescueMax = rescues.length > 0 ? Math.max(...rescues) : 0;
    const { unexpected, crashes, stops } = await fleet.finish();
    summary('keys', {
      jobs: TOTAL,
      keys: KEYS,
      limit: LIMIT,
      max_overlap_per_key: `${maxPerKey} (keys_at_limit=${keysAtLimit}/${perKey.size})`,
      db_max_running_per_key: `${dbMaxPerKey} (samples=${sampler.samples})`,
      overall_max_overlap: `${overall} (db_max_running=${dbMaxRunning}, slots=${WORKERS * CONCURRENCY})`,
      kills: kills.length,
      reexecutions: `${figures.reexecutions} (interrupted=${figures.interrupted} bound ${kills.length * CONCURRENCY}; unrecorded_results=${figures.unrecorded}; by_killed=${figures.supersededKilled} by_alive=${figures.supersededAlive})`,
      rescued_within: `${seconds(rescueMax)} (lease ${seconds(LEASE_MS)})`,
      finished_after_last_kill: finishedAfterLastKill,
      time: seconds(drainedAt - startedAt),
      total: seconds(Date.now() - t0),
      seed,
    });

    expect(kills.length).toBe(KILLS);
    expect(coreViolations(figures, TOTAL, kills.length * CONCURRENCY)).toEqual([]);
    expect(openEnded).toBe(0);
    expect(perKey.size).toBe(KEYS);
    expect(maxPerKey).toBeLessThanOrEqual(LIMIT);
    expect(maxPerKey).toBe(LIMIT); // the limit is used, not serialised to one
    expect(keysAtLimit).toBeGreaterThanOrEqual(HOT - 2);
    expect(dbMaxPerKey).toBeLessThanOrEqual(LIMIT);
    expect(overall).toBeGreaterThanOrEqual(4 * LIMIT); // throughput is not serialised across keys
    expect(sampler.errors).toEqual([]);
    // The kills came while the queue was busy, and the dead workers' slots came back.
    expect(finishedAfterLastKill).toBeGreaterThan(0);
    expect(rescueMax).toBeLessThan(LEASE_MS + 8000);
    expect(unexpected).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.filter((s) => s.code !== 0)).toEqual([]);
  });
});
