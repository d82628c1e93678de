-- Named queries over {{schema}}.queues (migration 0008): a queue's settings (paused, a
-- concurrency limit, a rate limit), run by src/db/queuestore.ts. Every change notifies the
-- schema's queues channel ("paused:<queue>" or "active:<queue>"), so workers act at once.

-- name: settings
-- Every queue's row (a small table): what a worker keeps in memory, and the paused metric.
SELECT s.name, s.paused, s.concurrency_limit AS "concurrencyLimit", s.rate_limit AS "rateLimit",
       s.rate_window_ms AS "rateWindowMs"
FROM {{schema}}.queues AS s
ORDER BY s.name;

-- name: list
-- Every queue (with jobs, or with a row) and its jobs by status; queued counts due jobs,
-- scheduled those whose run_at is still ahead; oldest_wait_ms is how long the longest-due
-- queued job has been due. One pass over the table: an admin query, not a worker's.
WITH counts AS (
  SELECT j.queue,
         count(*) FILTER (WHERE j.status = 'queued' AND j.run_at <= now()) AS queued,
         count(*) FILTER (WHERE j.status = 'queued' AND j.run_at > now()) AS scheduled,
         count(*) FILTER (WHERE j.status = 'running') AS running,
         count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded,
         count(*) FILTER (WHERE j.status = 'failed') AS failed,
         count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled,
         min(j.run_at) FILTER (WHERE j.status = 'queued' AND j.run_at <= now()) AS oldest_due
  FROM {{schema}}.jobs AS j
  GROUP BY j.queue
)
SELECT coalesce(s.name, c.queue) AS name,
       coalesce(s.paused, false) AS paused,
       s.concurrency_limit AS "concurrencyLimit", s.rate_limit AS "rateLimit", s.rate_window_ms AS "rateWindowMs",
       coalesce(c.queued, 0)::int AS queued, coalesce(c.scheduled, 0)::int AS scheduled,
       coalesce(c.running, 0)::int AS running, coalesce(c.succeeded, 0)::int AS succeeded,
       coalesce(c.failed, 0)::int AS failed, coalesce(c.cancelled, 0)::int AS cancelled,
       (extract(epoch FROM now() - c.oldest_due) * 1000)::float8 AS "oldestWaitMs"
FROM {{schema}}.queues AS s
FULL JOIN counts AS c ON c.queue = s.name
ORDER BY 1;

-- name: known
-- Whether a queue exists: it has a row, or jobs.
SELECT EXISTS (SELECT 1 FROM {{schema}}.queues WHERE name = $1::text)
    OR EXISTS (SELECT 1 FROM {{schema}}.jobs WHERE queue = $1::text) AS known;

-- name: change
-- Creates or changes a queue's row: $2 paused (NULL: unchanged); $3 whether to set the
-- concurrency limit to $4 (NULL: none); $5 whether to set the rate limit to $6 starts per
-- $7 ms (NULL: none). It first takes the queue's pause lock exclusively (claims of a queue
-- without limits hold it shared) and then the row (claims of a limited queue hold its row
-- lock), so it waits for the claims in progress: once it returns, every claim that found
-- the old settings has committed and every later claim goes by the new ones (see
-- sql/functions/claim_jobs.sql). One NOTIFY ($8, the queues channel) tells workers, with
-- the payload "<state>:<queue>", state "paused" or "active". Returns the row as it is now.
WITH up AS (
  INSERT INTO {{schema}}.queues AS s (name, paused, concurrency_limit, rate_limit, rate_window_ms)
  SELECT $1::text, coalesce($2::boolean, false),
         CASE WHEN $3::boolean THEN $4::int END,
         CASE WHEN $5::boolean THEN $6::int END,
         CASE WHEN $5::boolean THEN $7::int END
  FROM (SELECT pg_advisory_xact_lock(hashtext('skiplock.queue:{{schema}}'), hashtext($1::text))) AS pause_lock (x)
  ON CONFLICT (name) DO UPDATE
  SET paused = coalesce($2::boolean, s.paused),
      concurrency_limit = CASE WHEN $3::boolean THEN $4::int ELSE s.concurrency_limit END,
      rate_limit = CASE WHEN $5::boolean THEN $6::int ELSE s.rate_limit END,
      rate_window_ms = CASE WHEN $5::boolean THEN $7::int ELSE s.rate_window_ms END,
      updated_at = now()
  RETURNING s.name, s.paused, s.concurrency_limit AS "concurrencyLimit", s.rate_limit AS "rateLimit",
            s.rate_window_ms AS "rateWindowMs"
)
SELECT up.*, pg_notify($8::text, CASE WHEN up.paused THEN 'paused:' ELSE 'active:' END || up.name) AS notified FROM up;

-- name: nextRateCapacity
-- For a worker whose claim came back short: ms until the soonest start of a rate-limited
-- queue among $1 (NULL: all) leaves its window, making room; NULL when no such queue has
-- starts in its window.
SELECT (extract(epoch FROM min(o.claimed_at + s.rate_window_ms * interval '1 millisecond') - now()) * 1000)::float8 AS ms
FROM {{schema}}.queues AS s
CROSS JOIN LATERAL (
  SELECT r.claimed_at FROM {{schema}}.queue_starts AS r
  WHERE r.queue = s.name AND r.claimed_at > now() - s.rate_window_ms * interval '1 millisecond'
  ORDER BY r.claimed_at
  LIMIT 1) AS o
WHERE s.rate_limit IS NOT NULL AND NOT s.paused AND ($1::text[] IS NULL OR s.name = ANY ($1::text[]));
