-- Named queries over {{schema}}.schedules (migration 0009), run by src/db/schedulestore.ts.
-- Slots are computed in the caller with croner (src/schedules/cron.ts) from the database
-- clock, which these statements return; nothing here reads a client's clock.

-- name: now
SELECT now() AS now;

-- name: upsert
-- Creates or redefines a schedule. $14 is the first slot after now by the new expression:
-- it is used when the schedule is new, or when its expression or time zone changed. A
-- redefinition that keeps both (a worker re-declaring its task files at start) keeps the
-- schedule's place (next_slot), so the slots that came due while it was down are still
-- caught up. Two concurrent upserts of one name serialise on its row: the last one wins.
INSERT INTO {{schema}}.schedules AS s (name, cron, timezone, task, payload, queue, priority, max_attempts,
                                       timeout_ms, concurrency_key, concurrency_limit, catch_up, max_catch_up, next_slot)
VALUES ($1::text, $2::text, $3::text, $4::text, $5::jsonb, $6::text, $7::int, $8::int, $9::int, $10::text, $11::int,
        $12::text, $13::int, $14::timestamptz)
ON CONFLICT (name) DO UPDATE
SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, task = EXCLUDED.task, payload = EXCLUDED.payload,
    queue = EXCLUDED.queue, priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts,
    timeout_ms = EXCLUDED.timeout_ms, concurrency_key = EXCLUDED.concurrency_key,
    concurrency_limit = EXCLUDED.concurrency_limit, catch_up = EXCLUDED.catch_up, max_catch_up = EXCLUDED.max_catch_up,
    next_slot = CASE WHEN s.cron = EXCLUDED.cron AND s.timezone = EXCLUDED.timezone THEN s.next_slot ELSE EXCLUDED.next_slot END,
    updated_at = now()
RETURNING s.*, (s.xmax = 0) AS created;

-- name: list
SELECT s.* FROM {{schema}}.schedules AS s ORDER BY s.name;

-- name: get
SELECT s.* FROM {{schema}}.schedules AS s WHERE s.name = $1::text;

-- name: remove
DELETE FROM {{schema}}.schedules WHERE name = $1::text RETURNING name;

-- name: pause
UPDATE {{schema}}.schedules AS s SET paused = true, updated_at = now() WHERE s.name = $1::text RETURNING s.*;

-- name: resume
-- A paused schedule resumes at its first slot after now ($2): the slots that passed while it
-- was paused are not caught up. Resuming an active schedule changes nothing.
UPDATE {{schema}}.schedules AS s
SET paused = false,
    next_slot = CASE WHEN s.paused THEN $2::timestamptz ELSE s.next_slot END,
    updated_at = CASE WHEN s.paused THEN now() ELSE s.updated_at END
WHERE s.name = $1::text
RETURNING s.*;

-- name: anyDue
-- A scheduler's check every second: one index probe, no lock.
SELECT EXISTS (SELECT 1 FROM {{schema}}.schedules WHERE NOT paused AND next_slot <= now()) AS due;

-- name: lockDue
-- The due schedules, locked for this transaction; those another scheduler holds are passed
-- over (it is enqueuing them). now() is the transaction's time, the clock of the slots.
SELECT s.name, s.cron, s.timezone, s.catch_up, s.max_catch_up, s.next_slot, now() AS now
FROM {{schema}}.schedules AS s
WHERE NOT s.paused AND s.next_slot <= now()
ORDER BY s.next_slot
LIMIT $1::int
FOR UPDATE SKIP LOCKED;

-- name: fire
-- In the transaction of lockDue: one job per slot ($1 schedule names, $2 slots) with the
-- schedule's job settings, and each locked schedule ($3) moved on to its next slot ($4;
-- 'infinity' when its expression has no more), its last slot ($5, NULL: none enqueued)
-- recorded. One NOTIFY ($6) for the jobs. The unique index on (schedule_name,
-- schedule_slot) backs up the row lock; a slot that is somehow there already is not
-- enqueued twice (inserted < slots tells). ON CONFLICT names no index, so the statement
-- does not depend on it: the row lock alone keeps slots single (test/schedules.test.ts,
-- chaos schedules, run with the index out of play).
WITH f AS (
  SELECT * FROM unnest($1::text[], $2::timestamptz[]) AS f(name, slot)
), ins AS (
  INSERT INTO {{schema}}.jobs (queue, task, payload, priority, run_at, max_attempts, concurrency_key,
                               concurrency_limit, timeout_ms, schedule_name, schedule_slot)
  SELECT s.queue, s.task, s.payload, s.priority, now(), s.max_attempts, s.concurrency_key,
         s.concurrency_limit, s.timeout_ms, s.name, f.slot
  FROM f JOIN {{schema}}.schedules AS s ON s.name = f.name
  ORDER BY f.slot
  ON CONFLICT DO NOTHING
  RETURNING id, schedule_name
), upd AS (
  UPDATE {{schema}}.schedules AS s
  SET next_slot = u.next,
      last_slot = coalesce(u.last, s.last_slot),
      last_enqueued_at = CASE WHEN u.last IS NULL THEN s.last_enqueued_at ELSE now() END
  FROM unnest($3::text[], $4::timestamptz[], $5::timestamptz[]) AS u(name, next, last)
  WHERE s.name = u.name
  RETURNING s.name
)
SELECT (SELECT coalesce(array_agg(schedule_name), '{}') FROM ins) AS inserted,
       (SELECT count(*) FROM upd)::int AS moved,
       CASE WHEN EXISTS (SELECT 1 FROM ins) THEN pg_notify($6::text, (SELECT count(*) FROM ins)::text) END AS notified;
