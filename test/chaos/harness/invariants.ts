/** What every load scenario checks: figures from the jobs table and the ledger, and the invariants over them. */
import { type ChaosDb, formatStatuses, statusCounts } from './ledger.js';

export interface LedgerFigures {
  jobs: number;
  statuses: Record<string, number>;
  /** Executions recorded (ledger rows). */
  executions: number;
  /** Jobs with at least one execution. */
  executedJobs: number;
  /** Jobs with no execution at all. */
  lost: number;
  /** executions - jobs. */
  reexecutions: number;
  /** Superseded executions (not the completing one) by processes the harness killed. */
  supersededKilled: number;
  /** Superseded executions by processes that were never killed (lease lost while alive, or handler error). */
  supersededAlive: number;
  /**
   * Superseded executions whose handler had finished (its ledger row has finished_at): the
   * run was not interrupted, its result was lost before it was written (results are
   * written in batches a few ms later; a kill or an outage longer than the retry window
   * drops the ones waiting) or refused (lease lost meanwhile).
   */
  unrecorded: number;
  /** reexecutions - unrecorded: re-runs of executions that a fault interrupted. */
  interrupted: number;
  /** Succeeded jobs whose completing attempt has no finished ledger row. */
  winnerMissing: number;
  /** Jobs with more than one execution recorded as the completing one. */
  duplicatesSucceeded: number;
  /** (job, attempt) pairs executed more than once: two claims with one token. */
  doubleClaims: number;
  /** The most executions any one job had. */
  maxExecutionsPerJob: number;
}

/**
 * Reads the jobs table and the ledger. The completing execution of a succeeded job is the
 * ledger row of its final attempt; with `tx` jobs it is also the only row whose finished_at
 * committed, so a second finished row would be a second completion.
 */
export async function ledgerFigures(chaos: ChaosDb, killedPids: readonly number[]): Promise<LedgerFigures> {
  const j = chaos.jobsTable;
  const l = chaos.ledger;
  const statuses = await statusCounts(chaos);
  const [row] = await chaos.rows<Record<string, string>>(
    `WITH per_job AS (
       SELECT j.id, j.status, j.attempts, (j.payload->>'tx')::boolean IS TRUE AS tx,
              count(l.id) AS runs,
              count(l.id) FILTER (WHERE l.attempt = j.attempts AND l.finished_at IS NOT NULL) AS winner_runs,
              count(l.id) FILTER (WHERE l.finished_at IS NOT NULL) AS finished_runs
       FROM ${j} AS j LEFT JOIN ${l} AS l ON l.job_id = j.id
       GROUP BY j.id)
     SELECT count(*) AS jobs,
            coalesce(sum(runs), 0) AS executions,
            count(*) FILTER (WHERE runs > 0) AS executed_jobs,
            count(*) FILTER (WHERE runs = 0) AS lost,
            count(*) FILTER (WHERE status = 'succeeded' AND winner_runs = 0) AS winner_missing,
            count(*) FILTER (WHERE winner_runs > 1 OR (tx AND finished_runs > 1)) AS duplicates_succeeded,
            coalesce(max(runs), 0) AS max_runs,
            (SELECT count(*) FROM (SELECT 1 FROM ${l} GROUP BY job_id, attempt HAVING count(*) > 1) AS d) AS double_claims,
            (SELECT count(*) FROM ${l} AS s JOIN ${j} AS jj ON jj.id = s.job_id
              WHERE NOT (jj.status = 'succeeded' AND s.attempt = jj.attempts) AND s.pid = ANY($1::int[])) AS superseded_killed,
            (SELECT count(*) FROM ${l} AS s JOIN ${j} AS jj ON jj.id = s.job_id
              WHERE NOT (jj.status = 'succeeded' AND s.attempt = jj.attempts) AND NOT s.pid = ANY($1::int[])) AS superseded_alive,
            (SELECT count(*) FROM ${l} AS s JOIN ${j} AS jj ON jj.id = s.job_id
              WHERE NOT (jj.status = 'succeeded' AND s.attempt = jj.attempts) AND s.finished_at IS NOT NULL) AS unrecorded
     FROM per_job`,
    [killedPids],
  );
  const n = (k: string): number => Number(row?.[k] ?? 0);
  return {
    jobs: n('jobs'),
    statuses,
    executions: n('executions'),
    executedJobs: n('executed_jobs'),
    lost: n('lost'),
    reexecutions: n('executions') - n('jobs'),
    supersededKilled: n('superseded_killed'),
    supersededAlive: n('superseded_alive'),
    unrecorded: n('unrecorded'),
    interrupted: n('executions') - n('jobs') - n('unrecorded'),
    winnerMissing: n('winner_missing'),
    duplicatesSucceeded: n('duplicates_succeeded'),
    doubleClaims: n('double_claims'),
    maxExecutionsPerJob: n('max_runs'),
  };
}

