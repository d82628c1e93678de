import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import type { TransitionResult } from '../../src/producer/producer.js';
import { waitFor } from '../helpers/wait.js';
import { checkoutClients, formatStatuses, seconds, statusCounts, summary, useChaosScenario } from './harness.js';
import type { ChaosScriptPayload } from './tasks/chaos-script.js';

/**
 * Job transitions raced on many connections while worker processes run the jobs. Every
 * change of state is one conditional UPDATE: of concurrent calls on one job exactly one may
 * report `changed: true`, and the end state must agree with who won.
 *
 * - cancel/cancel on queued jobs (delayed, so no worker takes them) and on running jobs
 *   (held by the workers): 2-4 cancels per job, released together by a gate transaction
 *   that holds the rows until every call waits on them. The workers must abort the
 *   cancelled runs and write nothing: their completions (in ctx.transaction) roll back.
 * - cancel/complete: short jobs run by the workers (half complete in ctx.transaction, half
 *   through the batched result flush), each hit by a burst of 2-3 cancels at a random moment
 *   (just after enqueue, or around the end of its run). A job whose cancel won is cancelled
 *   (and, in ctx.transaction, its completion never committed); a job whose cancels all lost
 *   succeeded exactly once, and every one of its cancels saw it succeeded.
 * - retry/retry on failed and cancelled jobs (the ones above), gated as the cancels: one
 *   retry requeues each; the job then runs again and succeeds (task chaos-script: the first
 *   execution of a failFirst job throws, a later one does not).
 */
const WORKERS = 2;
const CONCURRENCY = 8;
const LEASE_MS = 1500; // heartbeat every 500 ms: a cancelled run is aborted within ~0.5 s
const QUEUED = 150;
const RUNNING = WORKERS * CONCURRENCY;
const COMPLETING = 300;
const FAILING = 100;
const BATCH_JOBS = 4; // jobs per gated race: up to 16 racing connections
const TASK = 'chaos-script';
const QUEUE = 'tr';

let racers: pg.Pool | undefined;

const scenario = useChaosScenario('transitions', {
  cleanup: async () => {
    await racers?.end();
    racers = undefined;
  },
});

type Op = 'cancel' | 'retry';

