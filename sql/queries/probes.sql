-- The statements that watch the jobs table rather than move jobs: the metrics' scrape-time
-- reads and the LISTEN connection's start-up check (src/db/probestore.ts).

-- name: queueDepth
-- Jobs by queue and status for the metrics, queued jobs split into due ('queued') and not
-- yet due ('scheduled': delayed, or waiting out a retry's backoff); for the due ones, how
-- long the longest-due has been due (seconds).
SELECT queue, CASE WHEN status = 'queued' AND run_at > now() THEN 'scheduled' ELSE status END AS status,
       count(*)::bigint AS jobs,
       extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'queued' AND run_at <= now()))::float8 AS oldest_due_s
FROM {{schema}}.jobs
GROUP BY 1, 2;

-- name: notify
-- One notification, sent through the pool: the LISTEN connection's start-up check.
SELECT pg_notify($1::text, $2::text) AS notified;

-- name: vacuumHealth
-- For the vacuum gauges: the jobs table's dead and live tuples (the statistics collector's
-- estimates), its size with indexes and TOAST, and the age in seconds of the oldest
-- transaction holding back vacuum (0 when none): a session holding a snapshot (backend_xmin)
-- or a transaction id (backend_xid: an idle-in-transaction session that wrote), other than
-- this one, or a prepared transaction. Vacuum removes no row version deleted or updated
-- after such a transaction began.
SELECT coalesce((SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '{{schema}}.jobs'::regclass), 0)::bigint AS dead,
       coalesce((SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = '{{schema}}.jobs'::regclass), 0)::bigint AS live,
       pg_total_relation_size('{{schema}}.jobs'::regclass)::bigint AS size,
       coalesce(extract(epoch FROM greatest(
         (SELECT max(now() - xact_start) FROM pg_stat_activity
          WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) AND pid <> pg_backend_pid()),
         (SELECT max(now() - prepared) FROM pg_prepared_xacts))), 0)::float8 AS oldest_tx_s;
