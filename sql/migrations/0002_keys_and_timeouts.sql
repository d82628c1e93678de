-- skiplock 0002: dedupe keys, concurrency keys and per-job timeouts.

ALTER TABLE {{schema}}.jobs
  ADD COLUMN dedupe_key        text,
  ADD COLUMN concurrency_key   text,
  ADD COLUMN concurrency_limit integer,
  ADD COLUMN timeout_ms        integer,
  ADD CONSTRAINT jobs_dedupe_key_check CHECK (char_length(dedupe_key) BETWEEN 1 AND 512),
  ADD CONSTRAINT jobs_concurrency_check CHECK (
    (concurrency_key IS NULL) = (concurrency_limit IS NULL)
    AND char_length(concurrency_key) BETWEEN 1 AND 512
    AND concurrency_limit >= 1),
  ADD CONSTRAINT jobs_timeout_check CHECK (timeout_ms BETWEEN 1 AND 2147483647);

-- At most one queued or running job per dedupe key: the arbiter of idempotent enqueue.
CREATE UNIQUE INDEX jobs_dedupe_idx ON {{schema}}.jobs (dedupe_key)
  WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running');

-- Counts the running jobs of a concurrency key at claim time.
CREATE INDEX jobs_concurrency_running_idx ON {{schema}}.jobs (concurrency_key)
  WHERE status = 'running' AND concurrency_key IS NOT NULL;

-- claim_jobs below is history: its live definition is sql/functions/claim_jobs.sql, which
-- `migrate` applies after the numbered migrations.
DROP FUNCTION IF EXISTS {{schema}}.claim_jobs(text[], text[], integer, double precision, text);

-- The claim. Candidates come in claim order from jobs_claim_idx, locked FOR UPDATE SKIP
-- LOCKED so concurrent claimers take different rows without waiting. A job with a
-- concurrency key is taken only while fewer than its concurrency_limit jobs of that key are
-- running: the claimer first takes the key's transaction-scoped advisory lock (every
-- claimer must; one that cannot get it at once passes the key over this time, so claimers
-- never wait on each other or deadlock), then counts the key's running jobs in a later
-- statement, which under READ COMMITTED sees everything committed before the lock was
-- granted. A key found full is passed over, so its waiting jobs never hold up the jobs
-- behind them. The chosen rows are then claimed in one UPDATE, which bumps the attempt and
-- issues a fresh lease token: the fencing token of every later write by this worker.
-- The planner settings pin an ordered index scan that stops after p_limit rows; with stale
-- statistics (a queue that just grew by thousands of rows) the planner would otherwise sort
-- every queued row on every claim.
CREATE FUNCTION {{schema}}.claim_jobs(
  p_tasks text[], p_queues text[], p_limit integer, p_lease_ms double precision, p_worker text
) RETURNS SETOF {{schema}}.jobs
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_sort = off
AS $$
DECLARE
  v_ids bigint[] := '{}';
  v_keys text[] := '{}';        -- concurrency key of each accepted job (NULL for none)
  v_full text[] := '{}';        -- keys passed over in this call
  c_ids bigint[];
  c_keys text[];
  c_limits integer[];
  v_key text;
  v_running integer;
  v_round integer := 0;
BEGIN
  LOOP
    v_round := v_round + 1;
    -- One set-based statement locks the next candidates in claim order.
    SELECT coalesce(array_agg(c.id), '{}'), coalesce(array_agg(c.concurrency_key), '{}'),
           coalesce(array_agg(c.concurrency_limit), '{}')
      INTO c_ids, c_keys, c_limits
    FROM (
      SELECT c.id, c.concurrency_key, c.concurrency_limit
      FROM {{schema}}.jobs AS c
      WHERE c.status = 'queued' AND c.run_at <= now() AND c.task = ANY (p_tasks)
        AND (p_queues IS NULL OR c.queue = ANY (p_queues))
        AND (c.concurrency_key IS NULL OR c.concurrency_key <> ALL (v_full))
        AND c.id <> ALL (v_ids)
      ORDER BY c.priority, c.run_at, c.id
      LIMIT p_limit - cardinality(v_ids)
      FOR UPDATE SKIP LOCKED
    ) AS c;
    EXIT WHEN cardinality(c_ids) = 0;
    IF cardinality(array_remove(c_keys, NULL)) = 0 THEN
      -- The common case: no concurrency keys among them, take them all.
      v_ids := v_ids || c_ids;
      v_keys := v_keys || c_keys;
    ELSE
      IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'skiplock: claims must run under READ COMMITTED (concurrency keys count running jobs)';
      END IF;
      FOR i IN 1 .. cardinality(c_ids) LOOP
        v_key := c_keys[i];
        IF v_key IS NULL THEN
          v_ids := v_ids || c_ids[i];
          v_keys := v_keys || NULL::text;
          CONTINUE;
        END IF;
        CONTINUE WHEN v_key = ANY (v_full);
        IF NOT pg_try_advisory_xact_lock(hashtext('skiplock.concurrency:{{schema}}'), hashtext(v_key)) THEN
          v_full := v_full || v_key;   -- another claimer is deciding for this key right now
          CONTINUE;
        END IF;
        SELECT count(*) INTO v_running
        FROM {{schema}}.jobs AS r
        WHERE r.concurrency_key = v_key AND r.status = 'running';
        v_running := v_running + coalesce(cardinality(array_positions(v_keys, v_key)), 0);
        IF v_running < c_limits[i] THEN
          v_ids := v_ids || c_ids[i];
          v_keys := v_keys || v_key;
        ELSE
          v_full := v_full || v_key;
        END IF;
      END LOOP;
    END IF;
    EXIT WHEN cardinality(v_ids) >= p_limit OR v_round >= 16;
  END LOOP;
  IF cardinality(v_ids) = 0 THEN
    RETURN;
  END IF;
  RETURN QUERY
  UPDATE {{schema}}.jobs AS j
  SET status = 'running',
      attempts = j.attempts + 1,
      lease_token = gen_random_uuid(),
      lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
      locked_by = p_worker,
      started_at = now()
  WHERE j.id = ANY (v_ids)
  RETURNING j.*;
END
$$;
