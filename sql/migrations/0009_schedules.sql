-- skiplock 0009: recurring schedules. One row per schedule: its cron expression and time
-- zone, the job it enqueues, its catch-up policy and next_slot, the next slot to enqueue
-- (an instant by the database clock, computed with croner by whoever defined the schedule
-- or fired its last slot). Every worker's scheduler (src/maintenance/scheduler.ts) locks
-- the due rows FOR UPDATE SKIP LOCKED, enqueues their slots and moves next_slot on in the
-- same transaction, so each slot becomes exactly one job however many workers look.
CREATE TABLE {{schema}}.schedules (
  name              text PRIMARY KEY,
  cron              text NOT NULL,
  timezone          text NOT NULL DEFAULT 'UTC',
  task              text NOT NULL,
  payload           jsonb NOT NULL DEFAULT '{}',
  queue             text NOT NULL DEFAULT 'default',
  priority          integer NOT NULL DEFAULT 0,
  max_attempts      integer NOT NULL DEFAULT 25,
  timeout_ms        integer,
  concurrency_key   text,
  concurrency_limit integer,
  -- After downtime: 'latest' enqueues the most recent missed slot, 'none' none of them,
  -- 'all' up to max_catch_up of the most recent ones (sql/queries/schedules.sql, fire).
  catch_up          text NOT NULL DEFAULT 'latest',
  max_catch_up      integer NOT NULL DEFAULT 100,
  paused            boolean NOT NULL DEFAULT false,
  next_slot         timestamptz NOT NULL,
  -- The last slot enqueued, and when.
  last_slot         timestamptz,
  last_enqueued_at  timestamptz,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT schedules_name_check CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$'),
  CONSTRAINT schedules_catch_up_check CHECK (catch_up IN ('latest', 'none', 'all')),
  CONSTRAINT schedules_max_catch_up_check CHECK (max_catch_up >= 1),
  CONSTRAINT schedules_max_attempts_check CHECK (max_attempts >= 1),
  CONSTRAINT schedules_concurrency_limit_check CHECK (concurrency_limit IS NULL OR concurrency_limit >= 1)
);
-- The schedulers' question, every second: which schedules are due.
CREATE INDEX schedules_due_idx ON {{schema}}.schedules (next_slot) WHERE NOT paused;

-- Each job a schedule enqueued carries the schedule's name and the slot it is for.
ALTER TABLE {{schema}}.jobs ADD COLUMN schedule_name text, ADD COLUMN schedule_slot timestamptz;
-- One job per (schedule, slot) while its row is kept: a second line of defence behind the
-- row lock. Scheduled jobs only, so the index stays small; built at once on a populated
-- table, since no row has a schedule yet.
CREATE UNIQUE INDEX jobs_schedule_slot_idx ON {{schema}}.jobs (schedule_name, schedule_slot) WHERE schedule_name IS NOT NULL;
