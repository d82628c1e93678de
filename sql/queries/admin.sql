-- Named queries of the admin surfaces (src/db/adminstore.ts: `skiplock jobs list|retry|
-- cancel|delete|why`, `skiplock stats`, the dashboard) and of the workers' presence rows.
-- They run unnamed (planned with their values, see sql/functions/find_jobs.sql), except the
-- workers' own statements, which run often and are prepared.
-- Filters: $1 statuses (NULL: all), $2 queue, $3 task, $4 schedule, $5 created more than $5
-- ms ago; NULL leaves a filter out.

-- name: listJobs
-- One page, newest first: the jobs before id $6 (NULL: from the newest), at most $7.
SELECT j.id::text AS id, j.queue, j.task, j.status, j.priority, j.run_at, j.attempts, j.max_attempts,
       j.locked_by, left(j.last_error, 300) AS last_error, j.created_at, j.started_at, j.finished_at,
       j.schedule_name
FROM {{schema}}.find_jobs($1::text[], $2::text, $3::text, $4::text, now() - $5::float8 * interval '1 millisecond',
                          $6::bigint, $7::int) AS j;

-- name: countJobs
SELECT count(*)::bigint AS n
FROM {{schema}}.find_jobs($1::text[], $2::text, $3::text, $4::text, now() - $5::float8 * interval '1 millisecond',
                          NULL, NULL);

-- name: retryBatch
-- One batch of a bulk retry: the next $7 jobs of the filter before id $6 (the statuses in $1
-- are a subset of failed and cancelled), then the single retry's transition on those still
-- failed or cancelled: locked in id order (as result flushes lock theirs: no deadlock) and
-- re-checked on their latest version. Returns the batch's lowest id (the next cursor), how
-- many it looked at and how many changed; notifies $8 with the count. An enqueue of a dedupe
-- key racing the batch can still make it fail on jobs_dedupe_idx: the caller runs it again.
WITH candidates AS (
  SELECT c.id FROM {{schema}}.find_jobs($1::text[], $2::text, $3::text, $4::text,
                                        now() - $5::float8 * interval '1 millisecond', $6::bigint, $7::int) AS c
), target AS (
  SELECT j.id FROM {{schema}}.jobs AS j
  WHERE j.id IN (SELECT id FROM candidates) AND j.status IN ('failed', 'cancelled')
    -- A dedupe key admits one queued or running job: a job whose key is held now is left
    -- as it is, and of several with one key in the batch only the newest goes back.
    AND (j.dedupe_key IS NULL OR (
      NOT EXISTS (SELECT 1 FROM {{schema}}.jobs AS d
                  WHERE d.dedupe_key = j.dedupe_key AND d.status IN ('queued', 'running'))
      AND j.id = (SELECT max(s.id) FROM {{schema}}.jobs AS s
                  WHERE s.id IN (SELECT id FROM candidates) AND s.dedupe_key = j.dedupe_key)))
  ORDER BY j.id
  FOR UPDATE
), changed AS (
  UPDATE {{schema}}.jobs AS j
  SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL, started_at = NULL
  FROM target AS t
  WHERE j.id = t.id
  RETURNING j.id
), counted AS (
  SELECT count(*)::int AS n FROM changed
)
SELECT (SELECT min(id) FROM candidates)::text AS cursor, (SELECT count(*) FROM candidates)::int AS seen, counted.n AS changed,
       CASE WHEN counted.n > 0 THEN pg_notify($8::text, counted.n::text) END AS notified
FROM counted;

