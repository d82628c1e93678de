-- Named queries over {{schema}}.jobs. Each block starts with "-- name: <name>" and is
-- loaded once per schema by src/db/queries.ts and run by src/db/jobstore.ts (the one place
-- that runs statements), as a prepared statement unless it says otherwise.
-- Every write by a worker is fenced by the claim's lease_token and status = 'running'.
-- Database functions called here are defined in sql/functions/<name>.sql.

-- name: enqueue
-- Inserts many jobs in one statement and sends one NOTIFY for the whole statement
-- (none when every job is delayed; inside a caller's transaction it is delivered at commit).
-- $12: 'off' to commit this transaction without waiting for its WAL to reach disk
-- (Producer synchronousCommit: false), else NULL; the same in enqueueDedupe ($13) and
-- enqueueHandoff ($8). set_config(..., true) lasts until the transaction ends. $13: each
-- job's W3C trace context (NULL: not traced); $14 in enqueueDedupe, $9 in enqueueHandoff.
WITH ins AS (
  INSERT INTO {{schema}}.jobs (queue, task, payload, priority, run_at, max_attempts,
                               concurrency_key, concurrency_limit, timeout_ms, traceparent)
  SELECT j.queue, j.task, j.payload, j.priority,
         coalesce(j.run_at, now() + j.delay_ms * interval '1 millisecond'),
         j.max_attempts, j.concurrency_key, j.concurrency_limit, j.timeout_ms, j.traceparent
  FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::float8[], $7::int[],
              $8::text[], $9::int[], $10::int[], $13::text[])
       WITH ORDINALITY AS j(queue, task, payload, priority, run_at, delay_ms, max_attempts,
                            concurrency_key, concurrency_limit, timeout_ms, traceparent, ord)
  ORDER BY j.ord
  RETURNING id, run_at
)
SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids,
       CASE WHEN bool_or(run_at <= now()) THEN pg_notify($11, count(*)::text) END AS notified,
       CASE WHEN $12::text IS NOT NULL THEN set_config('synchronous_commit', $12::text, true) END AS commit_mode
FROM ins;

