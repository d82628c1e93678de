-- A job's attempt history (jobs.attempt_log, migration 0010) with the attempt that is ending
-- now appended: its number, worker and start from the row j (as it was before the statement
-- that calls this), the end now(), how it ended (p_outcome: error, lease_expired, cancelled),
-- the error (cut at 2000 characters) and when the job is due again (NULL: not retried). The
-- last 10 entries are kept: entries are added one at a time, so dropping the first when
-- there are 11 is enough. Called by the statements that end an attempt other than by
-- success (finishMany, reap, cancel, cancelBatch); inlined by the planner. Only those pay
-- for the history: a success writes nothing to it.
CREATE OR REPLACE FUNCTION {{schema}}.log_attempt(
  j {{schema}}.jobs, p_outcome text, p_error text, p_retry_at timestamptz
) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT CASE WHEN jsonb_array_length(x) > 10 THEN x - 0 ELSE x END
  FROM (SELECT coalesce(j.attempt_log, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
          'attempt', j.attempts, 'worker', j.locked_by, 'started_at', j.started_at, 'ended_at', now(),
          'outcome', p_outcome, 'error', left(p_error, 2000), 'retry_at', p_retry_at))) AS s (x)
$$;