-- name: cancelBatch
-- One batch of a bulk cancel ($1 a subset of queued and running): the single cancel's
-- transition. A running job's worker finds out at its next heartbeat; its result is fenced
-- out (the lease token is gone).
WITH candidates AS (
  SELECT c.id FROM {{schema}}.find_jobs($1::text[], $2::text, $3::text, $4::text,
                                        now() - $5::float8 * interval '1 millisecond', $6::bigint, $7::int) AS c
), target AS (
  SELECT j.id, j.status FROM {{schema}}.jobs AS j
  WHERE j.id IN (SELECT id FROM candidates) AND j.status IN ('queued', 'running')
  ORDER BY j.id
  FOR UPDATE
), changed AS (
  UPDATE {{schema}}.jobs AS j
  SET status = 'cancelled', finished_at = now(), lease_token = NULL, lease_expires_at = NULL,
      attempt_log = CASE WHEN t.status = 'running' THEN {{schema}}.log_attempt(j, 'cancelled', NULL, NULL) ELSE j.attempt_log END
  FROM target AS t
  WHERE j.id = t.id
  RETURNING j.id
)
SELECT (SELECT min(id) FROM candidates)::text AS cursor, (SELECT count(*) FROM candidates)::int AS seen,
       (SELECT count(*) FROM changed)::int AS changed;

-- name: deleteBatch
-- One batch of a bulk delete ($1 a subset of queued, succeeded, failed and cancelled):
-- running jobs are never deleted (cancel them first).
WITH candidates AS (
  SELECT c.id FROM {{schema}}.find_jobs($1::text[], $2::text, $3::text, $4::text,
                                        now() - $5::float8 * interval '1 millisecond', $6::bigint, $7::int) AS c
), target AS (
  SELECT j.id FROM {{schema}}.jobs AS j
  WHERE j.id IN (SELECT id FROM candidates) AND j.status IN ('queued', 'succeeded', 'failed', 'cancelled')
  ORDER BY j.id
  FOR UPDATE
), changed AS (
  DELETE FROM {{schema}}.jobs AS j
  USING target AS t
  WHERE j.id = t.id
  RETURNING j.id
)
SELECT (SELECT min(id) FROM candidates)::text AS cursor, (SELECT count(*) FROM candidates)::int AS seen,
       (SELECT count(*) FROM changed)::int AS changed;

-- name: deleteJob
-- One job, unless it is running. Returns its status before (no row: no such job).
WITH target AS (
  SELECT id, status FROM {{schema}}.jobs WHERE id = $1::bigint FOR UPDATE
), changed AS (
  DELETE FROM {{schema}}.jobs AS j
  USING target AS t
  WHERE j.id = t.id AND t.status <> 'running'
  RETURNING j.id
)
SELECT t.status AS previous, (SELECT count(*) FROM changed) = 1 AS changed FROM target AS t;

-- name: stats
-- Per queue and task: jobs by status, the oldest due job's wait, what finished and started
-- in the last minute and hour (succeeded jobs count only while they are kept: retention),
-- errors of attempts in the last hour (from the attempt history), and the wait from due to
-- start of the jobs started in the last hour (p50, p95, p99, ms). One pass over the table.
WITH per_job AS (
  SELECT j.queue, j.task, j.status, j.run_at, j.started_at, j.finished_at,
         CASE WHEN j.attempt_log IS NOT NULL THEN (
           SELECT count(*) FROM jsonb_array_elements(j.attempt_log) AS e
           WHERE e ->> 'outcome' IN ('error', 'lease_expired') AND (e ->> 'ended_at')::timestamptz > now() - interval '1 hour')
         ELSE 0 END AS errors_1h
  FROM {{schema}}.jobs AS j
)
SELECT p.queue, p.task,
       count(*) FILTER (WHERE p.status = 'queued' AND p.run_at <= now())::int AS queued,
       count(*) FILTER (WHERE p.status = 'queued' AND p.run_at > now())::int AS scheduled,
       count(*) FILTER (WHERE p.status = 'running')::int AS running,
       count(*) FILTER (WHERE p.status = 'succeeded')::int AS succeeded,
       count(*) FILTER (WHERE p.status = 'failed')::int AS failed,
       count(*) FILTER (WHERE p.status = 'cancelled')::int AS cancelled,
       (extract(epoch FROM now() - min(p.run_at) FILTER (WHERE p.status = 'queued' AND p.run_at <= now())) * 1000)::float8 AS oldest_wait_ms,
       count(*) FILTER (WHERE p.status = 'succeeded' AND p.finished_at > now() - interval '1 minute')::int AS succeeded_1m,
       count(*) FILTER (WHERE p.status = 'succeeded' AND p.finished_at > now() - interval '1 hour')::int AS succeeded_1h,
       count(*) FILTER (WHERE p.status = 'failed' AND p.finished_at > now() - interval '1 minute')::int AS failed_1m,
       count(*) FILTER (WHERE p.status = 'failed' AND p.finished_at > now() - interval '1 hour')::int AS failed_1h,
       coalesce(sum(p.errors_1h), 0)::int AS errors_1h,
       count(*) FILTER (WHERE p.started_at > now() - interval '1 hour')::int AS started_1h,
       (percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM p.started_at - p.run_at) * 1000)
          FILTER (WHERE p.started_at > now() - interval '1 hour'))::float8 AS wait_p50_ms,
       (percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM p.started_at - p.run_at) * 1000)
          FILTER (WHERE p.started_at > now() - interval '1 hour'))::float8 AS wait_p95_ms,
       (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM p.started_at - p.run_at) * 1000)
          FILTER (WHERE p.started_at > now() - interval '1 hour'))::float8 AS wait_p99_ms
