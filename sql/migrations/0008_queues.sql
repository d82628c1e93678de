-- skiplock 0008: queues as objects: pause, a concurrency limit and a rate limit per queue.
-- A queue exists while it has jobs or a row here; the row holds its settings. Enqueue never
-- touches this table (a queue needs no row to take jobs); `skiplock queues pause|resume|set`
-- and the library's Queues make the row. The claim (sql/functions/claim_jobs.sql) leaves
-- paused queues alone, and for a queue with a limit it locks the queue's row before it
-- counts (running jobs, recent starts), so that claimers in every process take turns.
CREATE TABLE {{schema}}.queues (
  name              text PRIMARY KEY,
  paused            boolean NOT NULL DEFAULT false,
  -- At most this many of the queue's jobs running (claimed) at once; NULL: no limit.
  concurrency_limit integer,
  -- At most rate_limit starts (claims) in any rate_window_ms; NULL: no limit.
  rate_limit        integer,
  rate_window_ms    integer,
  updated_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT queues_name_check CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$'),
  CONSTRAINT queues_concurrency_limit_check CHECK (concurrency_limit IS NULL OR concurrency_limit >= 1),
  CONSTRAINT queues_rate_check CHECK ((rate_limit IS NULL) = (rate_window_ms IS NULL)),
  CONSTRAINT queues_rate_limit_check CHECK (rate_limit IS NULL OR rate_limit >= 1),
  CONSTRAINT queues_rate_window_check CHECK (rate_window_ms IS NULL OR rate_window_ms >= 1)
);

-- The starts of rate-limited queues: one row per claim (n jobs at claimed_at, the claim's
-- transaction time, the same as the jobs' started_at). A claim sums the rows of the last
-- window, under the queue row's lock, and deletes the ones older than the window.
CREATE TABLE {{schema}}.queue_starts (
  queue      text NOT NULL,
  claimed_at timestamptz NOT NULL,
  n          integer NOT NULL,
  CONSTRAINT queue_starts_n_check CHECK (n >= 1)
);
CREATE INDEX queue_starts_queue_idx ON {{schema}}.queue_starts (queue, claimed_at);

-- The running jobs by queue: a claim of a concurrency-limited queue counts them with it.
-- An index of its own beside jobs_running_idx (id), which stays: results and heartbeats find
-- their rows through it (one entry per running job; through the primary key they would visit
-- every version of the row), and replacing it by (queue, id) made a 4-process drain about a
-- quarter slower. Few rows (the running jobs), so the build is quick on a populated table.
CREATE INDEX jobs_running_queue_idx ON {{schema}}.jobs (queue) WHERE status = 'running';

-- The claim takes the worker's idle slots (p_free) too (sql/functions/claim_jobs.sql, which
-- `migrate` applies next): the old signature goes. A worker of an older skiplock fails its
-- claims (and logs it) until it is restarted on this version.
DROP FUNCTION IF EXISTS {{schema}}.claim_jobs(text[], text[], integer, double precision, text);
