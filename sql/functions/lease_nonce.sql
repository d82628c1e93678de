-- The random half of a lease token: 8 bytes, drawn once per claim statement (or hand-off).
-- See lease_token.sql for the scheme.
CREATE OR REPLACE FUNCTION {{schema}}.lease_nonce() RETURNS bytea
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
  SELECT substring(uuid_send(gen_random_uuid()) FROM 1 FOR 8)
$$;
