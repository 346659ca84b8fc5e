-- The job list's search by argument values and error text (django_taskengine/admin/job_search.py)
-- and the failures page's read of recent failures (django_taskengine/admin/failures.py).
--
-- On PostgreSQL a GIN index holds the words of each job's arguments and error, as the 'simple'
-- text search configuration splits them (no stemming, no stop words: an order id, an email
-- address, "ConnectionRefusedError", "timed" and "out" are each a word). The search's condition
-- repeats the index's expression exactly: PostgreSQL uses an expression index only for the very
-- same expression.

-- name: drop_invalid_job_search_index_v1
-- A CREATE INDEX CONCURRENTLY that was interrupted leaves an invalid index behind, which
-- IF NOT EXISTS would then keep: drop it first, so that migrating again builds it anew.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE c.relname = 'taskengine_job_search_idx' AND NOT i.indisvalid
    ) THEN
        DROP INDEX taskengine_job_search_idx;
    END IF;
END
$$

-- name: create_job_search_index_v1
-- Built without blocking enqueues, claims or finishes (CONCURRENTLY: two scans of the table,
-- outside any transaction). The expression is immutable: jsonb's text form and the
-- two-argument to_tsvector are. Only jobs at rest (paused or finished: job_indexes.AT_REST)
-- have an entry: a job is tokenized and indexed once, when it finishes, never at enqueue nor
-- at claim (an entry for every row version cost bulk enqueue a fifth of its rate). Queued and
-- running jobs are searched through their own partial indexes (admin/job_search.py).
CREATE INDEX CONCURRENTLY IF NOT EXISTS taskengine_job_search_idx ON taskengine_job
USING gin (to_tsvector('simple'::regconfig, args::text || ' ' || kwargs::text || ' ' || error))
WHERE status IN ('paused', 'succeeded', 'failed', 'cancelled')

-- name: drop_job_search_index_v1
DROP INDEX CONCURRENTLY IF EXISTS taskengine_job_search_idx

-- name: job_text_matches_postgresql
-- Every word of the search term (%s) among the words of the job's arguments and error, served
-- by taskengine_job_search_idx (same expression).
to_tsvector('simple'::regconfig,
    "taskengine_job"."args"::text || ' ' || "taskengine_job"."kwargs"::text || ' '
    || "taskengine_job"."error")
@@ plainto_tsquery('simple'::regconfig, %s)

-- name: job_text_contains_postgresql
-- A run of letters and digits of the term (%s: a LIKE pattern, %run%) inside the text of the
-- job's arguments or error, in any case: true of every job job_text_matches_postgresql
-- matches, and far cheaper to test, so the search of queued and running jobs (no index of
-- their words) tests it first. lower() and LIKE: ILIKE took twice as long.
lower("taskengine_job"."args"::text || ' ' || "taskengine_job"."kwargs"::text || ' '
    || "taskengine_job"."error") LIKE lower(%s) ESCAPE '\'

-- name: job_text_matches_sqlite
-- One word of the search term (%s: a LIKE pattern, %word%) inside the text of the job's
-- arguments or error; the search asks this once per word. A scan of the table: SQLite is for
-- development sizes.
(CAST("taskengine_job"."args" AS TEXT) || ' ' || CAST("taskengine_job"."kwargs" AS TEXT) || ' '
    || "taskengine_job"."error") LIKE %s ESCAPE '\'

-- name: job_id_in_postgresql
-- The job's id is one of a list (%s: one array parameter): the search's matches, up to 10,001
-- ids. As one array, not an IN list of thousands of parameters, which cost Django and the
-- driver far more time to bind than the server took to run the query. Cast to the column's
-- type: the driver sends small ids as integer[], and PostgreSQL hashes a constant array only
-- for an operator of one type (a bigint = integer test walked the whole array, row by row).
"taskengine_job"."id" = ANY(CAST(%s AS bigint[]))