-- name: enqueueHandoff
-- Inserts one due job (no delay, dedupe or concurrency key) and, when an idle worker of its
-- task and queue is registered in waiters and the queue is neither paused nor limited
-- (queues), hands it over in the same statement: the job is
-- inserted claimed by that worker (running, attempt 1, a lease token of the claim's scheme,
-- lease_token.sql) and the claimed job (claimed_job.sql) goes to the worker's own channel.
-- The id is drawn first, since the token is made of it. The waiter row is taken with SKIP
-- LOCKED, so producers never wait for each other. Without a waiter, the job is queued and
-- the usual NOTIFY goes out. $1 queue, $2 task, $3 payload, $4 priority, $5 max attempts,
-- $6 timeout ms, $7 the shared channel, $8 the commit mode (see enqueue).
WITH w AS (
  UPDATE {{schema}}.waiters AS w
  SET slots = w.slots - 1, handed = w.handed + 1
  WHERE w.worker = (
    SELECT c.worker FROM {{schema}}.waiters AS c
    WHERE c.slots > 0 AND c.expires_at > now()
      AND $2::text = ANY (c.tasks) AND (c.queues IS NULL OR $1::text = ANY (c.queues))
      -- never for a paused queue, nor one with a limit (only claims count towards limits)
      AND NOT EXISTS (SELECT 1 FROM {{schema}}.queues AS s
                      WHERE s.name = $1::text AND (s.paused OR s.concurrency_limit IS NOT NULL OR s.rate_limit IS NOT NULL))
    ORDER BY c.slots DESC
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
  RETURNING w.worker, w.channel, w.lease_ms
), ins AS (
  INSERT INTO {{schema}}.jobs AS j (id, queue, task, payload, priority, max_attempts, timeout_ms, traceparent,
                                    status, attempts, lease_token, lease_expires_at, locked_by, started_at)
  SELECT n.id, $1::text, $2::text, $3::jsonb, $4::int, $5::int, $6::int, $9::text,
         CASE WHEN w.worker IS NULL THEN 'queued' ELSE 'running' END,
         CASE WHEN w.worker IS NULL THEN 0 ELSE 1 END,
         CASE WHEN w.worker IS NULL THEN NULL ELSE {{schema}}.lease_token({{schema}}.lease_nonce(), n.id) END,
         now() + w.lease_ms * interval '1 millisecond',
         w.worker,
         CASE WHEN w.worker IS NULL THEN NULL ELSE now() END
  FROM (SELECT nextval('{{schema}}.jobs_id_seq') AS id) AS n LEFT JOIN w ON true
  RETURNING j.id, CASE WHEN j.status = 'running' THEN (SELECT row_to_json(c) FROM {{schema}}.claimed_job(j) AS c) END AS claimed
)
SELECT ins.id,
       CASE WHEN w.worker IS NULL THEN pg_notify($7::text, '1')
            ELSE pg_notify(w.channel, ins.claimed::text) END AS notified,
       w.worker IS NOT NULL AS handed_off,
       CASE WHEN $8::text IS NOT NULL THEN set_config('synchronous_commit', $8::text, true) END AS commit_mode
FROM ins LEFT JOIN w ON true;

-- name: enqueueDedupe
-- As enqueue, for jobs that may carry dedupe keys: a job whose key is already queued or
-- running (or earlier in the same statement) is not inserted; the caller looks it up.
-- Ids come back in insertion order, which is input order.
WITH ins AS (
  INSERT INTO {{schema}}.jobs (queue, task, payload, priority, run_at, max_attempts,
                               concurrency_key, concurrency_limit, timeout_ms, dedupe_key, traceparent)
  SELECT j.queue, j.task, j.payload, j.priority,
         coalesce(j.run_at, now() + j.delay_ms * interval '1 millisecond'),
         j.max_attempts, j.concurrency_key, j.concurrency_limit, j.timeout_ms, j.dedupe_key, j.traceparent
  FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::int[], $5::timestamptz[], $6::float8[], $7::int[],
              $8::text[], $9::int[], $10::int[], $12::text[], $14::text[])
       WITH ORDINALITY AS j(queue, task, payload, priority, run_at, delay_ms, max_attempts,
                            concurrency_key, concurrency_limit, timeout_ms, dedupe_key, traceparent, ord)
  ORDER BY j.ord
  ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running') DO NOTHING
  RETURNING id, run_at, dedupe_key
)
SELECT coalesce(array_agg(id ORDER BY id), '{}') AS ids,
       coalesce(array_agg(dedupe_key ORDER BY id), '{}') AS keys,
       CASE WHEN bool_or(run_at <= now()) THEN pg_notify($11, count(*)::text) END AS notified,
       CASE WHEN $13::text IS NOT NULL THEN set_config('synchronous_commit', $13::text, true) END AS commit_mode
FROM ins;

-- name: findByDedupeKey
-- The queued or running job holding each of these dedupe keys.
SELECT id, dedupe_key
FROM {{schema}}.jobs
WHERE dedupe_key = ANY ($1::text[]) AND status IN ('queued', 'running');

-- name: claim
-- $1 task names the worker has handlers for, $2 queues (NULL = all), $3 how many,
-- $4 how many it could start at once (the most a queue with a limit gives it), $5 lease ms,
-- $6 worker id. The claim itself is sql/functions/claim_jobs.sql; each claimed row goes to
-- the worker as a claimed job (sql/functions/claimed_job.sql).
SELECT c.*
FROM {{schema}}.claim_jobs($1::text[], $2::text[], $3::integer, $4::integer, $5::float8, $6::text) AS j
CROSS JOIN LATERAL {{schema}}.claimed_job(j) AS c;

-- name: complete
UPDATE {{schema}}.jobs
SET status = 'succeeded', finished_at = now(), lease_token = NULL, lease_expires_at = NULL
WHERE id = $1 AND lease_token = $2 AND status = 'running'
RETURNING id;

