import { describe, expect, it } from 'vitest';
import { JobStore } from '../../src/db/jobstore.js';
import { waitFor } from '../helpers/wait.js';
import { type ChaosPayload, CHAOS_TASK, processState, seconds, summary, useChaosScenario } from './harness.js';

/**
 * A worker process freezes (SIGSTOP, as in a long GC pause or a suspended VM) while it runs
 * three jobs. Their leases expire, the reaper of a second worker requeues them and that
 * worker claims them (attempt 2). Then the first one is continued (SIGCONT) and, before any
 * timer of its own runs, tries to record its stale results: a completion (job X), a failure
 * (job Y), and a lease renewal (job Z, still running). All three must change nothing; only
 * the second attempt's results stand. The stale token is also tried directly against every
 * fenced statement, while the second worker holds the jobs and after they succeeded.
 */
const LEASE_MS = 1500;
const RETRY_MS = 6000; // how long attempt 2 runs: the stale worker wakes up well within it

const scenario = useChaosScenario('fencing'); // its afterEach SIGKILLs the workers, which also ends a stopped one

interface JobRow {
  id: string;
  status: string;
  attempts: number;
  lease_token: string | null;
  lease_expires_at: Date | null;
  locked_by: string | null;
  last_error: string | null;
  run_at: Date;
  finished_at: Date | null;
}

