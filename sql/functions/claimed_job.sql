-- A claimed job as a worker receives it: one JSON object per job, the only place its fields
-- are listed. The claim (sql/queries/jobs.sql, claim), the hand-off notification
-- (enqueueHandoff) and the adoption of lost hand-offs (adoptHandoffs) all send this, and
-- src/job.ts (ClaimedRow, ClaimedJob) reads it. The id goes as text (int8 may pass 2^53);
-- times as epoch milliseconds of the database clock (date_part returns float8 directly).
-- A scalar SQL function: the planner inlines it into each statement.
CREATE OR REPLACE FUNCTION {{schema}}.claimed_job(j {{schema}}.jobs) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT json_build_object(
    'id', j.id::text,
    'queue', j.queue,
    'task', j.task,
    'payload', j.payload,
    'priority', j.priority,
    'attempt', j.attempts,
    'maxAttempts', j.max_attempts,
    'token', j.lease_token,
    'timeoutMs', j.timeout_ms,
    'dedupeKey', j.dedupe_key,
    'concurrencyKey', j.concurrency_key,
    'runAtMs', date_part('epoch', j.run_at) * 1000,
    'createdAtMs', date_part('epoch', j.created_at) * 1000,
    'startedAtMs', date_part('epoch', j.started_at) * 1000)
$$;
