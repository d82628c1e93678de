import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';
import {
  type BackendKillStats,
  Injector,
  coreViolations,
  enqueueBulk,
  healthz,
  ledgerFigures,
  ledgerSummary,
  listenerApp,
  scrapeMetric,
  seconds,
  summary,
  terminateBackends,
  useChaosScenario,
  waitForDrain,
} from './harness.js';

/**
 * While the workers drain a large queue, an injector terminates random server backends of
 * theirs every second: pool connections (mid-claim, mid-heartbeat, mid-handler, mid-commit)
 * and LISTEN connections. No worker may crash or exit, every job must succeed exactly once
 * as in the crash scenario, and every listener must be back within seconds.
 */
const TOTAL = 20_000;
const WORKERS = 4;
const CONCURRENCY = 6;
const LEASE_MS = 2000;
const INJECT_EVERY_MS = 1000;
const INJECT_FOR_MS = 20_000;

const scenario = useChaosScenario('backends', { fleet: { workers: WORKERS, concurrency: CONCURRENCY, leaseMs: LEASE_MS, metrics: true } });

describe('chaos: terminated backends', () => {
  it(`pg_terminate_backend on random worker connections every ~${INJECT_EVERY_MS / 1000} s: no crash, none lost, listeners back`, async () => {
    const { db, fleet, random, seed, t0 } = await scenario.start();

    const stats: BackendKillStats = { pool: 0, poolBusy: 0, listener: 0, listenerReturnMs: [], listenerNotBack: [] };
    const watches: Array<Promise<void>> = [];
    let remaining = TOTAL;
    const injector = new Injector('backends', {
      everyMs: INJECT_EVERY_MS,
      jitter: 0.25,
      forMs: INJECT_FOR_MS,
      random,
      until: async () => {
        if (fleet.deathNotice() !== undefined) return true; // fails in waitForDrain, with the stderr
        remaining = TOTAL - (await db.succeeded());
        return remaining < TOTAL * 0.1;
      },
      // Each round: two pool connections, and a LISTEN connection every other round on average.
      action: terminateBackends(db, fleet, random, stats, { poolKills: 2, listenerKills: 1, listenerChance: 0.5 }, watches),
    });
    await enqueueBulk(db, TOTAL, (i) => ({ ms: 2 + (i % 4), tx: i % 2 === 0 }), { batch: 2000, pauseMs: 100 });
    await injector.done;
    const lastFaultAt = injector.lastAt ?? Date.now();
    await Promise.all(watches);

    // Every worker is listening again: /healthz says so and its LISTEN connection is in pg_stat_activity.
    const listening = await waitFor(
      async () => {
        const states = await Promise.all(fleet.live().map((p) => healthz(p)));
        if (!states.every((h) => h?.listening === true)) return false;
        const apps = fleet.live().map((p) => listenerApp(p.id));
        return (await db.count(`SELECT count(DISTINCT application_name) AS n FROM pg_stat_activity WHERE application_name = ANY($1)`, [apps])) === apps.length;
      },
      15_000,
      'every worker to be listening again',
      { intervalMs: 100, retryOnError: true, abortIf: () => fleet.deathNotice() },
    ).then(
      () => Date.now(),
      () => undefined,
    );
    const drainedAt = await waitForDrain(db, TOTAL, 180_000, fleet);
    const reconnects = (await Promise.all(fleet.live().map((p) => scrapeMetric(p, 'skiplock_notify_reconnects_total')))).reduce<number>(
      (sum, n) => sum + (n ?? 0),
      0,
    );
    const leaseLosses = (await Promise.all(fleet.live().map((p) => scrapeMetric(p, 'skiplock_lease_losses_total')))).reduce<number>(
      (sum, n) => sum + (n ?? 0),
      0,
    );

    const figures = await ledgerFigures(db, []);
    const faults = stats.pool + stats.listener;
    const bound = faults * CONCURRENCY;
    await delay(200);
    const { unexpected, crashes, stops } = await fleet.finish();
    const total = Date.now() - t0;
    const maxBack = stats.listenerReturnMs.length > 0 ? Math.max(...stats.listenerReturnMs) : 0;
    summary('backends', {
      jobs: TOTAL,
      workers: WORKERS,
      concurrency: CONCURRENCY,
      terminated: `${faults} (pool=${stats.pool} busy=${stats.poolBusy} listener=${stats.listener})`,
      ...ledgerSummary(figures, bound),
      lease_losses: leaseLosses,
      crashes: unexpected.length + crashes.length,
      listener_back_max: seconds(maxBack),
      notify_reconnects: reconnects,
      all_listening_after_last_fault: listening === undefined ? 'never' : seconds(listening - lastFaultAt),
      drained_after_last_fault: seconds(drainedAt - lastFaultAt),
      total: seconds(total),
      seed,
    });

    expect(faults).toBeGreaterThanOrEqual(10);
    expect(stats.listener).toBeGreaterThanOrEqual(3);
    expect(coreViolations(figures, TOTAL, bound)).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.filter((s) => s.code !== 0)).toEqual([]);
    expect(stats.listenerNotBack).toEqual([]);
    expect(maxBack).toBeLessThan(10_000);
    expect(listening).toBeDefined();
    expect(reconnects).toBeGreaterThanOrEqual(1);
  });
});