describe('chaos: transitions', () => {
  it('cancel/cancel, cancel/complete and retry/retry raced on hundreds of jobs: one winner each, end states agree', async () => {
    const { db, random, seed, t0 } = await scenario.start();
    const racerName = `chaos racer ${db.db.schema}`;
    // The racing connections are opened once and kept (the server is shared: a connection
    // opened mid-race could find no slot free).
    racers = new pg.Pool({ connectionString: db.db.connectionString, max: 4 * BATCH_JOBS, idleTimeoutMillis: 0, application_name: racerName });
    racers.on('error', () => undefined);
    const pool = racers;
    for (const c of await checkoutClients(pool, 4 * BATCH_JOBS)) c.release();
    const fleet = await scenario.startFleet({ workers: WORKERS, concurrency: CONCURRENCY, leaseMs: LEASE_MS, queues: [QUEUE], logLevel: 'info' });
    // Waits on the workers: through connection errors, failing at once if a worker died.
    const watched = { intervalMs: 50, retryOnError: true, abortIf: () => fleet.deathNotice() };
    const enqueue = async (n: number, payload: (i: number) => ChaosScriptPayload, extra: { runAt?: Date; maxAttempts?: number } = {}) =>
      (
        await db.producer.enqueueMany(
          Array.from({ length: n }, (_, i) => ({ task: TASK, queue: QUEUE, payload: payload(i), maxAttempts: extra.maxAttempts ?? 3, runAt: extra.runAt })),
        )
      ).ids;
    const statusOf = async (ids: string[]): Promise<Map<string, string>> =>
      new Map((await db.rows<{ id: string; status: string }>(`SELECT id, status FROM ${db.jobsTable} WHERE id = ANY ($1::bigint[])`, [ids])).map((r) => [r.id, r.status]));
    const call = (op: Op, id: string, client?: pg.PoolClient): Promise<TransitionResult> =>
      op === 'cancel' ? db.producer.cancel(id, client) : db.producer.retry(id, client);
    const errors: string[] = [];

    /**
     * 2-4 calls of `op` per job, each on its own connection, batch by batch: a gate
     * transaction holds the batch's rows until every call waits for them, then commits; the
     * calls contend for each row with snapshots older than the winner's write.
     */
    const gatedRace = async (op: Op, ids: string[]): Promise<Map<string, TransitionResult[]>> => {
      const out = new Map<string, TransitionResult[]>();
      for (let start = 0; start < ids.length; start += BATCH_JOBS) {
        const batch = ids.slice(start, start + BATCH_JOBS);
        const plan = batch.flatMap((id) => Array.from({ length: 2 + random.int(3) }, () => id));
        const clients = await checkoutClients(pool, plan.length);
        const gate = await db.db.pool.connect();
        let gateOpen = true;
        try {
          await gate.query('BEGIN');
          await gate.query(`SELECT 1 FROM ${db.jobsTable} WHERE id = ANY ($1::bigint[]) FOR UPDATE`, [batch]);
          const results = Promise.allSettled(plan.map((id, k) => call(op, id, clients[k])));
          await waitFor(
            async () =>
              (await db.count(`SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'`, [racerName])) ===
              plan.length,
            10_000,
            `${plan.length} ${op} calls to wait on the gate`,
            { intervalMs: 5, retryOnError: true },
          );
          await gate.query('COMMIT');
          gateOpen = false;
          (await results).forEach((r, k) => {
            const id = plan[k] ?? '';
            if (r.status === 'rejected') errors.push(`${op} ${id}: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`);
            else out.set(id, [...(out.get(id) ?? []), r.value]);
          });
        } finally {
          gate.release(gateOpen);
          for (const c of clients) c.release();
        }
      }
      return out;
    };
    const tally = (results: Map<string, TransitionResult[]>) => {
      let winners = 0;
      let conflicts = 0;
      let calls = 0;
      for (const rs of results.values()) {
        calls += rs.length;
        winners += rs.filter((r) => r.changed).length;
        conflicts += rs.filter((r) => !r.changed).length;
      }
      return { winners, conflicts, calls };
    };
    const problems: string[] = [];
    const expectOneWinner = (what: string, results: Map<string, TransitionResult[]>, ids: string[], from: string[], losersSee: string[]): void => {
      for (const id of ids) {
        const rs = results.get(id) ?? [];
        const won = rs.filter((r) => r.changed);
        if (rs.length < 2) problems.push(`${what} ${id}: only ${rs.length} calls`);
        if (won.length !== 1) problems.push(`${what} ${id}: ${won.length} calls changed it`);
        else if (!from.includes(won[0]?.previous ?? '')) problems.push(`${what} ${id}: the winner saw ${won[0]?.previous}`);
        for (const r of rs.filter((x) => !x.changed)) if (!losersSee.includes(r.previous ?? '')) problems.push(`${what} ${id}: a loser saw ${r.previous}`);
      }
    };

    // 1. cancel/cancel on queued jobs: delayed an hour, so no worker takes them.
    const queued = await enqueue(QUEUED, () => ({ ms: 5, tx: true }), { runAt: new Date(Date.now() + 3_600_000) });
    const cancelQueued = await gatedRace('cancel', queued);
    expectOneWinner('cancel/cancel queued', cancelQueued, queued, ['queued'], ['cancelled']);

    // 2. cancel/cancel on running jobs: one per worker slot, sleeping a minute.
    const running = await enqueue(RUNNING, () => ({ ms: 60_000, msAgain: 10, tx: true }));
    await waitFor(
      async () => (await db.count(`SELECT count(*) AS n FROM ${db.ledger} WHERE job_id = ANY ($1::bigint[])`, [running])) === RUNNING,
      20_000,
      `the ${RUNNING} long jobs to run`,
      watched,
    );
    const cancelRunning = await gatedRace('cancel', running);
    expectOneWinner('cancel/cancel running', cancelRunning, running, ['running'], ['cancelled']);
    const abortedLog = (): number =>
      fleet.all.reduce((n, p) => n + fleet.logs(p).filter((l) => typeof l.msg === 'string' && l.msg.startsWith('job cancelled while running')).length, 0);
    await waitFor(async () => abortedLog() >= RUNNING, 10_000, 'the workers to abort the cancelled runs', watched);

    // 3. cancel/complete: short jobs arrive in batches; each gets a burst of 2-3 concurrent
    // cancels, either at once (queued) or at a random moment around its run.
    const bursts: Array<Promise<void>> = [];
    const cancels = new Map<string, TransitionResult[]>();
    const burst = (id: string, afterMs: number): void => {
      bursts.push(
        (async () => {
          if (afterMs > 0) await delay(afterMs);
          const n = 2 + random.int(2);
          // On the racers' pool: each call of the burst on a connection of its own.
          const rs = await Promise.allSettled(Array.from({ length: n }, () => db.producer.cancel(id, pool)));
          for (const r of rs) {
            if (r.status === 'rejected') errors.push(`cancel ${id}: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`);
            else cancels.set(id, [...(cancels.get(id) ?? []), r.value]);
          }
        })(),
      );
    };
    const completing: string[] = [];
    const txJobs = new Set<string>();
    const msOf = new Map<string, number>();
    const scheduled = new Set<string>();
    const watchUntil = Date.now() + 30_000;
    const watching = (async () => {
      // Watches the ledger for runs that started; schedules each job's burst around its end.
      while (scheduled.size < COMPLETING) {
        if (Date.now() > watchUntil) throw new Error(`only ${scheduled.size} of ${COMPLETING} cancel/complete jobs were seen to start or be cancelled`);
        const pending = completing.filter((id) => !scheduled.has(id));
        if (pending.length > 0) {
          const started = await db.rows<{ job_id: string }>(`SELECT DISTINCT job_id::text FROM ${db.ledger} WHERE job_id = ANY ($1::bigint[])`, [pending]);
          for (const { job_id: id } of started) {
            scheduled.add(id);
            burst(id, Math.max(0, (msOf.get(id) ?? 0) - 8 + random.int(20))); // around the end of its sleep
          }
          // A job whose immediate burst cancelled it while queued never starts.
          const gone = await statusOf(pending.filter((id) => !scheduled.has(id)));
          for (const [id, s] of gone) if (s === 'cancelled' && cancels.has(id)) scheduled.add(id);
        }
        if (fleet.deathNotice() !== undefined) return;
        await delay(3);
      }
    })();
    watching.catch(() => undefined); // awaited (and its error thrown) after the last batch
    for (let start = 0; start < COMPLETING; start += 30) {
      const ms = Array.from({ length: 30 }, () => random.int(31));
      // Half complete in ctx.transaction, half through the worker's batched result flush.
      const ids = await enqueue(30, (i) => ({ ms: ms[i] ?? 0, tx: i % 2 === 0 }));
      ids.forEach((id, i) => {
        msOf.set(id, ms[i] ?? 0);
        if (i % 2 === 0) txJobs.add(id);
        if (random.int(6) === 0) {
          burst(id, 0); // at once: most likely while it is still queued
        }
      });
      completing.push(...ids);
      await delay(100);
    }
    await watching;
    // Jobs whose immediate burst lost the race to the claim were scheduled by the watcher too.
    await waitFor(
      async () => (await db.count(`SELECT count(*) AS n FROM ${db.jobsTable} WHERE id = ANY ($1::bigint[]) AND status IN ('queued', 'running')`, [completing])) === 0,
      20_000,
      'the cancel/complete jobs to finish',
      watched,
    );
    await Promise.all(bursts);

    const ledgerOf = async (ids: string[]) =>
      new Map(
        (
          await db.rows<{ id: string; runs: number; finished: number }>(
            `SELECT j.id::text, count(l.id)::int AS runs, count(l.finished_at)::int AS finished
             FROM ${db.jobsTable} AS j LEFT JOIN ${db.ledger} AS l ON l.job_id = j.id
             WHERE j.id = ANY ($1::bigint[]) GROUP BY j.id`,
            [ids],
          )
        ).map((r) => [r.id, r]),
      );
    let cancelWonQueued = 0;
    let cancelWonRunning = 0;
    let completeWon = 0;
    {
      const status = await statusOf(completing);
      const runs = await ledgerOf(completing);
      for (const id of completing) {
        const rs = cancels.get(id) ?? [];
        const won = rs.filter((r) => r.changed);
        const s = status.get(id);
        const finished = runs.get(id)?.finished ?? -1;
        if (rs.length < 2) problems.push(`cancel/complete ${id}: ${rs.length} cancels`);
        if (won.length > 1) problems.push(`cancel/complete ${id}: ${won.length} cancels changed it`);
        if (won.length === 1) {
          if (won[0]?.previous === 'queued') cancelWonQueued += 1;
          else if (won[0]?.previous === 'running') cancelWonRunning += 1;
          else problems.push(`cancel/complete ${id}: the winning cancel saw ${won[0]?.previous}`);
          if (s !== 'cancelled') problems.push(`cancel/complete ${id}: its cancel won, but it is ${s}`);
          // A tx job's finished_at commits only with its completion; a plain job's handler may have finished.
          if (finished !== 0 && (txJobs.has(id) || finished > 1)) problems.push(`cancel/complete ${id}: cancelled, yet ${finished} finished executions`);
          for (const r of rs.filter((x) => !x.changed)) if (r.previous !== 'cancelled') problems.push(`cancel/complete ${id}: a losing cancel saw ${r.previous}`);
        } else {
          completeWon += 1;
          if (s !== 'succeeded') problems.push(`cancel/complete ${id}: no cancel won, but it is ${s}`);
          if (finished !== 1) problems.push(`cancel/complete ${id}: succeeded with ${finished} finished executions`);
          for (const r of rs) if (r.previous !== 'succeeded') problems.push(`cancel/complete ${id}: a losing cancel saw ${r.previous}`);
        }
      }
    }

    // 4. retry/retry: failed jobs (first execution throws, one attempt) and every cancelled job above.
    const failing = await enqueue(FAILING, () => ({ failFirst: true, tx: true }), { maxAttempts: 1 });
    await waitFor(
      async () => (await db.count(`SELECT count(*) AS n FROM ${db.jobsTable} WHERE id = ANY ($1::bigint[]) AND status = 'failed'`, [failing])) === FAILING,
      20_000,
      'the failing jobs to fail',
      watched,
    );
    const before = await statusOf([...queued, ...running, ...completing, ...failing]);
    const retried = [...before].filter(([, s]) => s === 'failed' || s === 'cancelled').map(([id]) => id);
    const runsBefore = await ledgerOf(retried);
    const retries = await gatedRace('retry', retried);
    for (const id of retried) {
      const won = (retries.get(id) ?? []).filter((r) => r.changed);
      if (won.length === 1 && won[0]?.previous !== before.get(id)) problems.push(`retry/retry ${id}: the winner saw ${won[0]?.previous}, was ${before.get(id)}`);
    }
    expectOneWinner('retry/retry', retries, retried, ['failed', 'cancelled'], ['queued', 'running', 'succeeded']);
    await waitFor(
      async () => (await db.count(`SELECT count(*) AS n FROM ${db.jobsTable} WHERE id = ANY ($1::bigint[]) AND status <> 'succeeded'`, [retried])) === 0,
      30_000,
      'the retried jobs to run again and succeed',
      { ...watched, intervalMs: 100 },
    ).catch(async (err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}; jobs: ${formatStatuses(await statusCounts(db))}`);
    });
    let ranAgain = 0;
    {
      const runs = await ledgerOf(retried);
      for (const id of retried) {
        const r = runs.get(id);
        const earlier = runsBefore.get(id)?.runs ?? 0;
        const finishedEarlier = runsBefore.get(id)?.finished ?? 0;
        if ((r?.finished ?? 0) - finishedEarlier !== 1) problems.push(`retried ${id}: ${r?.finished} finished executions, ${finishedEarlier} before the retry`);
        if ((r?.runs ?? 0) > earlier) ranAgain += 1;
        else problems.push(`retried ${id}: ${r?.runs} executions, ${earlier} before the retry`);
      }
    }
    const finalStatuses = await statusCounts(db);

    // Every run stopped by a cancel must be told apart from a lost lease by its worker.
    const abortedIds = new Set<string>();
    let leaseLostLogs = 0;
    for (const p of fleet.all) {
      for (const l of fleet.logs(p)) {
        if (typeof l.msg !== 'string') continue;
        if (l.msg.startsWith('job cancelled while running')) abortedIds.add(String(l.jobId));
        if (l.msg.startsWith('lease lost')) leaseLostLogs += 1;
      }
    }
    const aborted = abortedLog();
    const stoppedByCancel = [...running, ...completing].filter((id) =>
      [...(cancelRunning.get(id) ?? []), ...(cancels.get(id) ?? [])].some((r) => r.changed && r.previous === 'running'),
    );
    const notToldCancelled: string[] = [];
    for (const id of stoppedByCancel.filter((x) => !abortedIds.has(x)).slice(0, 3)) {
      const lines = fleet.all.flatMap((p) => fleet.logs(p).filter((l) => String(l.jobId) === id).map((l) => `${p.id}: ${String(l.msg)} ${JSON.stringify(l.detectedBy ?? l.state ?? '')}`));
      notToldCancelled.push(`job ${id}: ${lines.join(' | ') || '(no log lines)'}`);
    }
    const { unexpected, crashes, stops } = await fleet.finish();
    const cq = tally(cancelQueued);
    const cr = tally(cancelRunning);
    const cc = tally(cancels);
    const rr = tally(retries);
    summary('transitions', {
      jobs: QUEUED + RUNNING + COMPLETING + FAILING,
      cancel_cancel: `${QUEUED}+${RUNNING} jobs (queued+running; calls=${cq.calls + cr.calls} winners=${cq.winners + cr.winners} conflicts=${cq.conflicts + cr.conflicts})`,
      cancel_complete: `${COMPLETING} jobs (calls=${cc.calls} cancel_won=${cancelWonQueued}q+${cancelWonRunning}r complete_won=${completeWon} conflicts=${cc.conflicts})`,
      aborted_runs: `${aborted} (cancelled while running=${RUNNING + cancelWonRunning}, lease_lost_logs=${leaseLostLogs})`,
      retry_retry: `${retried.length} jobs (calls=${rr.calls} winners=${rr.winners} conflicts=${rr.conflicts} ran_again=${ranAgain})`,
      final: formatStatuses(finalStatuses),
      problems: problems.length,
      errors: errors.length,
      total: seconds(Date.now() - t0),
      seed,
    });

    expect(errors).toEqual([]);
    expect(problems.slice(0, 20)).toEqual([]);
    expect(cq.winners).toBe(QUEUED);
    expect(cr.winners).toBe(RUNNING);
    expect(rr.winners).toBe(retried.length);
    expect(retried.length).toBe(QUEUED + RUNNING + FAILING + cancelWonQueued + cancelWonRunning);
    // Every run the cancels stopped was aborted by its worker, counted as a cancel.
    expect(notToldCancelled).toEqual([]);
    expect(aborted).toBe(RUNNING + cancelWonRunning);
    expect(leaseLostLogs).toBe(0);
    // The race went both ways.
    expect(cancelWonQueued + cancelWonRunning).toBeGreaterThan(0);
    expect(completeWon).toBeGreaterThan(0);
    expect(unexpected).toEqual([]);
    expect(crashes).toEqual([]);
    expect(stops.map((s) => s.code)).toEqual(Array(WORKERS).fill(0));
  });
});