-- name: completeMany
-- Marks many jobs succeeded in one statement, each fenced by id, lease token and status =
-- 'running'. A lease token is issued for one row of one claim, so a row holding one of our
-- tokens is ours: no id-token pairing is needed. Returns one row: how many were written
-- and, only when that is fewer than asked for, the ids written.
-- A large batch runs unprepared (planned for its actual arrays), not as a named statement:
-- a generic plan cannot hash the token list and compares every row with every token
-- (O(n^2) for a batch); the planned form hashes the tokens and finds the rows by an index
-- on id. Measured for batches of 1000: about half the time of the prepared form, planning
-- included. Batches of up to 32 run prepared (JobStore.completeMany): there the planning
-- costs more than the comparisons.
WITH done AS (
  UPDATE {{schema}}.jobs AS j
  SET status = 'succeeded', finished_at = now(), lease_token = NULL, lease_expires_at = NULL
  WHERE j.id = ANY ($1::bigint[]) AND j.lease_token = ANY ($2::uuid[]) AND j.status = 'running'
  RETURNING j.id
)
SELECT count(*)::int AS written,
       CASE WHEN count(*) < cardinality($1::bigint[]) THEN array_agg(id)::text END AS ids
FROM done;

-- name: deleteCompletedMany
-- As completeMany for a worker that keeps no succeeded jobs: they are deleted at once.
-- Prepared or not by batch size, as completeMany.
WITH done AS (
  DELETE FROM {{schema}}.jobs AS j
  WHERE j.id = ANY ($1::bigint[]) AND j.lease_token = ANY ($2::uuid[]) AND j.status = 'running'
  RETURNING j.id
)
SELECT count(*)::int AS written,
       CASE WHEN count(*) < cardinality($1::bigint[]) THEN array_agg(id)::text END AS ids
FROM done;

-- name: deleteCompleted
-- complete for a worker that keeps no succeeded jobs (inside ctx.transaction).
DELETE FROM {{schema}}.jobs
WHERE id = $1 AND lease_token = $2 AND status = 'running'
RETURNING id;

-- name: prune
-- Deletes up to $3 finished jobs in statuses $1 that finished more than $2 ms ago, oldest
-- first. SKIP LOCKED and the re-check keep concurrent pruners (and retries) apart.
DELETE FROM {{schema}}.jobs AS j
WHERE j.id = ANY (ARRAY(
    SELECT p.id FROM {{schema}}.jobs AS p
    WHERE p.finished_at IS NOT NULL AND p.finished_at < now() - $2 * interval '1 millisecond'
      AND p.status = ANY ($1::text[])
    ORDER BY p.finished_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED))
  AND j.status = ANY ($1::text[]) AND j.finished_at < now() - $2 * interval '1 millisecond'
RETURNING j.status;

-- name: finishMany
-- Records many results in one statement: $3 ok -> succeeded; else requeued after $4 ms
-- while attempts are left, or failed, with error $5. Fenced per row by id, lease token and
-- status = 'running'; rows are locked in id order, so flushes never deadlock each other.
WITH f AS (
  SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::boolean[], $4::float8[], $5::text[])
    AS f(id, token, ok, delay_ms, error)
)
UPDATE {{schema}}.jobs AS j
SET status      = CASE WHEN f.ok THEN 'succeeded' WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,
    run_at      = CASE WHEN NOT f.ok AND j.attempts < j.max_attempts THEN now() + f.delay_ms * interval '1 millisecond' ELSE j.run_at END,
    finished_at = CASE WHEN f.ok OR j.attempts >= j.max_attempts THEN now() END,
    last_error  = CASE WHEN f.ok THEN j.last_error ELSE f.error END,
    attempt_log = CASE WHEN f.ok THEN j.attempt_log ELSE {{schema}}.log_attempt(j, 'error', f.error,
                    CASE WHEN j.attempts < j.max_attempts THEN now() + f.delay_ms * interval '1 millisecond' END) END,
    lease_token = NULL, lease_expires_at = NULL
FROM f
-- The subquery locks the rows still running (re-checked on their latest version); the
-- update then goes by primary key, matching each row's token.
WHERE j.id = ANY (ARRAY(
    SELECT l.id FROM {{schema}}.jobs AS l
    WHERE l.id = ANY ($1::bigint[]) AND l.status = 'running'
    ORDER BY l.id
    FOR UPDATE OF l))
  AND j.id = f.id AND j.lease_token = f.token
RETURNING j.id, j.status;

