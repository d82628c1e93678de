-- A claimed job as a worker receives it: the only place its fields are listed. The claim
-- (sql/queries/jobs.sql, claim) returns these columns, the hand-off notification
-- (enqueueHandoff) and the adoption of lost hand-offs (adoptHandoffs) send or return the
-- same row, and src/job.ts (ClaimedRow, ClaimedJob) reads it by these names. The id goes as
-- text (int8 may pass 2^53); times as epoch milliseconds of the database clock (date_part
-- returns float8 directly: cheaper for the client than a timestamp's text).
-- A set-returning SQL function called in FROM: the planner inlines it into each statement.
-- Its result columns changed (it returned json at first; the schedule fields came with
-- migration 0009, the trace context with 0010), hence the DROP.
DROP FUNCTION IF EXISTS {{schema}}.claimed_job({{schema}}.jobs);
CREATE FUNCTION {{schema}}.claimed_job(j {{schema}}.jobs)
RETURNS TABLE (
  id text, queue text, task text, payload jsonb, priority integer, attempt integer, "maxAttempts" integer,
  token uuid, "timeoutMs" integer, "dedupeKey" text, "concurrencyKey" text,
  "runAtMs" double precision, "createdAtMs" double precision, "startedAtMs" double precision,
  "scheduleName" text, "scheduleSlotMs" double precision, traceparent text)
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
AS $$
  SELECT j.id::text, j.queue, j.task, j.payload, j.priority, j.attempts, j.max_attempts,
         j.lease_token, j.timeout_ms, j.dedupe_key, j.concurrency_key,
         date_part('epoch', j.run_at) * 1000, date_part('epoch', j.created_at) * 1000,
         date_part('epoch', j.started_at) * 1000,
         j.schedule_name, date_part('epoch', j.schedule_slot) * 1000, j.traceparent
$$;
