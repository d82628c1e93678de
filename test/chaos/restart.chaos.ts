import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';
import { coreViolations, enqueueBulk, ledgerFigures, ledgerSummary, listenerApp, seconds, serverControl, summary, useChaosScenario, waitForDrain } from './harness.js';

/**
 * PostgreSQL itself restarts (pg_ctlcluster restart, fast mode: every connection is cut)
 * while the workers run. They must ride it out: no worker exits, processing resumes by
 * itself, nothing is lost, every job succeeds once.
 */
const TOTAL = 8000;
const WORKERS = 4;
const CONCURRENCY = 6;
const LEASE_MS = 2000;
const RESTART_AT = 0.3; // fraction of the jobs done when the server restarts

const control = serverControl();
const scenario = useChaosScenario('restart', {
  fleet: { workers: WORKERS, concurrency: CONCURRENCY, leaseMs: LEASE_MS },
  cleanup: () => control.ensureUp(), // after the fleet is killed, before the schema is dropped
});

afterAll(async () => {
  await control.ensureUp(); // whatever happened, leave the server running
});

describe('chaos: server restart', () => {
  it(`restarting PostgreSQL under ${WORKERS} busy workers loses nothing and processing resumes`, async (ctx) => {
    if (control.unavailable !== undefined) {
      summary('restart', { skipped: JSON.stringify(control.unavailable) });
      ctx.skip();
      return;
    }
    const { db, fleet, t0 } = await scenario.start();
    await enqueueBulk(db, TOTAL, (i) => ({ ms: 2 + (i % 4), tx: i % 2 === 0 }), { batch: 2000 });

    await waitFor(async () => (await db.succeeded()) >= TOTAL * RESTART_AT, 120_000, `${RESTART_AT * 100}% of the jobs to succeed`, {
      intervalMs: 100,
      retryOnError: true,
    });
    const [before] = await db.rows<{ done: string; running: string }>(
      `SELECT count(*) FILTER (WHERE status = 'succeeded') AS done, count(*) FILTER (WHERE status = 'running') AS running FROM ${db.jobsTable}`,
    );
    const doneAtRestart = Number(before?.done ?? 0);
    const apps = fleet.live().map((p) => listenerApp(p.id));
    const oldListeners = (await db.rows<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = ANY($1)`, [apps])).map((r) => r.pid);
    expect(oldListeners).toHaveLength(WORKERS);
    const restartMs = await control.restart();
    const restartedAt = Date.now();

    // Every worker's LISTEN connection comes back (watched while the queue drains).
    const listening = waitFor(
      async () =>
        (await db.count(`SELECT count(DISTINCT application_name) AS n FROM pg_stat_activity WHERE application_name = ANY($1) AND pid <> ALL($2::int[])`, [
          apps,
          oldListeners,
        ])) === apps.length
          ? Date.now()
          : undefined,
      30_000,
      'every worker to LISTEN again',
      { intervalMs: 50, retryOnError: true },
    ).catch(() => undefined);
    // Processing resumes on its own: jobs succeed after the server is back.
    const throughOutage = { intervalMs: 50, retryOnError: true, abortIf: () => fleet.deathNotice() };
    const baseline = await waitFor(() => db.succeeded(), 30_000, 'the server to answer again', throughOutage);
    const resumedAt = await waitFor(async () => ((await db.succeeded()) > baseline ? Date.now() : undefined), 60_000, 'processing to resume', throughOutage);
    const drainedAt = await waitForDrain(db, TOTAL, 120_000, fleet);
    const listeningAt = await listening;

    const figures = await ledgerFigures(db, []);
    const bound = WORKERS * CONCURRENCY; // at most the jobs running when the server went away
    const { unexpected, crashes, stops } = await fleet.finish();
    summary('restart', {
      jobs: TOTAL,
      workers: WORKERS,
      concurrency: CONCURRENCY,
      done_at_restart: doneAtRestart,
      running_at_restart: Number(before?.running ?? 0),
      restart_took: seconds(restartMs),
      resumed_after: seconds(resumedAt - restartedAt),
      listening_after: listeningAt === undefined ? 'never' : seconds(listeningAt - restartedAt),
      ...ledgerSummary(figures, bound),
      crashes: unexpected.length + crashes.length,
      drained_after_restart: seconds(drainedAt - restartedAt),
      total: seconds(Date.now() - t0),
    });

    expect(coreViolations(figures, TOTAL, bound)).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.filter((s) => s.code !== 0)).toEqual([]);
    expect(listeningAt).toBeDefined();
    expect(resumedAt - restartedAt).toBeLessThan(20_000);
  });
});