/**
 * For every execution a kill interrupted: how long after the kill the job's next execution
 * started (ms). Kill times are this machine's clock, as are the server's timestamps.
 */
export async function rescueTimes(chaos: ChaosDb, kills: ReadonlyArray<{ pid: number; at: number }>): Promise<number[]> {
  if (kills.length === 0) return [];
  const rows = await chaos.rows<{ ms: number }>(
    `WITH k AS (SELECT * FROM unnest($1::int[], $2::float8[]) AS k(pid, at_ms))
     SELECT (extract(epoch FROM nxt.started_at) * 1000 - k.at_ms)::float8 AS ms
     FROM ${chaos.ledger} AS s
     JOIN k ON k.pid = s.pid
     JOIN ${chaos.jobsTable} AS j ON j.id = s.job_id
     JOIN LATERAL (SELECT n.started_at FROM ${chaos.ledger} AS n WHERE n.job_id = s.job_id AND n.attempt > s.attempt
                   ORDER BY n.attempt, n.started_at LIMIT 1) AS nxt ON true
     WHERE NOT (j.status = 'succeeded' AND s.attempt = j.attempts)`,
    [kills.map((k) => k.pid), kills.map((k) => k.at)],
  );
  return rows.map((r) => Number(r.ms));
}

/**
 * The invariants every load scenario keeps: all jobs succeeded, none lost, each completed by
 * exactly one execution of its final attempt, no attempt claimed twice, and re-runs of
 * interrupted executions within `bound` (a fault interrupts at most what was running).
 * Re-runs of executions that had finished but whose result was not yet written are counted
 * apart (`unrecorded`): batched result writing trades them for throughput. Returns the
 * list of violations (empty when all hold).
 */
export function coreViolations(f: LedgerFigures, expectedJobs: number, bound: number): string[] {
  const out: string[] = [];
  if (f.jobs !== expectedJobs) out.push(`jobs table has ${f.jobs} jobs, expected ${expectedJobs}`);
  if ((f.statuses.succeeded ?? 0) !== expectedJobs) out.push(`statuses ${formatStatuses(f.statuses)}: not all ${expectedJobs} succeeded`);
  if (f.lost !== 0) out.push(`${f.lost} jobs never executed (lost)`);
  if (f.winnerMissing !== 0) out.push(`${f.winnerMissing} succeeded jobs have no finished execution of their final attempt`);
  if (f.duplicatesSucceeded !== 0) out.push(`${f.duplicatesSucceeded} jobs were completed by more than one execution`);
  if (f.doubleClaims !== 0) out.push(`${f.doubleClaims} (job, attempt) pairs were executed twice: double claim`);
  if (f.interrupted > bound) out.push(`${f.interrupted} re-executions of interrupted runs exceed the bound ${bound}`);
  return out;
}

/**
 * The summary fields of the ledger invariants: re-executions (interrupted against `bound`,
 * unrecorded results, and with `byProcess` who ran the superseded executions), lost jobs,
 * duplicate completions and double claims.
 */
export function ledgerSummary(f: LedgerFigures, bound: number, options: { byProcess?: boolean } = {}): Record<string, string | number> {
  const byProcess = options.byProcess ? `; by_killed=${f.supersededKilled} by_alive=${f.supersededAlive}` : '';
  return {
    reexecutions: `${f.reexecutions} (interrupted=${f.interrupted} bound ${bound}; unrecorded_results=${f.unrecorded}${byProcess})`,
    lost: f.lost,
    duplicates_succeeded: f.duplicatesSucceeded,
    double_claims: f.doubleClaims,
  };
}
