-- skiplock 0003: retention of finished jobs.
-- Serves the pruner, which deletes finished jobs (succeeded, failed, cancelled) once they are
-- older than the worker's retention. Only finished rows carry finished_at, so claims and
-- heartbeats never touch this index.
CREATE INDEX jobs_finished_idx ON {{schema}}.jobs (finished_at) WHERE finished_at IS NOT NULL;