FROM per_job AS p
GROUP BY p.queue, p.task
ORDER BY p.queue, p.task;

-- name: why
-- Everything `jobs why` weighs for job $1, in one statement: the row, its queue's settings,
-- the queue's running jobs and recent starts, its concurrency key's running jobs (up to 10
-- ids), the live workers that would take it, and the due jobs ahead of it in claim order in
-- its (queue, task), counted up to 10,001 (a range of jobs_claim_pair_idx). No row: no such job.
SELECT j.id::text AS id, j.queue, j.task, j.status, j.priority, j.run_at, j.attempts, j.max_attempts,
       j.locked_by, j.lease_expires_at, j.last_error, j.started_at, j.finished_at,
       j.concurrency_key, j.concurrency_limit, now() AS now,
       coalesce(q.paused, false) AS queue_paused, q.concurrency_limit AS queue_concurrency_limit,
       q.rate_limit AS queue_rate_limit, q.rate_window_ms AS queue_rate_window_ms,
       (SELECT count(*) FROM {{schema}}.jobs AS r WHERE r.status = 'running' AND r.queue = j.queue)::int AS queue_running,
       CASE WHEN q.rate_limit IS NOT NULL THEN (
         SELECT coalesce(sum(s.n), 0) FROM {{schema}}.queue_starts AS s
         WHERE s.queue = j.queue AND s.claimed_at > now() - q.rate_window_ms * interval '1 millisecond') END::int AS queue_recent_starts,
       CASE WHEN q.rate_limit IS NOT NULL THEN (
         SELECT min(s.claimed_at) + q.rate_window_ms * interval '1 millisecond' FROM {{schema}}.queue_starts AS s
         WHERE s.queue = j.queue AND s.claimed_at > now() - q.rate_window_ms * interval '1 millisecond') END AS queue_rate_frees_at,
       CASE WHEN j.concurrency_key IS NOT NULL THEN ARRAY(
         SELECT k.id::text FROM {{schema}}.jobs AS k
         WHERE k.status = 'running' AND k.concurrency_key = j.concurrency_key ORDER BY k.id LIMIT 10) END AS key_holders,
       CASE WHEN j.concurrency_key IS NOT NULL THEN (
         SELECT count(*) FROM {{schema}}.jobs AS k
         WHERE k.status = 'running' AND k.concurrency_key = j.concurrency_key) END::int AS key_running,
       (SELECT count(*) FROM {{schema}}.workers AS w
        WHERE w.seen_at > now() - w.ttl_ms * interval '1 millisecond'
          AND j.task = ANY (w.tasks) AND (w.queues IS NULL OR j.queue = ANY (w.queues)))::int AS live_workers,
       (SELECT count(*) FROM {{schema}}.workers AS w
        WHERE w.seen_at > now() - w.ttl_ms * interval '1 millisecond')::int AS all_live_workers,
       CASE WHEN j.status = 'queued' THEN (
         SELECT count(*) FROM (
           SELECT 1 FROM {{schema}}.jobs AS a
           WHERE a.status = 'queued' AND a.queue = j.queue AND a.task = j.task AND a.run_at <= now()
             AND (a.priority, a.run_at, a.id) < (j.priority, j.run_at, j.id)
           LIMIT 10001) AS ahead) END::int AS due_ahead
