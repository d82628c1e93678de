import { describe, expect, it } from 'vitest';
import { Injector, coreViolations, crashAndRestart, enqueueBulk, ledgerFigures, ledgerSummary, rescueTimes, seconds, summary, useChaosScenario, waitForDrain } from './harness.js';

/**
 * Worker processes are SIGKILLed at random while they drain a large queue, and restarted.
 * Nothing may be lost: every job succeeds, each is completed by exactly one execution of its
 * final attempt, and the only extra executions are those the kills interrupted.
 */
const TOTAL = 20_000;
const WORKERS = 4;
const CONCURRENCY = 6;
const LEASE_MS = 2000;
const KILL_EVERY_MS = 2000;
const MAX_KILLS = 12;

const scenario = useChaosScenario('crash', { fleet: { workers: WORKERS, concurrency: CONCURRENCY, leaseMs: LEASE_MS } });

describe('chaos: worker crashes', () => {
  it(`SIGKILL a random worker every ~${KILL_EVERY_MS / 1000} s while ${WORKERS} workers drain ${TOTAL} jobs: none lost, re-executions bounded`, async () => {
    const { db, fleet, random, seed, t0 } = await scenario.start();

    const kills: Array<{ pid: number; at: number }> = [];
    let remaining = TOTAL;
    const killer = new Injector('crash', {
      everyMs: KILL_EVERY_MS,
      jitter: 0.25,
      maxFaults: MAX_KILLS,
      random,
      // Kills near the very end would only measure the lease; stop while the queue is still busy.
      until: async () => {
        if (fleet.deathNotice() !== undefined) return true; // fails in waitForDrain, with the stderr
        remaining = TOTAL - (await db.succeeded());
        return remaining < TOTAL * 0.1;
      },
      action: crashAndRestart(fleet, random, kills),
    });
    // Jobs arrive in batches while the workers run and die: half complete in ctx.transaction.
    await enqueueBulk(db, TOTAL, (i) => ({ ms: 2 + (i % 4), tx: i % 2 === 0 }), { batch: 2000, pauseMs: 100 });
    await killer.done;
    const lastKillAt = killer.lastAt ?? Date.now();
    const drainedAt = await waitForDrain(db, TOTAL, 120_000, fleet);

    const figures = await ledgerFigures(
      db,
      kills.map((k) => k.pid),
    );
    const bound = kills.length * CONCURRENCY;
    // How long the jobs of a killed worker waited: lease expiry + reaper + claim.
    const rescues = await rescueTimes(db, kills);
    const rescueMax = rescues.length > 0 ? Math.max(...rescues) : 0;
    const { unexpected, crashes, stops } = await fleet.finish();
    const total = Date.now() - t0;
    summary('crash', {
      jobs: TOTAL,
      workers: WORKERS,
      concurrency: CONCURRENCY,
      kills: kills.length,
      processes: fleet.all.length,
      ...ledgerSummary(figures, bound, { byProcess: true }),
      rescued_within: `${seconds(rescueMax)} (lease ${seconds(LEASE_MS)})`,
      remaining_at_last_kill: remaining,
      drained_after_last_kill: seconds(drainedAt - lastKillAt),
      total: seconds(total),
      seed,
    });

    expect(kills.length).toBeGreaterThanOrEqual(3);
    expect(coreViolations(figures, TOTAL, bound)).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.filter((s) => s.code !== 0)).toEqual([]);
    // A killed worker's jobs are back in work within the lease plus a few reaper rounds.
    expect(rescueMax).toBeLessThan(LEASE_MS + 8000);
    expect(drainedAt - lastKillAt).toBeLessThan(90_000);
  });
});
