-- The claim: takes up to p_limit due jobs of the worker's tasks (and queues) in claim order
-- (priority, run_at, id) and marks them running for p_worker, with a lease of p_lease_ms.
-- This file is the live definition (`migrate` applies it whenever its text changes); the
-- worker calls it through sql/queries/jobs.sql, claim, which turns each row into the
-- claimed-job object of claimed_job.sql.
--
-- 1. Isolation: candidates come from jobs_claim_pair_idx (queue, task, priority, run_at,
--    id) of the queued rows, one (queue, task) pair at a time, so the backlog of another
--    queue, or of a task this worker has no handler for, is never read: a claim costs the
--    same behind a million such jobs as on an empty table. The pairs are the worker's queues
--    (all queues that have queued jobs, found by a skip scan of the index, when p_queues is
--    NULL) times its tasks. Each round looks up the head of every pair (one index descent
--    each, no lock), then takes from the pair whose head comes first, in claim order, the
--    rows up to the priority of the next pair's head, locked FOR UPDATE SKIP LOCKED so that
--    concurrent claimers take different rows and never wait for each other. So priority
--    holds across pairs, and within a pair the order is (priority, run_at, id); between
--    pairs of equal priority a claim goes by whose head is older, a batch at a time.
-- 2. Concurrency keys: a job with a key is taken only while fewer than its
--    concurrency_limit jobs of that key are running. The claimer first takes the key's
--    transaction-scoped advisory lock (every claimer must; one that cannot get it at once
--    passes the key over this time, so claimers never wait or deadlock), then counts the
--    key's running jobs in a later statement, which under READ COMMITTED sees everything
--    committed before the lock was granted. A full key is passed over, so its waiting jobs
--    never hold up the jobs behind them.
-- 3. Queues (the queues table, migration 0008): a paused queue is left out from the start,
--    and a queue is checked again once this call holds its lock: a queue without limits
--    has an advisory "pause lock", taken shared here before its rows are scanned and
--    exclusively by a pause (sql/queries/queues.sql, change), so a pause returns only
--    after every claim that found the queue active has committed, and a claim that comes
--    later sees it paused.
--    A queue with a concurrency or rate limit is claimed from under its row's lock (FOR
--    UPDATE), taken before its running jobs and recent starts are counted in later
--    statements (which see everything committed before the lock was granted), so claimers
--    in every process take turns and never start more than the limits allow. The first
--    queue lock of a call (row or pause lock) waits for its turn; a call that holds one
--    already passes a busy queue over (SKIP LOCKED, try-lock), so claimers never deadlock. A limited queue gives at most
--    p_free jobs to a call (the worker's idle slots: no prefetch from it, so one worker
--    cannot hoard a limit that others could run), and a rate-limited queue's starts are
--    logged in queue_starts (rows older than the window are deleted as it goes). The time
--    of a limited queue's starts is the moment its lock was granted (clock_timestamp),
--    not the claim's now(): a claim that waited for the lock must not count its window
--    from a time before rows it cannot see yet were deleted by the claims that went first.
-- 4. The chosen rows are claimed in one UPDATE, which bumps the attempt and issues each row
--    a lease token (lease_token.sql): the fencing token of every later write.
-- 5. The claim commits with synchronous_commit = off (set locally): it does not wait for its
--    WAL to reach disk. If the server crashes in the next fraction of a second the claim is
--    undone and the job is queued again: a re-run, which at-least-once execution allows. The
--    job's result is committed durably, and that commit makes the claim before it durable
--    too. Call claim_jobs only in a transaction of its own.
-- 6. Plan: one generic plan per session (plan_cache_mode), since a custom plan per call cost
--    0.1-0.2 ms, most of a small claim. With sorts, bitmap scans and sequential scans off,
--    the only plans left are the intended ones, right for any table size: descents and
--    ordered scans of jobs_claim_pair_idx that stop after the rows wanted, and primary-key
--    look-ups.
CREATE OR REPLACE FUNCTION {{schema}}.claim_jobs(
  p_tasks text[], p_queues text[], p_limit integer, p_free integer, p_lease_ms double precision, p_worker text
) RETURNS SETOF {{schema}}.jobs
LANGUAGE plpgsql
SET enable_bitmapscan = off
SET enable_sort = off
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
  v_ids bigint[] := '{}';
  v_keys text[] := '{}';        -- concurrency key of each accepted job (NULL for none)
  v_full text[] := '{}';        -- keys passed over in this call
  v_queues text[];
  v_pair_queues text[];         -- the worker's (queue, task) pairs
  v_pair_tasks text[];
  v_spent integer[] := '{}';    -- pairs with nothing more to take in this call
  v_order integer[];            -- pairs with a due head, best head first
  v_heads integer[];            -- and their heads' priorities
  v_pair integer;
  v_cutoff integer;
  c_ids bigint[];
  c_keys text[];
  c_limits integer[];
  v_key text;
  v_running integer;
  v_round integer := 0;
  v_nonce bytea := {{schema}}.lease_nonce();
  v_paused text[];              -- paused queues (left out)
  v_limited text[];             -- queues with a concurrency or rate limit
  v_lq text[] := '{}';          -- limited queues met in this call,
  v_lcap integer[] := '{}';     -- what each may still give,
  v_ltaken integer[] := '{}';   -- what each gave,
  v_lwindow integer[] := '{}';  -- and its rate window (NULL: none, or its row not locked),
  v_lat timestamptz[] := '{}';  -- and when its row lock was granted (its jobs' start time)
  v_at timestamptz;
  v_shared text[] := '{}';      -- other queues whose pause lock this call holds (shared)
  v_got boolean;
  v_locks integer := 0;         -- queue rows locked in this call
  v_free integer := greatest(p_free, 0);   -- limited-queue jobs this call may still take
  v_settings {{schema}}.queues;
  v_li integer;
  v_take integer;
  v_before integer;
  v_cap integer;
  v_started bigint;
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  IF p_queues IS NULL THEN
    -- Every queue with queued jobs: a skip scan, one descent per queue.
    WITH RECURSIVE q (queue) AS (
      (SELECT c.queue FROM {{schema}}.jobs AS c WHERE c.status = 'queued' ORDER BY c.queue LIMIT 1)
      UNION ALL
      SELECT (SELECT c.queue FROM {{schema}}.jobs AS c
              WHERE c.status = 'queued' AND c.queue > q.queue ORDER BY c.queue LIMIT 1)
      FROM q WHERE q.queue IS NOT NULL)
    SELECT coalesce(array_agg(q.queue), '{}') INTO v_queues FROM q WHERE q.queue IS NOT NULL;
  ELSE
    v_queues := p_queues;
  END IF;
  SELECT coalesce(array_agg(s.name) FILTER (WHERE s.paused), '{}'),
         coalesce(array_agg(s.name) FILTER (WHERE NOT s.paused), '{}')
    INTO v_paused, v_limited
  FROM {{schema}}.queues AS s
  WHERE s.name = ANY (v_queues) AND (s.paused OR s.concurrency_limit IS NOT NULL OR s.rate_limit IS NOT NULL);
  IF cardinality(v_paused) > 0 THEN
    SELECT coalesce(array_agg(q.queue), '{}') INTO v_queues FROM unnest(v_queues) AS q (queue) WHERE q.queue <> ALL (v_paused);
  END IF;
  SELECT coalesce(array_agg(q.queue ORDER BY q.queue, t.task), '{}'), coalesce(array_agg(t.task ORDER BY q.queue, t.task), '{}')
    INTO v_pair_queues, v_pair_tasks
  FROM unnest(v_queues) AS q (queue) CROSS JOIN unnest(p_tasks) AS t (task);
  LOOP
    v_round := v_round + 1;
    IF cardinality(v_pair_queues) = 1 THEN
      -- One pair (the usual worker: one queue, or all queues holding one queue, and one
      -- task): no heads to compare.
      EXIT WHEN cardinality(v_spent) > 0;
      v_pair := 1;
      v_cutoff := 2147483647;
    ELSE
      -- The head of each pair still in play, without locking: which pair goes first, and up
      -- to which priority it may take before another pair's head comes first.
      SELECT coalesce(array_agg(p.n ORDER BY h.priority, h.run_at, h.id), '{}'),
             coalesce(array_agg(h.priority ORDER BY h.priority, h.run_at, h.id), '{}')
        INTO v_order, v_heads
      FROM unnest(v_pair_queues, v_pair_tasks) WITH ORDINALITY AS p (queue, task, n)
      CROSS JOIN LATERAL (
        SELECT c.priority, c.run_at, c.id
        FROM {{schema}}.jobs AS c
        WHERE c.status = 'queued' AND c.queue = p.queue AND c.task = p.task AND c.run_at <= now()
          AND (c.concurrency_key IS NULL OR c.concurrency_key <> ALL (v_full))
          AND c.id <> ALL (v_ids)
        ORDER BY c.priority, c.run_at, c.id
        LIMIT 1) AS h
      WHERE p.n::integer <> ALL (v_spent);
      EXIT WHEN cardinality(v_order) = 0;
      v_pair := v_order[1];
      v_cutoff := coalesce(v_heads[2], 2147483647);
    END IF;
    v_take := p_limit - cardinality(v_ids);
    v_li := NULL;
    IF v_pair_queues[v_pair] = ANY (v_limited) THEN
      v_li := array_position(v_lq, v_pair_queues[v_pair]);
      IF v_li IS NULL THEN
        -- First time in this call: lock the queue's row, then count (see 3 above).
        IF v_locks = 0 THEN
          SELECT s.* INTO v_settings FROM {{schema}}.queues AS s WHERE s.name = v_pair_queues[v_pair] FOR UPDATE;
        ELSE
          SELECT s.* INTO v_settings FROM {{schema}}.queues AS s WHERE s.name = v_pair_queues[v_pair] FOR UPDATE SKIP LOCKED;
        END IF;
        v_cap := 0;
        v_at := NULL;
        IF FOUND THEN
          v_locks := v_locks + 1;
          -- The time of this claim's turn: later than the commit of every claim that held
          -- the lock before, so starts are logged (and deleted) in lock order.
          v_at := clock_timestamp();
        ELSE
          v_settings := NULL;   -- another claimer holds it: passed over this time
        END IF;
        IF v_settings.name IS NOT NULL AND NOT v_settings.paused THEN
          v_cap := 2147483647;
          IF v_settings.concurrency_limit IS NOT NULL THEN
            SELECT count(*) INTO v_running
            FROM {{schema}}.jobs AS r
            WHERE r.queue = v_settings.name AND r.status = 'running';
            v_cap := least(v_cap, v_settings.concurrency_limit - v_running);
          END IF;
          IF v_settings.rate_limit IS NOT NULL THEN
            SELECT coalesce(sum(r.n), 0) INTO v_started
            FROM {{schema}}.queue_starts AS r
            WHERE r.queue = v_settings.name AND r.claimed_at > v_at - v_settings.rate_window_ms * interval '1 millisecond';
            v_cap := least(v_cap, v_settings.rate_limit - v_started)::integer;
          END IF;
        ELSE
          v_settings.rate_window_ms := NULL;
        END IF;
        v_lq := v_lq || v_pair_queues[v_pair];
        v_lcap := v_lcap || greatest(v_cap, 0);
        v_ltaken := v_ltaken || 0;
        v_lwindow := v_lwindow || v_settings.rate_window_ms;
        v_lat := v_lat || v_at;
        v_li := cardinality(v_lq);
      END IF;
      v_take := least(v_take, v_lcap[v_li], v_free);
    ELSIF v_pair_queues[v_pair] <> ALL (v_shared) THEN
      -- A queue without limits: its pause lock, shared (a pause or a change of limits takes
      -- it exclusively, so it waits for this claim to commit), then whether it was paused or
      -- limited meanwhile, in a later statement. Wait only while holding no other queue
      -- lock, as above.
      IF v_locks = 0 THEN
        PERFORM pg_advisory_xact_lock_shared(hashtext('skiplock.queue:{{schema}}'), hashtext(v_pair_queues[v_pair]));
        v_got := true;
      ELSE
        v_got := pg_try_advisory_xact_lock_shared(hashtext('skiplock.queue:{{schema}}'), hashtext(v_pair_queues[v_pair]));
      END IF;
      IF v_got THEN
        v_locks := v_locks + 1;
        v_shared := v_shared || v_pair_queues[v_pair];
        -- Paused meanwhile, or given a limit meanwhile (its claims must count under the row
        -- lock): passed over this time.
        IF EXISTS (SELECT 1 FROM {{schema}}.queues AS s
                   WHERE s.name = v_pair_queues[v_pair]
                     AND (s.paused OR s.concurrency_limit IS NOT NULL OR s.rate_limit IS NOT NULL)) THEN
          v_take := 0;
        END IF;
      ELSE
        v_take := 0;
      END IF;
    END IF;
    IF v_take <= 0 THEN
      -- The queue's limit (or this worker's idle slots) is used up, or it is paused or busy:
      -- all its pairs are spent.
      SELECT v_spent || coalesce(array_agg(p.n::integer), '{}') INTO v_spent
      FROM unnest(v_pair_queues) WITH ORDINALITY AS p (queue, n)
      WHERE p.queue = v_pair_queues[v_pair];
      CONTINUE WHEN v_round < 16;
      EXIT;
    END IF;
    v_before := cardinality(v_ids);
    -- One set-based statement locks the best pair's next candidates in claim order.
    SELECT coalesce(array_agg(c.id), '{}'), coalesce(array_agg(c.concurrency_key), '{}'),
           coalesce(array_agg(c.concurrency_limit), '{}')
      INTO c_ids, c_keys, c_limits
    FROM (
      SELECT c.id, c.concurrency_key, c.concurrency_limit
      FROM {{schema}}.jobs AS c
      WHERE c.status = 'queued' AND c.queue = v_pair_queues[v_pair] AND c.task = v_pair_tasks[v_pair]
        AND c.priority <= v_cutoff AND c.run_at <= now()
        AND (c.concurrency_key IS NULL OR c.concurrency_key <> ALL (v_full))
        AND c.id <> ALL (v_ids)
      ORDER BY c.priority, c.run_at, c.id
      LIMIT v_take
      FOR UPDATE SKIP LOCKED
    ) AS c;
    IF cardinality(c_ids) = 0 THEN
      -- Its due rows up to the cutoff are all locked by other claimers: on to the next pair.
      v_spent := v_spent || v_pair;
      CONTINUE WHEN v_round < 16;
      EXIT;
    END IF;
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
    IF v_li IS NOT NULL THEN
      v_lcap[v_li] := v_lcap[v_li] - (cardinality(v_ids) - v_before);
      v_ltaken[v_li] := v_ltaken[v_li] + (cardinality(v_ids) - v_before);
    END IF;
    -- Every job taken fills an idle slot first: a limited queue gets only what is left.
    v_free := v_free - (cardinality(v_ids) - v_before);
    EXIT WHEN cardinality(v_ids) >= p_limit OR v_round >= 16;
  END LOOP;
  -- The starts of rate-limited queues, under their rows' locks.
  FOR i IN 1 .. cardinality(v_lq) LOOP
    CONTINUE WHEN v_lwindow[i] IS NULL;
    DELETE FROM {{schema}}.queue_starts AS r
    WHERE r.queue = v_lq[i] AND r.claimed_at <= v_lat[i] - v_lwindow[i] * interval '1 millisecond';
    IF v_ltaken[i] > 0 THEN
      INSERT INTO {{schema}}.queue_starts (queue, claimed_at, n) VALUES (v_lq[i], v_lat[i], v_ltaken[i]);
    END IF;
  END LOOP;
  IF cardinality(v_ids) = 0 THEN
    RETURN;
  END IF;
  RETURN QUERY
  UPDATE {{schema}}.jobs AS j
  SET status = 'running',
      attempts = j.attempts + 1,
      lease_token = {{schema}}.lease_token(v_nonce, j.id),
      lease_expires_at = now() + p_lease_ms * interval '1 millisecond',
      locked_by = p_worker,
      -- a limited queue's jobs start at the claim's turn (as logged), the others at now()
      started_at = CASE WHEN cardinality(v_lq) = 0 THEN now() ELSE coalesce(v_lat[array_position(v_lq, j.queue)], now()) END
  WHERE j.id = ANY (v_ids)
  RETURNING j.*;
END
$$;