describe('chaos: fencing', () => {
  it('a frozen worker whose leases expired changes nothing when it wakes: complete, fail and heartbeat are all fenced', async () => {
    const { db, t0 } = await scenario.start();
    const store = new JobStore(db.db.pool, db.db.schema);
    const fleet = scenario.newFleet({ workers: 2, concurrency: 3, leaseMs: LEASE_MS, reaperIntervalMs: 200, pollIntervalMs: 200 });
    // Waits on the workers: through connection errors, failing at once if a worker died.
    const watched = { intervalMs: 50, retryOnError: true, abortIf: () => fleet.deathNotice() };
    const runsOf = (attempt: number, pid: number): Promise<number> =>
      db.count(`SELECT count(*) AS n FROM ${db.ledger} WHERE attempt = $1 AND pid = $2`, [attempt, pid]);
    const jobRows = async (): Promise<JobRow[]> =>
      db.rows<JobRow>(
        `SELECT id, status, attempts, lease_token, lease_expires_at, locked_by, last_error, run_at, finished_at FROM ${db.jobsTable} ORDER BY id`,
      );

    // Worker A takes all three jobs.
    const a = await fleet.spawn(0);
    await fleet.ready(a);
    const payloads: Record<'X' | 'Y' | 'Z', ChaosPayload> = {
      X: { ms: 800, freeze: true, msOnRetry: RETRY_MS }, // freezes the process, then completes at once
      Y: { afterFreeze: true, throwOnAttempt: 1, msOnRetry: RETRY_MS }, // fails at once after the thaw
      Z: { ms: 120_000, msOnRetry: RETRY_MS }, // still running at the thaw: only its heartbeat speaks
    };
    const { ids } = await db.producer.enqueueMany(
      (['X', 'Y', 'Z'] as const).map((name) => ({ task: CHAOS_TASK, queue: 'fencing', payload: payloads[name], maxAttempts: 3 })),
    );
    const [x, y, z] = ids as [string, string, string];
    await waitFor(async () => (await runsOf(1, a.pid)) === 3, 20_000, 'worker A to start the three jobs', watched);
    const staleTokens = new Map((await jobRows()).map((r) => [r.id, r.lease_token ?? '']));
    expect([...staleTokens.values()].every((t) => t.length > 0)).toBe(true);
    expect((await jobRows()).every((r) => r.status === 'running' && r.locked_by === a.id && r.attempts === 1)).toBe(true);

    // X's handler stops its own process 800 ms in.
    await waitFor(async () => processState(a.pid) === 'T', 10_000, 'worker A to freeze', { intervalMs: 20, retryOnError: true });
    const frozenAt = Date.now();

    // Worker B reaps the expired leases and runs attempt 2 of all three.
    const b = await fleet.spawn(1);
    await waitFor(async () => (await runsOf(2, b.pid)) === 3, 30_000, 'worker B to re-claim and start the three jobs', watched);
    const reclaimedAt = Date.now();
    const held = await jobRows();
    expect(held.map((r) => [r.status, r.attempts, r.locked_by])).toEqual(Array(3).fill(['running', 2, b.id]));
    expect(held.every((r) => r.last_error?.startsWith(`lease expired (worker ${a.id})`))).toBe(true);

    // The stale token against every fenced statement, while B holds the jobs.
    let probes = 0;
    let applied = 0;
    const probe = async (rowsNow: JobRow[]): Promise<void> => {
      for (const r of rowsNow) {
        const token = staleTokens.get(r.id) ?? '';
        probes += 4;
        if (await store.complete({ id: r.id, token })) applied += 1;
        if ((await store.finishMany([{ id: r.id, token, ok: false, delayMs: 0, error: 'stale failure' }])).has(r.id)) applied += 1;
        if (!(await store.renew([{ id: r.id, token }], 3_600_000)).has(r.id)) applied += 1;
        if ((await store.handBack([{ id: r.id, token }])).size > 0) applied += 1;
      }
    };
    await probe(held);
    const stable = (r: JobRow): unknown[] => [r.id, r.status, r.attempts, r.lease_token, r.locked_by, r.last_error, r.run_at.getTime(), r.finished_at];
    const afterProbes = await jobRows();
    expect(afterProbes.map(stable)).toEqual(held.map(stable));
    // An applied renewal would have pushed the lease an hour out; B's own keep it within one lease.
    expect(afterProbes.every((r) => (r.lease_expires_at?.getTime() ?? 0) < Date.now() + LEASE_MS + 5000)).toBe(true);

    // Wake A: its complete (X), fail (Y) and heartbeat (Z) go out with the stale tokens.
    fleet.resume(a);
    const thawedAt = Date.now();
    const losses = await waitFor(
      async () => {
        const lines = fleet.logs(a).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('lease lost'));
        return lines.length >= 3 ? lines : undefined;
      },
      15_000,
      'worker A to notice it lost all three leases',
      watched,
    );
    const detectedBy = new Map(losses.map((l) => [String(l.jobId), String(l.detectedBy)]));
    const afterThaw = await jobRows();
    expect(afterThaw.map(stable)).toEqual(held.map(stable)); // B still holds them, untouched

    // B finishes attempt 2: only its results stand.
    await waitFor(async () => (await jobRows()).every((r) => r.status === 'succeeded'), 30_000, 'worker B to complete the jobs', { ...watched, intervalMs: 100 });
    const final = await jobRows();
    await probe(final);
    const bTokens = held.map((r) => ({ id: r.id, token: r.lease_token ?? '' }));
    for (const t of bTokens) {
      probes += 1;
      if (await store.complete(t)) applied += 1; // the winner's token cannot complete twice
    }
    const settled = await jobRows();
    expect(settled.map(stable)).toEqual(final.map(stable));
    const ledger = await db.rows<{ job_id: string; attempt: number; pid: number; finished: boolean }>(
      `SELECT job_id, attempt, pid, finished_at IS NOT NULL AS finished FROM ${db.ledger} ORDER BY job_id, attempt`,
    );

    const { unexpected, crashes, stops } = await fleet.finish();
    summary('fencing', {
      jobs: 3,
      lease: seconds(LEASE_MS),
      frozen_for: seconds(thawedAt - frozenAt),
      reclaimed_after_freeze: seconds(reclaimedAt - frozenAt),
      stale_detected_by: `X:${detectedBy.get(x)},Y:${detectedBy.get(y)},Z:${detectedBy.get(z)}`,
      stale_probes: probes,
      stale_writes_applied: applied,
      executions: ledger.length,
      final: final.map((r) => `${r.status}/attempt${r.attempts}/${r.locked_by === b.id ? 'B' : r.locked_by}`).join(','),
      total: seconds(Date.now() - t0),
    });

    expect(applied).toBe(0);
    expect(Object.fromEntries(detectedBy)).toEqual({ [x]: 'complete', [y]: 'fail', [z]: 'heartbeat' });
    expect(final.map((r) => [r.status, r.attempts, r.locked_by, r.lease_token])).toEqual(Array(3).fill(['succeeded', 2, b.id, null]));
    // Y's stale failure did not overwrite anything: last_error is still the reaper's.
    expect(final.every((r) => r.last_error?.startsWith(`lease expired (worker ${a.id})`))).toBe(true);
    expect(ledger).toEqual(
      [x, y, z].flatMap((id) => [
        { job_id: id, attempt: 1, pid: a.pid, finished: false },
        { job_id: id, attempt: 2, pid: b.pid, finished: true },
      ]),
    );
    expect(unexpected).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.map((s) => s.code)).toEqual([0, 0]);
  });
});
