-- skiplock 0006: direct hand-off to idle workers.
-- A worker that found nothing to claim registers here with the number of jobs it can start
-- at once. A producer that inserts a single due job (no delay, dedupe or concurrency key)
-- takes one such slot in the same statement: the job is inserted already claimed by that
-- worker (status running, attempt 1, a fresh lease token and lease) and its row is sent to
-- the worker's own NOTIFY channel, so the worker starts it without a claim round trip.
-- Every other job goes the usual way (queued, broadcast NOTIFY, claimed with SKIP LOCKED).
-- A hand-off is a claim made by the producer on the worker's behalf: the row is never
-- queued, so no one else can claim it; the lease, the fencing token and the reaper work as
-- for any claim (a hand-off to a worker that died is reaped when its lease expires).
CREATE TABLE {{schema}}.waiters (
  -- The worker's id, as in jobs.locked_by.
  worker     text PRIMARY KEY,
  -- Its own NOTIFY channel, for hand-offs.
  channel    text NOT NULL,
  tasks      text[] NOT NULL,
  -- NULL: all queues.
  queues     text[],
  lease_ms   double precision NOT NULL,
  -- Jobs producers may still hand it.
  slots      integer NOT NULL,
  -- Jobs producers have handed it since the row was made (the worker counts what it
  -- received, so it can tell how many are still on their way when it re-registers).
  handed     bigint NOT NULL DEFAULT 0,
  -- Producers skip a row past this time: a worker that dies stops receiving hand-offs soon.
  expires_at timestamptz NOT NULL,
  CONSTRAINT waiters_slots_check CHECK (slots >= 0),
  CONSTRAINT waiters_lease_check CHECK (lease_ms >= 1)
) WITH (
  -- Rows are rewritten on every hand-off and registration: room for HOT updates, and
  -- vacuum kept busy.
  fillfactor = 50,
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 200
);
