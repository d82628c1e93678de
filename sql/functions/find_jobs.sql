-- The jobs an operator's filter names, newest first (by id), from the id before p_before_id
-- on: the one place the filters of `jobs list` and of the bulk actions (`jobs retry|cancel|
-- delete --all`, sql/queries/admin.sql) are written. A NULL argument leaves its filter out.
-- A set-returning SQL function in FROM: the planner inlines it into each statement and, as
-- admin statements run unnamed (planned with their values), drops the filters left out, so
-- a page is a backward range of the primary key (or of jobs_dead_idx for failed and
-- cancelled jobs) that stops after p_limit rows. p_limit NULL: no limit (counts).
CREATE OR REPLACE FUNCTION {{schema}}.find_jobs(
  p_statuses text[], p_queue text, p_task text, p_schedule text, p_created_before timestamptz,
  p_before_id bigint, p_limit integer
) RETURNS SETOF {{schema}}.jobs
LANGUAGE sql STABLE
AS $$
  SELECT * FROM {{schema}}.jobs AS j
  WHERE (p_statuses IS NULL OR j.status = ANY (p_statuses))
    AND (p_queue IS NULL OR j.queue = p_queue)
    AND (p_task IS NULL OR j.task = p_task)
    AND (p_schedule IS NULL OR j.schedule_name = p_schedule)
    AND (p_created_before IS NULL OR j.created_at < p_created_before)
    AND (p_before_id IS NULL OR j.id < p_before_id)
  ORDER BY j.id DESC
  LIMIT p_limit
$$;
