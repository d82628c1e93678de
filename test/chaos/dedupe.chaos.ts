import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.js';
import { CHAOS_TASK, type ChaosDb, Sampler, checkoutClients, formatStatuses, seconds, statusCounts, summary, useChaosScenario } from './harness.js';

/**
 * Idempotent enqueue under a real race: 64 callers, each in its own transaction on its own
 * connection (the caller's client passed as { client }), all with their snapshots taken
 * before any of them inserts, enqueue one dedupe key at once and then commit.
 *
 * - idle: nothing runs the jobs. Every round ends with one row; every caller gets its id,
 *   exactly one of them created it, none sees an error; the row keeps the creator's payload.
 * - workers: a worker process completes the key's jobs while the callers race, so the
 *   holder sometimes finishes between a caller's insert and its look-up, and a new job is
 *   created. Still: no error reaches a caller, every id a caller gets is a job of that key,
 *   each job was created by exactly one caller, and (sampled from outside, all along) never
 *   more than one job of the key is queued or running at once.
 *
 * Each phase runs under READ COMMITTED and under REPEATABLE READ.
 */
const CALLERS = 64;
const ROUNDS = 10;
const ISOLATIONS = ['READ COMMITTED', 'REPEATABLE READ'] as const;
type Isolation = (typeof ISOLATIONS)[number];
const short = (i: Isolation): string => (i === 'READ COMMITTED' ? 'rc' : 'rr');

type Outcome = { id: string; created: boolean; i: number } | { error: string; i: number };
const isOk = (o: Outcome): o is { id: string; created: boolean; i: number } => 'id' in o;

let racers: pg.Pool | undefined;
let clients: pg.PoolClient[] = [];

const scenario = useChaosScenario('dedupe', {
  cleanup: async () => {
    for (const c of clients) c.release(true);
    clients = [];
    await racers?.end();
    racers = undefined;
  },
});

/**
 * One round: every client opens a transaction and takes its snapshot; then all enqueue the
 * key at once, each committing as soon as its own call returned (the callers that found the
 * first inserter's uncommitted row wait for that commit).
 */
async function raceRound(db: ChaosDb, isolation: Isolation, key: string, task: string, queue: string, payload: (i: number) => object): Promise<Outcome[]> {
  await Promise.all(
    clients.map(async (c) => {
      await c.query(`BEGIN ISOLATION LEVEL ${isolation}`);
      await c.query('SELECT 1'); // the snapshot (REPEATABLE READ) is taken here, before anyone inserts
    }),
  );
  return Promise.all(
    clients.map(async (client, i): Promise<Outcome> => {
      try {
        const job = await db.producer.enqueue(task, payload(i), { dedupeKey: key, client, queue, maxAttempts: 3 });
        await client.query('COMMIT');
        return { id: job.id, created: job.created, i };
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        return { error: err instanceof Error ? err.message : String(err), i };
      }
    }),
  );
}

