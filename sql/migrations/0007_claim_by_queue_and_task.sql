-- skiplock 0007: the claim reads only the worker's own queues and tasks.
-- The claim index leads with queue and task (sql/functions/claim_jobs.sql takes one
-- (queue, task) pair at a time), so a backlog in another queue, or of a task no worker of
-- this kind handles, is never read by its claims or polls. The old index served the claim
-- only and goes.
-- On a populated table the index build takes a share lock on jobs for its duration
-- (about 1 s per million queued rows on a 2-core machine): enqueues and claims wait, nothing
-- fails. To build it without blocking first, run by hand, before migrating:
--   CREATE INDEX CONCURRENTLY jobs_claim_pair_idx ON <schema>.jobs (queue, task, priority, run_at, id) WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS jobs_claim_pair_idx ON {{schema}}.jobs (queue, task, priority, run_at, id) WHERE status = 'queued';
DROP INDEX IF EXISTS {{schema}}.jobs_claim_idx;
