-- skiplock 0010: what operators need to see and steer the queue (issue 14).
--
-- 1. Each job keeps a short history of its attempts that did not end it well: a handler's
--    error (retried or final), an expired lease, a cancel while running. An array of at most
--    10 entries, oldest first (sql/functions/log_attempt.sql appends). The attempt that
--    succeeded, or the one running now, is read off the row itself (started_at, finished_at,
--    locked_by), so a success writes nothing more than before.
ALTER TABLE {{schema}}.jobs ADD COLUMN attempt_log jsonb;

-- 2. Dead letters by id, newest first: `jobs list --status failed` and its bulk retry on a
--    table of millions stay an index range. A partial index: only rows entering failed or
--    cancelled add an entry (the status change is already a non-HOT update), so claims and
--    results pay nothing for it. Built without CONCURRENTLY inside the migration's
--    transaction; on a large table it holds a SHARE lock on jobs (enqueues wait) for the
--    build. To avoid that, create it first by hand:
--      CREATE INDEX CONCURRENTLY jobs_dead_idx ON <schema>.jobs (id) WHERE status IN ('failed', 'cancelled');
CREATE INDEX IF NOT EXISTS jobs_dead_idx ON {{schema}}.jobs (id) WHERE status IN ('failed', 'cancelled');

-- 3. The workers alive now: each worker writes its row at start, renews seen_at while it
--    runs (every few seconds, committed asynchronously) and deletes it when it stops. A row
--    whose seen_at is older than its ttl_ms belongs to a worker that died without stopping.
--    `jobs why`, `skiplock stats`, the enqueue warning and the dashboard read it.
-- 4. Optional OpenTelemetry tracing: the W3C trace context of the span that enqueued the
--    job, so that each attempt's span links to it (src/observability/tracing.ts). NULL when
--    the producer traced nothing (no SDK registered).
ALTER TABLE {{schema}}.jobs ADD COLUMN traceparent text;

CREATE TABLE {{schema}}.workers (
  -- As in jobs.locked_by.
  id          text PRIMARY KEY,
  host        text NOT NULL,
  pid         integer NOT NULL,
  version     text NOT NULL,
  tasks       text[] NOT NULL,
  -- NULL: every queue.
  queues      text[],
  concurrency integer NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  seen_at     timestamptz NOT NULL DEFAULT now(),
  ttl_ms      integer NOT NULL,
  CONSTRAINT workers_ttl_check CHECK (ttl_ms >= 1),
  CONSTRAINT workers_concurrency_check CHECK (concurrency >= 1)
) WITH (fillfactor = 50);
