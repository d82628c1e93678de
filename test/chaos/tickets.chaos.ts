import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ticketTablesSql } from '../../workers/buy-ticket.js';
import { waitFor } from '../helpers/wait.js';
import { seconds, summary, useChaosScenario, waitForDrain } from './harness.js';

/**
 * The ticket example (workers/buy-ticket.ts) under crashes: 600 purchase jobs for 5 events
 * of 20 seats, run by worker processes whose task directory is the repo's `workers`, with a
 * worker SIGKILLed every ~2 s (one that holds purchases in flight) and restarted. A purchase decides, sells or refuses and
 * completes its job in one transaction under the event's row lock; a killed worker's
 * transaction rolls back and its job is re-run after its lease expires. No event may sell
 * more than its capacity (and, oversubscribed, each sells out), every job succeeds, and each
 * has exactly one purchase row (sold or refused) and a ticket exactly when it was sold.
 */
const EVENTS = 5;
const CAPACITY = 20;
const PURCHASES = 600;
const BATCH = 40;
const WORKERS = 4;
const CONCURRENCY = 6;
const LEASE_MS = 2000;
const KILL_EVERY_MS = 2000;

const scenario = useChaosScenario('tickets');

describe('chaos: tickets', () => {
  it(`${PURCHASES} purchases of ${EVENTS} events x ${CAPACITY} seats while workers are SIGKILLed: never oversold, each decided exactly once`, async () => {
    const { db, random, seed, t0 } = await scenario.start();
    const ts = db.db.schema; // the tickets tables live in the scenario's own schema, dropped with it
    await db.db.pool.query(ticketTablesSql(ts));
    await db.db.pool.query(`INSERT INTO ${ts}.events (id, capacity) SELECT g, $1 FROM generate_series(1, $2) AS g`, [CAPACITY, EVENTS]);
    const fleet = await scenario.startFleet({
      workers: WORKERS,
      concurrency: CONCURRENCY,
      leaseMs: LEASE_MS,
      queues: ['tickets'],
      extraArgs: ['--tasks', 'workers'], // overrides the chaos tasks: the repo's handlers, buy-ticket among them
    });

    // Every other batch, a worker is SIGKILLed while it holds purchases (the one holding the
    // most, as the jobs table says), and restarted: its open transactions roll back, and its
    // jobs come back when their leases expire.
    const kills: Array<{ pid: number; at: number; holding: number }> = [];
    const killBusy = async (): Promise<void> => {
      const busy = await waitFor(
        async () => {
          const rows = await db.rows<{ locked_by: string; n: number }>(
            `SELECT locked_by, count(*)::int AS n FROM ${db.jobsTable} WHERE status = 'running' GROUP BY locked_by ORDER BY n DESC`,
          );
          const live = fleet.live();
          for (const r of rows) {
            const proc = live.find((p) => p.id === r.locked_by);
            if (proc) return { proc };
          }
          return undefined;
        },
        300,
        'a worker holding purchases',
        { intervalMs: 5, retryOnError: true },
      ).catch(() => undefined);
      const victim = busy?.proc ?? random.pick(fleet.live());
      if (!victim) return;
      await fleet.kill(victim, 'SIGKILL');
      // What it held at its death (running or buffered): frozen until its leases expire.
      const [held] = await db.rows<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${db.jobsTable} WHERE status = 'running' AND locked_by = $1`,
        [victim.id],
      );
      kills.push({ pid: victim.pid, at: Date.now(), holding: held?.n ?? 0 });
      await fleet.spawn(victim.slot);
    };
    // Buyers arrive in batches while the workers run and die.
    const startedAt = Date.now();
    const ids: string[] = [];
    for (let start = 0, batch = 0; start < PURCHASES; start += BATCH, batch++) {
      const jobs = Array.from({ length: Math.min(BATCH, PURCHASES - start) }, (_, k) => ({
        task: 'buy-ticket',
        queue: 'tickets',
        payload: { eventId: 1 + random.int(EVENTS), buyer: `buyer-${start + k}`, schema: ts },
        maxAttempts: 25,
      }));
      ids.push(...(await db.producer.enqueueMany(jobs)).ids);
      if (batch % 2 === 1 && fleet.deathNotice() === undefined) await killBusy();
      await delay(KILL_EVERY_MS / 2 - 100);
    }
    const drainedAt = await waitForDrain(db, PURCHASES, 60_000, fleet);

    const perEvent = await db.rows<{ event_id: number; capacity: number; buyers: number; sold: number; refused: number; tickets: number }>(
      `SELECT e.id::int AS event_id, e.capacity,
              (SELECT count(*)::int FROM ${db.jobsTable} AS j WHERE (j.payload->>'eventId')::bigint = e.id) AS buyers,
              (SELECT count(*)::int FROM ${ts}.purchases AS p WHERE p.event_id = e.id AND p.outcome = 'sold') AS sold,
              (SELECT count(*)::int FROM ${ts}.purchases AS p WHERE p.event_id = e.id AND p.outcome = 'refused') AS refused,
              (SELECT count(*)::int FROM ${ts}.tickets AS t WHERE t.event_id = e.id) AS tickets
       FROM ${ts}.events AS e ORDER BY e.id`,
    );
    const [check] = await db.rows<Record<string, number>>(
      `SELECT
         (SELECT count(*)::int FROM ${db.jobsTable}) AS jobs,
         (SELECT count(*)::int FROM ${db.jobsTable} WHERE status = 'succeeded') AS succeeded,
         (SELECT count(*)::int FROM ${db.jobsTable} AS j WHERE NOT EXISTS (SELECT 1 FROM ${ts}.purchases AS p WHERE p.job_id = j.id)) AS undecided,
         (SELECT count(*)::int FROM ${ts}.purchases AS p WHERE NOT EXISTS (SELECT 1 FROM ${db.jobsTable} AS j WHERE j.id = p.job_id)) AS stray_purchases,
         (SELECT count(*)::int FROM ${ts}.purchases AS p JOIN ${db.jobsTable} AS j ON j.id = p.job_id
           WHERE p.buyer <> j.payload->>'buyer' OR p.event_id <> (j.payload->>'eventId')::bigint) AS mismatched,
         (SELECT count(*)::int FROM (SELECT job_id FROM ${ts}.purchases GROUP BY job_id HAVING count(*) > 1) AS d) AS double_decided,
         (SELECT count(*)::int FROM (SELECT job_id FROM ${ts}.tickets GROUP BY job_id HAVING count(*) > 1) AS d) AS double_tickets,
         (SELECT count(*)::int FROM ${ts}.purchases AS p WHERE (p.outcome = 'sold') <> EXISTS (SELECT 1 FROM ${ts}.tickets AS t WHERE t.job_id = p.job_id)) AS ticket_mismatch,
         (SELECT count(*)::int FROM ${ts}.tickets AS t WHERE NOT EXISTS (SELECT 1 FROM ${ts}.purchases AS p WHERE p.job_id = t.job_id)) AS stray_tickets,
         (SELECT coalesce(sum(attempts - 1), 0)::int FROM ${db.jobsTable}) AS reexecutions,
         (SELECT coalesce(max(attempts), 0)::int FROM ${db.jobsTable}) AS max_attempts`,
    );
    const c = (k: string): number => check?.[k] ?? -1;
    const heldByKilled = kills.reduce((n, k) => n + k.holding, 0);
    const sold = perEvent.reduce((n, e) => n + e.sold, 0);
    const refused = perEvent.reduce((n, e) => n + e.refused, 0);
    const oversold = perEvent.filter((e) => e.sold > e.capacity || e.tickets > e.capacity);
    const { unexpected, crashes, stops } = await fleet.finish();
    summary('tickets', {
      events: EVENTS,
      capacity: CAPACITY,
      purchases: PURCHASES,
      sold: `${sold} (${perEvent.map((e) => `${e.sold}/${e.buyers}`).join(',')})`,
      refused,
      kills: `${kills.length} (holding ${kills.map((k) => k.holding).join('+')} running purchases)`,
      reexecutions: `${c('reexecutions')} (bound ${heldByKilled}; max_attempts=${c('max_attempts')})`,
      undecided: c('undecided'),
      double_decided: c('double_decided'),
      oversold: oversold.length,
      time: seconds(drainedAt - startedAt),
      total: seconds(Date.now() - t0),
      seed,
    });

    expect(kills.length).toBeGreaterThanOrEqual(3);
    expect(oversold).toEqual([]);
    // Oversubscribed events sell out: no sale lost to a crash either.
    for (const e of perEvent) expect({ event: e.event_id, sold: e.sold, tickets: e.tickets }).toEqual({ event: e.event_id, sold: Math.min(e.capacity, e.buyers), tickets: Math.min(e.capacity, e.buyers) });
    expect(sold + refused).toBe(PURCHASES);
    expect({
      jobs: c('jobs'),
      succeeded: c('succeeded'),
      undecided: c('undecided'),
      stray_purchases: c('stray_purchases'),
      mismatched: c('mismatched'),
      double_decided: c('double_decided'),
      double_tickets: c('double_tickets'),
      ticket_mismatch: c('ticket_mismatch'),
      stray_tickets: c('stray_tickets'),
    }).toEqual({
      jobs: PURCHASES,
      succeeded: PURCHASES,
      undecided: 0,
      stray_purchases: 0,
      mismatched: 0,
      double_decided: 0,
      double_tickets: 0,
      ticket_mismatch: 0,
      stray_tickets: 0,
    });
    // Each job a killed worker held (running, or claimed into its prefetch buffer) is
    // claimed again at most once for that kill.
    expect(c('reexecutions')).toBeLessThanOrEqual(heldByKilled);
    expect(unexpected).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.filter((s) => s.code !== 0)).toEqual([]);
  });
});
