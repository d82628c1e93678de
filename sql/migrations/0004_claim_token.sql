-- skiplock 0004: a cheaper claim.
-- 1. Lease tokens: gen_random_uuid() per claimed row cost about 2.5 us of the claim's ~16 us
--    per row. A token is now 8 random bytes drawn once per claim statement followed by the
--    row's id (8 bytes): still unique per claim of each row (two claims of one row differ in
--    their random half; two rows of one claim differ in their id half), so every fenced
--    write, which matches a job's id and token, behaves exactly as before.
-- 2. The claim's transaction commits with synchronous_commit = off (set locally, so only
--    the transaction that runs the claim): it does not wait for its WAL to reach disk, which
--    saves that wait on the path from enqueue to handler start. If the server crashes in the
--    next fraction of a second, the claim is undone and the job is queued again: a re-run,
--    which at-least-once execution allows. The job's result is still committed durably, and
--    that commit makes the claim before it durable too (WAL is written in order). Call
--    claim_jobs only in a transaction of its own.
-- The claim is otherwise the one of 0002.

-- claim_jobs below is history: its live definition is sql/functions/claim_jobs.sql, which
-- `migrate` applies after the numbered migrations.
CREATE OR REPLACE FUNCTION {{schema}}.claim_jobs(
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
  -- 8 random bytes for this claim; each row's token is them followed by the row's id.
  v_nonce bytea := substring(uuid_send(gen_random_uuid()) FROM 1 FOR 8);
BEGIN
  -- The claim commits without waiting for its WAL to reach disk (see the header).
  PERFORM set_config('synchronous_commit', 'off', true);
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
      lease_token = encode(v_nonce || int8send(j.id), 'hex')::uuid,
      lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
      locked_by = p_worker,
      started_at = now()
  WHERE j.id = ANY (v_ids)
  RETURNING j.*;
END
$$;
