-- skiplock 0005: the claim keeps one plan per session.
-- claim_jobs runs its statements through PL/pgSQL's plan cache. Under the default
-- plan_cache_mode PostgreSQL may plan them afresh on every call (a "custom" plan for the
-- actual arguments), which cost about 0.1-0.2 ms per claim on a 2-core machine: most of a
-- one-job claim's time in the database. A generic plan is made once per session, so it
-- must be right for any table size and any arguments, including a session that first
-- claims from an empty table: with sequential scans off too (sorts and bitmap scans already
-- are, see 0002) the only plans left are the intended ones, an ordered scan of
-- jobs_claim_idx for the candidates and primary-key look-ups for the update.
-- claim_jobs below is history: its live definition is sql/functions/claim_jobs.sql, which
-- `migrate` applies after the numbered migrations.
ALTER FUNCTION {{schema}}.claim_jobs(text[], text[], integer, double precision, text)
  SET plan_cache_mode = force_generic_plan;
ALTER FUNCTION {{schema}}.claim_jobs(text[], text[], integer, double precision, text)
  SET enable_seqscan = off;