describe('chaos: dedupe', () => {
  it(`${CALLERS} concurrent enqueues of one key in their own transactions: one job at a time per key, one id per job, no error`, async () => {
    const { db, t0 } = await scenario.start();
    racers = new pg.Pool({ connectionString: db.db.connectionString, max: CALLERS, application_name: 'chaos dedupe racer' });
    racers.on('error', () => undefined);
    clients = await checkoutClients(racers, CALLERS);
    await Promise.all(clients.map((c) => c.query('SELECT 1')));

    const errors: string[] = [];
    const problems: string[] = [];

    // Phase idle: nobody runs the jobs; a fresh key per round.
    const idleDistinct: number[] = [];
    for (const isolation of ISOLATIONS) {
      for (let round = 0; round < ROUNDS; round++) {
        const key = `idle-${short(isolation)}-${round}`;
        const outcomes = await raceRound(db, isolation, key, 'dedupe-idle', 'idle', (i) => ({ caller: i }));
        const ok = outcomes.filter(isOk);
        for (const o of outcomes) if (!isOk(o)) errors.push(`${key} caller ${o.i}: ${o.error}`);
        const rows = await db.rows<{ id: string; caller: number }>(
          `SELECT id, (payload->>'caller')::int AS caller FROM ${db.jobsTable} WHERE dedupe_key = $1`,
          [key],
        );
        const ids = new Set(ok.map((o) => o.id));
        const creators = ok.filter((o) => o.created);
        idleDistinct.push(ids.size);
        if (rows.length !== 1) problems.push(`${key}: ${rows.length} rows`);
        if (ids.size !== 1 || rows[0]?.id !== ok[0]?.id) problems.push(`${key}: ids ${[...ids].join(',')} vs row ${rows[0]?.id}`);
        if (creators.length !== 1) problems.push(`${key}: ${creators.length} callers were told they created the job`);
        else if (rows[0]?.caller !== creators[0]?.i) problems.push(`${key}: the row holds caller ${rows[0]?.caller}'s payload, creator was ${creators[0]?.i}`);
      }
    }

    // Phase workers: a worker completes the key's jobs while the callers race; one key per
    // isolation level, reused round after round, so a round may start while the last
    // round's job is still queued or running.
    const fleet = await scenario.startFleet({ workers: 1, concurrency: 2, leaseMs: 5000, reaperIntervalMs: 500, pollIntervalMs: 100, queues: ['live'] });
    const liveKeys = ISOLATIONS.map((i) => `live-${short(i)}`);
    let maxLive = 0;
    let overLimit = 0;
    const sampler = new Sampler(2, async () => {
      const rows = await db.rows<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${db.jobsTable} WHERE dedupe_key = ANY ($1::text[]) AND status IN ('queued', 'running') GROUP BY dedupe_key`,
        [liveKeys],
      );
      for (const r of rows) {
        maxLive = Math.max(maxLive, r.n);
        if (r.n > 1) overLimit += 1;
      }
    });
    const liveDistinct: number[] = [];
    const liveOutcomes = new Map<string, Array<{ id: string; created: boolean }>>();
    let roundsWithNewJob = 0; // a round in which some caller created a job while others got an older one
    try {
      for (const [k, isolation] of ISOLATIONS.entries()) {
        const key = liveKeys[k] ?? '';
        for (let round = 0; round < ROUNDS; round++) {
          const outcomes = await raceRound(db, isolation, key, CHAOS_TASK, 'live', () => ({ ms: 0 }));
          const ok = outcomes.filter(isOk);
          for (const o of outcomes) if (!isOk(o)) errors.push(`${key} round ${round} caller ${o.i}: ${o.error}`);
          const ids = new Set(ok.map((o) => o.id));
          liveDistinct.push(ids.size);
          if (ids.size > 1 && ok.some((o) => o.created)) roundsWithNewJob += 1;
          liveOutcomes.set(key, [...(liveOutcomes.get(key) ?? []), ...ok]);
        }
      }
    } finally {
      await sampler.stop();
    }
    await waitFor(
      async () => (await db.count(`SELECT count(*) AS n FROM ${db.jobsTable} WHERE queue = 'live' AND status <> 'succeeded'`)) === 0,
      30_000,
      'the live jobs to succeed',
      { intervalMs: 100, retryOnError: true, abortIf: () => fleet.deathNotice() },
    ).catch(async (err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}; jobs: ${formatStatuses(await statusCounts(db))}`);
    });

    let liveJobs = 0;
    let liveCreated = 0;
    let idMismatches = 0;
    for (const key of liveKeys) {
      const outcomes = liveOutcomes.get(key) ?? [];
      const jobs = await db.rows<{ id: string }>(`SELECT id FROM ${db.jobsTable} WHERE dedupe_key = $1`, [key]);
      const jobIds = new Set(jobs.map((j) => j.id));
      const created = outcomes.filter((o) => o.created).map((o) => o.id);
      liveJobs += jobIds.size;
      liveCreated += created.length;
      // Every id a caller got is a job of that key; each job was created by exactly one caller.
      const foreign = outcomes.filter((o) => !jobIds.has(o.id));
      idMismatches += foreign.length;
      if (foreign.length > 0) problems.push(`${key}: callers got ids that are not jobs of the key: ${[...new Set(foreign.map((o) => o.id))].join(',')}`);
      if (new Set(created).size !== created.length) problems.push(`${key}: a job was reported created to more than one caller`);
      if (created.length !== jobIds.size || !created.every((id) => jobIds.has(id))) {
        problems.push(`${key}: ${jobIds.size} jobs, but ${created.length} callers were told they created one`);
      }
    }
    const { unexpected, crashes, stops } = await fleet.finish();
    const range = (xs: number[]): string => `${Math.min(...xs)}..${Math.max(...xs)}`;
    summary('dedupe', {
      rounds: `${ROUNDS * ISOLATIONS.length * 2} (rc:${ROUNDS} rr:${ROUNDS} rc+workers:${ROUNDS} rr+workers:${ROUNDS})`,
      callers: CALLERS,
      distinct_ids_per_round: `idle:${range(idleDistinct)},workers:${range(liveDistinct)}`,
      rounds_with_new_job_midrace: roundsWithNewJob,
      live_jobs: `${liveJobs} (created_told=${liveCreated})`,
      max_live_per_key: `${maxLive} (samples=${sampler.samples})`,
      id_key_mismatches: idMismatches,
      errors: errors.length,
      total: seconds(Date.now() - t0),
    });

    expect(errors).toEqual([]);
    expect(problems).toEqual([]);
    expect(idleDistinct.every((n) => n === 1)).toBe(true);
    expect(overLimit).toBe(0);
    expect(maxLive).toBeLessThanOrEqual(1);
    expect(sampler.samples).toBeGreaterThan(50);
    expect(sampler.errors).toEqual([]);
    expect(unexpected).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.map((s) => s.code)).toEqual([0]);
  });
});