FROM {{schema}}.jobs AS j
LEFT JOIN {{schema}}.queues AS q ON q.name = j.queue
WHERE j.id = $1::bigint;

-- name: registerWorker
-- A worker's presence row, written at start ($1 id, $2 host, $3 pid, $4 version, $5 tasks,
-- $6 queues or NULL, $7 concurrency, $8 ttl ms).
INSERT INTO {{schema}}.workers AS w (id, host, pid, version, tasks, queues, concurrency, ttl_ms)
VALUES ($1::text, $2::text, $3::int, $4::text, $5::text[], $6::text[], $7::int, $8::int)
ON CONFLICT (id) DO UPDATE
SET host = EXCLUDED.host, pid = EXCLUDED.pid, version = EXCLUDED.version, tasks = EXCLUDED.tasks,
    queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, ttl_ms = EXCLUDED.ttl_ms, seen_at = now();

-- name: touchWorker
-- The worker is alive: renews its row (made again if someone removed it), committed
-- asynchronously (a lost renewal is made good by the next one). Also removes rows of workers
-- gone for a day (they died without stopping).
WITH gone AS (
  DELETE FROM {{schema}}.workers AS g
  WHERE g.seen_at < now() - interval '1 day' - g.ttl_ms * interval '1 millisecond' AND g.id <> $1::text
)
INSERT INTO {{schema}}.workers AS w (id, host, pid, version, tasks, queues, concurrency, ttl_ms)
SELECT $1::text, $2::text, $3::int, $4::text, $5::text[], $6::text[], $7::int, $8::int
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async (x)
ON CONFLICT (id) DO UPDATE SET seen_at = now(), ttl_ms = EXCLUDED.ttl_ms;

-- name: removeWorker
DELETE FROM {{schema}}.workers WHERE id = $1::text;

-- name: listWorkers
-- Live workers first, then the ones not seen within their ttl (dead, or stalled).
SELECT w.id, w.host, w.pid, w.version, w.tasks, w.queues, w.concurrency, w.started_at, w.seen_at,
       w.seen_at > now() - w.ttl_ms * interval '1 millisecond' AS alive,
       (SELECT count(*) FROM {{schema}}.jobs AS j WHERE j.status = 'running' AND j.locked_by = w.id)::int AS running
FROM {{schema}}.workers AS w
ORDER BY alive DESC, w.started_at;

-- name: unhandledTasks
-- For the warning of `skiplock enqueue`: which of the pairs (task $1[i], queue $2[i]) no live
-- worker handles: no row of workers (migration 0010: each worker writes its row at start,
-- renews it every few seconds and deletes it when it stops) renewed within its ttl takes
-- that task from that queue. A small table: a cheap query, run once per CLI enqueue (and per batch of `--stdin`).
SELECT p.task, p.queue
FROM unnest($1::text[], $2::text[]) AS p (task, queue)
WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.workers AS w
                  WHERE w.seen_at > now() - w.ttl_ms * interval '1 millisecond'
                    AND p.task = ANY (w.tasks) AND (w.queues IS NULL OR p.queue = ANY (w.queues)))
ORDER BY 1, 2;
