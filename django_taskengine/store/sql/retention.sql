-- Retention: finished jobs deleted in short batches (django_taskengine.retention).
-- Each batch is one transaction: pick ids through the partial index on finished_at, delete
-- their attempts, then the jobs. Both deletes repeat the status and age conditions, so a job
-- that changed since it was picked is never deleted. The ids are one parameter (an array on
-- PostgreSQL, a JSON array on SQLite), which also keeps SQLite clear of its bound-parameter limit.

-- name: try_prune_lock
-- One worker at a time prunes: a transaction-level advisory lock, given up at once if held.
SELECT pg_try_advisory_xact_lock(%s)

-- name: select_prunable_job_ids
-- ORDER BY finished_at walks the partial index on finished_at from the oldest end, which is
-- where the prunable rows are, or from where the previous batch of the same run ended: the
-- index keeps the entries of the jobs deleted until vacuum removes them (while a transaction
-- holds the xmin horizon, all of them), and each batch would step over every earlier batch's.
-- Returns each id with its finished_at. Parameters: status, cutoff, from (finished_at), batch
-- size.
SELECT id, finished_at FROM taskengine_job
WHERE status = %s AND finished_at < %s AND finished_at >= %s
ORDER BY finished_at
LIMIT %s

-- name: select_prunable_job_ids_skip_locked
-- PostgreSQL: as select_prunable_job_ids, leaving a row another transaction holds (an operator
-- retrying it right now) for the next run.
SELECT id, finished_at FROM taskengine_job
WHERE status = %s AND finished_at < %s AND finished_at >= %s
ORDER BY finished_at
LIMIT %s
FOR UPDATE SKIP LOCKED

-- name: delete_pruned_attempts_postgresql
-- Parameters: the picked ids (an array), status, cutoff. Each job, then its attempts, found by
-- key (subqueries of their own, OFFSET 0), the rows deleted by their ctid: with the
-- statistics of a table that has grown since they were taken, the planner read every
-- succeeded job through the status index for a batch of 1,000 ids (150-490 ms a batch).
DELETE FROM taskengine_attempt WHERE ctid = ANY(ARRAY(
    SELECT a.ctid FROM unnest(%s::bigint[]) AS r(id)
    CROSS JOIN LATERAL (
        SELECT x.status, x.finished_at FROM taskengine_job x WHERE x.id = r.id OFFSET 0
    ) j
    CROSS JOIN LATERAL (
        SELECT y.ctid FROM taskengine_attempt y WHERE y.job_id = r.id OFFSET 0
    ) a
    WHERE j.status = %s AND j.finished_at < %s
))

-- name: delete_pruned_dependencies_postgresql
-- Parameters: the picked ids (an array), status, cutoff. The rows that say what the pruned jobs
-- waited for (.using(after=...)), found by the unique index's leading column.
DELETE FROM taskengine_dependency
WHERE job_id = ANY(ARRAY(
    SELECT r.id FROM unnest(%s::bigint[]) AS r(id)
    CROSS JOIN LATERAL (
        SELECT x.status, x.finished_at FROM taskengine_job x WHERE x.id = r.id OFFSET 0
    ) j
    WHERE j.status = %s AND j.finished_at < %s
))

-- name: delete_pruned_jobs_postgresql
-- Parameters: the picked ids (an array), status, cutoff. Found by key, as above.
DELETE FROM taskengine_job WHERE ctid = ANY(ARRAY(
    SELECT j.ctid FROM unnest(%s::bigint[]) AS r(id)
    CROSS JOIN LATERAL (
        SELECT x.ctid, x.status, x.finished_at FROM taskengine_job x WHERE x.id = r.id OFFSET 0
    ) j
    WHERE j.status = %s AND j.finished_at < %s
))

-- name: delete_pruned_attempts_sqlite
-- Parameters: the picked ids (a JSON array), status, cutoff.
DELETE FROM taskengine_attempt
WHERE job_id IN (
    SELECT id FROM taskengine_job
    WHERE id IN (SELECT value FROM json_each(%s)) AND status = %s AND finished_at < %s
)

-- name: delete_pruned_dependencies_sqlite
-- Parameters: the picked ids (a JSON array), status, cutoff.
DELETE FROM taskengine_dependency
WHERE job_id IN (
    SELECT id FROM taskengine_job
    WHERE id IN (SELECT value FROM json_each(%s)) AND status = %s AND finished_at < %s
)

-- name: delete_pruned_jobs_sqlite
-- Parameters: the picked ids (a JSON array), status, cutoff.
DELETE FROM taskengine_job
WHERE id IN (SELECT value FROM json_each(%s)) AND status = %s AND finished_at < %s
