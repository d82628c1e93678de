-- Named queries over {{schema}}.jobs. Each block starts with "-- name: <name>" and is
-- loaded once per schema by src/db/queries.ts and run as a prepared statement.
-- Every write by a worker is fenced by the claim's lease_token and status = 'running'.

-- name: enqueue
-- Inserts many jobs in one statement and sends one NOTIFY for the whole statement
-- (none when every job is delayed; inside a caller's transaction it is delivered at commit).
WITH ins AS (
  INSERT INTO {{schema}}.jobs (queue, task, payload, priority, run_at, max_attempts)
  SELECT j.queue, j.task, j.payload, j.priority,
         coalesce(j.run_at, now() + j.delay_ms * interval '1 millisecond'),
         j.max_attempts
  FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::float8[], $7::int[])
       WITH ORDINALITY AS j(queue, task, payload, priority, run_at, delay_ms, max_attempts, ord)
  ORDER BY j.ord
  RETURNING id, run_at
)
SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids,
       CASE WHEN bool_or(run_at <= now()) THEN pg_notify($8, count(*)::text) END AS notified
FROM ins;

-- name: claim
-- $1 task names the worker has handlers for, $2 queues (NULL = all), $3 how many,
-- $4 lease ms, $5 worker id. See claim_jobs in sql/migrations/0001_init.sql.
SELECT id, queue, task, payload, priority, run_at, attempts, max_attempts, lease_token, created_at, started_at
FROM {{schema}}.claim_jobs($1::text[], $2::text[], $3::integer, $4::float8, $5::text);

-- name: complete
UPDATE {{schema}}.jobs
SET status = 'succeeded', finished_at = now(), lease_token = NULL, lease_expires_at = NULL
WHERE id = $1 AND lease_token = $2 AND status = 'running'
RETURNING id;

-- name: fail
-- Requeues with a delay of $3 ms while attempts are left, else marks the job failed.
UPDATE {{schema}}.jobs
SET status      = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
    run_at      = CASE WHEN attempts < max_attempts THEN now() + $3 * interval '1 millisecond' ELSE run_at END,
    finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END,
    last_error = $4, lease_token = NULL, lease_expires_at = NULL
WHERE id = $1 AND lease_token = $2 AND status = 'running'
RETURNING status, run_at;

-- name: heartbeat
-- Renews the leases of all of one worker's running jobs; a job missing from the result
-- is no longer this worker's (reaped, re-claimed or cancelled).
UPDATE {{schema}}.jobs AS j
SET lease_expires_at = now() + $3 * interval '1 millisecond'
FROM unnest($1::bigint[], $2::uuid[]) AS h(id, token)
WHERE j.id = h.id AND j.lease_token = h.token AND j.status = 'running'
RETURNING j.id;

-- name: handBack
-- Graceful shutdown: unfinished jobs go back to the queue at once, without using up an attempt.
UPDATE {{schema}}.jobs AS j
SET status = 'queued', attempts = j.attempts - 1, lease_token = NULL, lease_expires_at = NULL
FROM unnest($1::bigint[], $2::uuid[]) AS h(id, token)
WHERE j.id = h.id AND j.lease_token = h.token AND j.status = 'running'
RETURNING j.id;

-- name: reap
-- Requeues (or fails, when no attempts are left) up to $1 jobs whose lease expired.
-- Rows are locked with SKIP LOCKED and re-checked, so concurrent reapers never double-act.
UPDATE {{schema}}.jobs AS j
SET status      = CASE WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,
    finished_at = CASE WHEN j.attempts < j.max_attempts THEN NULL ELSE now() END,
    last_error  = 'lease expired (worker ' || coalesce(j.locked_by, 'unknown') || ')',
    lease_token = NULL, lease_expires_at = NULL
WHERE j.id = ANY (ARRAY(
    SELECT r.id FROM {{schema}}.jobs AS r
    WHERE r.status = 'running' AND r.lease_expires_at < now()
    ORDER BY r.id
    LIMIT $1
    FOR UPDATE SKIP LOCKED))
  AND j.status = 'running' AND j.lease_expires_at < now()
RETURNING j.id, j.queue, j.task, j.attempts, j.status;

-- name: queueDepth
SELECT queue, status, count(*)::bigint AS jobs
FROM {{schema}}.jobs
GROUP BY queue, status;

-- name: getJob
SELECT id, queue, task, payload, status, priority, run_at, attempts, max_attempts,
       lease_expires_at, locked_by, last_error, created_at, started_at, finished_at
FROM {{schema}}.jobs
WHERE id = $1;