-- name: heartbeat
-- Renews the leases of all of one worker's jobs. Rows another statement has locked at the
-- moment are skipped, not waited for (no deadlock with result flushes); they count as held
-- while they still carry our token. Returns one row per job asked about: held = false when
-- the job is no longer this worker's, with its status now (cancelled, or reaped/re-claimed).
WITH h AS (
  SELECT * FROM unnest($1::bigint[], $2::uuid[]) AS h(id, token)
), renewed AS (
  UPDATE {{schema}}.jobs AS j
  SET lease_expires_at = now() + $3 * interval '1 millisecond'
  WHERE j.id = ANY (ARRAY(
    SELECT c.id FROM {{schema}}.jobs AS c JOIN h ON c.id = h.id AND c.lease_token = h.token
    WHERE c.status = 'running'
    ORDER BY c.id
    FOR UPDATE OF c SKIP LOCKED))
  RETURNING j.id
)
SELECT x.id, x.renewed OR (x.status = 'running' AND x.lease_token = x.token) AS held, x.status
FROM (
  SELECT h.id, h.token, r.id IS NOT NULL AS renewed,
         -- per-row index look-ups, only for the jobs not renewed
         CASE WHEN r.id IS NULL THEN (SELECT j.status FROM {{schema}}.jobs AS j WHERE j.id = h.id) END AS status,
         CASE WHEN r.id IS NULL THEN (SELECT j.lease_token FROM {{schema}}.jobs AS j WHERE j.id = h.id) END AS lease_token
  FROM h LEFT JOIN renewed AS r ON r.id = h.id
) AS x;

-- name: registerWaiter
-- An idle worker offers $6 slots for hand-offs until $7 ms from now. Slots already handed to
-- it but not yet received ($8: hand-offs it has received since it first registered) are
-- taken off, so it is never offered more than it can start. Committed asynchronously: a
-- registration lost in a crash only costs the fast path.
INSERT INTO {{schema}}.waiters AS w (worker, channel, tasks, queues, lease_ms, slots, expires_at)
SELECT $1::text, $2::text, $3::text[], $4::text[], $5::float8, $6::int, now() + $7::float8 * interval '1 millisecond'
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async (x)
ON CONFLICT (worker) DO UPDATE
SET slots = greatest(0, EXCLUDED.slots - (w.handed - $8::bigint)),
    channel = EXCLUDED.channel, tasks = EXCLUDED.tasks, queues = EXCLUDED.queues,
    lease_ms = EXCLUDED.lease_ms, expires_at = EXCLUDED.expires_at
RETURNING w.slots;

-- name: withdrawWaiter
-- The worker takes its offer back (it is busy): no more hand-offs until it registers again.
-- The row (and its count of hand-offs) stays. Returns how many it was handed in all.
UPDATE {{schema}}.waiters AS w
SET slots = 0
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async (x)
WHERE w.worker = $1::text
RETURNING w.handed;

-- name: dropWaiter
-- Shutdown: the worker's row goes. Returns how many it was handed in all.
DELETE FROM {{schema}}.waiters WHERE worker = $1::text RETURNING handed;

-- name: adoptHandoffs
-- After a listener outage: jobs handed to this worker ($1) that it does not know ($2), whose
-- notification was lost, as claimed jobs (claimed_job.sql); the worker runs them as it would
-- have. Hand-offs only (claimed at insert: started_at = created_at, one transaction), so a
-- claim of ours still on its way is never taken for one.
SELECT c.*
FROM {{schema}}.jobs AS j CROSS JOIN LATERAL {{schema}}.claimed_job(j) AS c
WHERE j.status = 'running' AND j.locked_by = $1::text AND j.started_at = j.created_at AND j.id <> ALL ($2::bigint[]);

-- name: handBackUnknown
-- Shutdown: jobs handed to this worker ($1) whose notification never arrived. Every running
-- job it holds but does not know ($2; it claims nothing more by now) goes back to the queue
-- at once, without using up an attempt; one NOTIFY ($3).
WITH back AS (
  UPDATE {{schema}}.jobs AS j
  SET status = 'queued', attempts = j.attempts - 1, lease_token = NULL, lease_expires_at = NULL
  WHERE j.id = ANY (ARRAY(
      SELECT r.id FROM {{schema}}.jobs AS r
      WHERE r.status = 'running' AND r.locked_by = $1::text AND r.id <> ALL ($2::bigint[])
      ORDER BY r.id
      FOR UPDATE SKIP LOCKED))
    AND j.status = 'running' AND j.locked_by = $1::text
  RETURNING j.id
)
SELECT coalesce(array_agg(id)::text, '{}') AS ids,
       CASE WHEN count(*) > 0 AND $3::text <> '' THEN pg_notify($3::text, count(*)::text) END AS notified
