-- The one lease token scheme: a claim's random nonce (lease_nonce(), 8 bytes, one per claim
-- statement) followed by the row's id (8 bytes), as a uuid. Unique per claim of each row: two
-- claims of one row differ in their random half, two rows of one claim in their id half. Every
-- write after a claim (complete, fail, renew, hand back) matches the job's id and this token.
-- Used by claim_jobs and by the hand-off insert (sql/queries/jobs.sql, enqueueHandoff).
-- A scalar SQL function: the planner inlines it, so it costs what the expression costs.
CREATE OR REPLACE FUNCTION {{schema}}.lease_token(p_nonce bytea, p_id bigint) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
  SELECT encode(p_nonce || int8send(p_id), 'hex')::uuid
$$;
