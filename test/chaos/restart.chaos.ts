import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  type ChaosDb,
  WorkerFleet,
  coreViolations,
  createChaosDb,
  enqueueBulk,
  ledgerFigures,
  listenerApp,
  pollUntil,
  seconds,
  serverControl,
  summary,
  waitForDrain,
} from './harness.js';

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
let chaos: ChaosDb | undefined;
let fleet: WorkerFleet | undefined;

afterEach(async () => {
  await fleet?.destroy();
  await control.ensureUp();
  await chaos?.drop();
  fleet = undefined;
  chaos = undefined;
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
    const t0 = Date.now();
    chaos = await createChaosDb('restart');
    const db = chaos;
    fleet = new WorkerFleet(db, {
      workers: WORKERS,
      concurrency: CONCURRENCY,
      leaseMs: LEASE_MS,
      reaperIntervalMs: 250,
      pollIntervalMs: 250,
    });
    await fleet.start();
    await enqueueBulk(db, TOTAL, (i) => ({ ms: 2 + (i % 4), tx: i % 2 === 0 }), { batch: 2000 });

    const succeeded = (): Promise<number> => db.count(`SELECT count(*) AS n FROM ${db.jobsTable} WHERE status = 'succeeded'`);
    await pollUntil(async () => (await succeeded()) >= TOTAL * RESTART_AT, 120_000, `${RESTART_AT * 100}% of the jobs to succeed`, 100);
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
    const listening = pollUntil(
      async () =>
        (await db.count(`SELECT count(DISTINCT application_name) AS n FROM pg_stat_activity WHERE application_name = ANY($1) AND pid <> ALL($2::int[])`, [
          apps,
          oldListeners,
        ])) === apps.length
          ? Date.now()
          : undefined,
      30_000,
      'every worker to LISTEN again',
      50,
    ).catch(() => undefined);
    // Processing resumes on its own: jobs succeed after the server is back.
    const dead = (): string | undefined => fleet?.deathNotice();
    const baseline = await pollUntil(async () => succeeded(), 30_000, 'the server to answer again', 50, dead);
    const resumedAt = await pollUntil(async () => ((await succeeded()) > baseline ? Date.now() : undefined), 60_000, 'processing to resume', 50, dead);
    const drainedAt = await waitForDrain(db, TOTAL, 120_000, fleet);
    const listeningAt = await listening;

    const figures = await ledgerFigures(db, []);
    const bound = WORKERS * CONCURRENCY; // at most the jobs running when the server went away
    const unexpected = fleet.describeUnexpectedExits();
    const crashes = fleet.crashLines();
    const stops = await fleet.stopAll();
    summary('restart', {
      jobs: TOTAL,
      workers: WORKERS,
      concurrency: CONCURRENCY,
      done_at_restart: doneAtRestart,
      running_at_restart: Number(before?.running ?? 0),
      restart_took: seconds(restartMs),
      resumed_after: seconds(resumedAt - restartedAt),
      listening_after: listeningAt === undefined ? 'never' : seconds(listeningAt - restartedAt),
      reexecutions: `${figures.reexecutions} (interrupted=${figures.interrupted} bound ${bound}; unrecorded_results=${figures.unrecorded})`,
      lost: figures.lost,
      duplicates_succeeded: figures.duplicatesSucceeded,
      double_claims: figures.doubleClaims,
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