FROM back;

-- name: handBack
-- Graceful shutdown: unfinished jobs go back to the queue at once, without using up an
-- attempt, and one NOTIFY ($3, the shared channel) tells idle workers.
WITH back AS (
  UPDATE {{schema}}.jobs AS j
  SET status = 'queued', attempts = j.attempts - 1, lease_token = NULL, lease_expires_at = NULL
  FROM unnest($1::bigint[], $2::uuid[]) AS h(id, token)
  WHERE j.id = h.id AND j.lease_token = h.token AND j.status = 'running'
  RETURNING j.id
)
SELECT coalesce(array_agg(id)::text, '{}') AS ids,
       CASE WHEN count(*) > 0 AND $3::text <> '' THEN pg_notify($3::text, count(*)::text) END AS notified
FROM back;

-- name: reap
-- Requeues (or fails, when no attempts are left) up to $1 jobs whose lease expired.
-- Rows are locked with SKIP LOCKED and re-checked, so concurrent reapers never double-act.
UPDATE {{schema}}.jobs AS j
SET status      = CASE WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END,
    finished_at = CASE WHEN j.attempts < j.max_attempts THEN NULL ELSE now() END,
    last_error  = 'lease expired (worker ' || coalesce(j.locked_by, 'unknown') || ')',
    attempt_log = {{schema}}.log_attempt(j, 'lease_expired', 'lease expired (worker ' || coalesce(j.locked_by, 'unknown') || ')',
                                         CASE WHEN j.attempts < j.max_attempts THEN now() END),
    lease_token = NULL, lease_expires_at = NULL
WHERE j.id = ANY (ARRAY(
    SELECT r.id FROM {{schema}}.jobs AS r
    WHERE r.status = 'running' AND r.lease_expires_at < now()
    ORDER BY r.id
    LIMIT $1
    FOR UPDATE SKIP LOCKED))
  AND j.status = 'running' AND j.lease_expires_at < now()
RETURNING j.id, j.queue, j.task, j.attempts, j.status;

-- name: getJob
SELECT id, queue, task, payload, status, priority, run_at, attempts, max_attempts,
       lease_expires_at, locked_by, last_error, created_at, started_at, finished_at,
       dedupe_key, concurrency_key, concurrency_limit, timeout_ms, schedule_name, schedule_slot,
       coalesce(attempt_log, '[]'::jsonb) AS attempt_log
FROM {{schema}}.jobs
WHERE id = $1;

-- name: cancel
-- queued|running -> cancelled. A running job's worker finds out at its next heartbeat.
WITH target AS (
  SELECT id, status FROM {{schema}}.jobs WHERE id = $1 FOR UPDATE
), changed AS (
  UPDATE {{schema}}.jobs AS j
  SET status = 'cancelled', finished_at = now(), lease_token = NULL, lease_expires_at = NULL,
      attempt_log = CASE WHEN t.status = 'running' THEN {{schema}}.log_attempt(j, 'cancelled', NULL, NULL) ELSE j.attempt_log END
  FROM target AS t
  WHERE j.id = t.id AND t.status IN ('queued', 'running')
  RETURNING j.id
)
SELECT t.status AS previous, (SELECT count(*) FROM changed) = 1 AS changed FROM target AS t;

-- name: retry
-- failed|cancelled -> queued, with a fresh set of attempts, due now.
WITH target AS (
  SELECT id, status FROM {{schema}}.jobs WHERE id = $1 FOR UPDATE
), changed AS (
  UPDATE {{schema}}.jobs AS j
  SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL, started_at = NULL
  FROM target AS t
  WHERE j.id = t.id AND t.status IN ('failed', 'cancelled')
  RETURNING j.id, j.run_at
)
SELECT t.status AS previous, (SELECT count(*) FROM changed) = 1 AS changed,
       CASE WHEN (SELECT count(*) FROM changed) = 1 THEN pg_notify($2, '1') END AS notified
FROM target AS t;
