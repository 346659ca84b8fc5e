-- Statements that migrations run on PostgreSQL. A migration names a versioned block, so what
-- an applied migration did never changes: a new version of a function gets a new block.

-- name: create_created_at_brin_v1
-- The admin filters jobs by creation time. created_at grows with insertion order, so a BRIN
-- index serves that filter in a few pages of storage at almost no cost per enqueue.
CREATE INDEX IF NOT EXISTS taskengine_job_created_brin ON taskengine_job USING brin (created_at)

-- name: drop_created_at_brin_v1
DROP INDEX IF EXISTS taskengine_job_created_brin

-- name: create_enqueue_function_v1
-- One job, no dedup key: the most common enqueue. As a PL/pgSQL function, the INSERT is parsed
-- and planned once per database session and reused, which saves about a quarter of the
-- statement's server time; unlike a client-side prepared statement, nothing is kept on the
-- client, so it works the same through a transaction-mode pooler.
-- Returns {job id, created_at as microseconds since the Unix epoch}: one scalar is cheaper to
-- return and to read than a row (no function scan, no timestamp text to parse). run_after is
-- p_run_after, or created_at when that is NULL.
CREATE OR REPLACE FUNCTION taskengine_enqueue_job(
    p_task_name varchar, p_queue varchar, p_args jsonb, p_kwargs jsonb, p_priority integer,
    p_run_after timestamptz, p_max_attempts integer, p_retry_backoff double precision,
    p_timeout double precision, p_channel text)
RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_run_after timestamptz;
BEGIN
    INSERT INTO taskengine_job AS j (
        task_name, queue, args, kwargs, status, priority, run_after, dedup_key, attempts,
        max_attempts, retry_backoff, timeout, error, traceback, created_at, stop_requested)
    VALUES (p_task_name, p_queue, p_args, p_kwargs, 'queued', p_priority,
        COALESCE(p_run_after, now()), NULL, 0, p_max_attempts, p_retry_backoff, p_timeout,
        '', '', now(), '')
    RETURNING j.id, j.run_after INTO v_id, v_run_after;
    IF v_run_after <= now() THEN
        -- Wake an idle worker at commit; a job due later is found by a later poll.
        PERFORM pg_notify(p_channel, p_queue);
    END IF;
    RETURN ARRAY[v_id, (extract(epoch FROM now()) * 1000000)::bigint];
END
$$

-- name: drop_enqueue_function_v1
DROP FUNCTION IF EXISTS taskengine_enqueue_job(
    varchar, varchar, jsonb, jsonb, integer, timestamptz, integer, double precision,
    double precision, text)

-- name: backfill_job_uid_v1
-- Migration 0009: every job enqueued before it gets its own random uid, in one statement.
UPDATE taskengine_job SET uid = gen_random_uuid() WHERE uid IS NULL

-- name: set_job_uid_default_v1
-- A uid for rows inserted by code that does not know the column (the enqueue function of
-- migration 0008, still called by processes running the previous release during a deploy).
ALTER TABLE taskengine_job ALTER COLUMN uid SET DEFAULT gen_random_uuid()

-- name: drop_job_uid_default_v1
ALTER TABLE taskengine_job ALTER COLUMN uid DROP DEFAULT

-- name: create_enqueue_function_v2
-- As create_enqueue_function_v1, with the job's uid (made by the caller, which then knows it
-- without reading it back). A new signature, so v1 stays for processes of the previous release
-- until they are gone.
CREATE OR REPLACE FUNCTION taskengine_enqueue_job(
    p_task_name varchar, p_queue varchar, p_args jsonb, p_kwargs jsonb, p_priority integer,
    p_run_after timestamptz, p_max_attempts integer, p_retry_backoff double precision,
    p_timeout double precision, p_channel text, p_uid uuid)
RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_run_after timestamptz;
BEGIN
    INSERT INTO taskengine_job AS j (
        task_name, queue, args, kwargs, status, priority, run_after, dedup_key, attempts,
        max_attempts, retry_backoff, timeout, error, traceback, created_at, stop_requested, uid)
    VALUES (p_task_name, p_queue, p_args, p_kwargs, 'queued', p_priority,
        COALESCE(p_run_after, now()), NULL, 0, p_max_attempts, p_retry_backoff, p_timeout,
        '', '', now(), '', p_uid)
    RETURNING j.id, j.run_after INTO v_id, v_run_after;
    IF v_run_after <= now() THEN
        -- Wake an idle worker at commit; a job due later is found by a later poll.
        PERFORM pg_notify(p_channel, p_queue);
    END IF;
    RETURN ARRAY[v_id, (extract(epoch FROM now()) * 1000000)::bigint];
END
$$

-- name: drop_enqueue_function_v2
DROP FUNCTION IF EXISTS taskengine_enqueue_job(
    varchar, varchar, jsonb, jsonb, integer, timestamptz, integer, double precision,
    double precision, text, uuid)

-- name: set_job_autovacuum_v1
-- Migration 0011. PostgreSQL's defaults vacuum a table once 20% of its rows are dead (50 +
-- 0.2 × rows): right for a table whose rows live for months, wrong for the job table, where
-- every job is updated twice within seconds of its insert (claimed, finished) and deleted by
-- retention soon after: three dead versions per job, none of them HOT (both updates change
-- status, a key or a condition of five indexes). Until vacuum runs, the claim's partial index
-- keeps the entry of every job claimed since, and each claim steps over them (the soaks: 200 to
-- 1,450 buffers read for a claim of 100, against 5 on a fresh table).
-- - vacuum_scale_factor 0.01, vacuum_threshold 1000: vacuum once 1,000 rows plus 1% of the
--   table are dead. What slows the claim is the number of jobs claimed since the last vacuum,
--   not the table's size, so the fraction is small: a table holding 10 million finished jobs
--   is vacuumed after 100,000 dead rows, not 2 million. The threshold (about 330 jobs' worth)
--   spares a small, quiet table a vacuum every few dozen jobs.
-- - vacuum_insert_scale_factor 0.01: enqueues alone (a backlog building up) also start a
--   vacuum, which marks the pages all-visible and freezes them in small steps, not in one
--   anti-wraparound pass over a large table.
-- - vacuum_cost_limit 2000: ten times the default budget per cost delay (2 ms), so a vacuum of
--   this table ends in seconds instead of sleeping for most of its run while the dead entries
--   it is removing pile up again; still throttled on a large table.
-- - fillfactor stays 100: no update of a job in its life can be HOT but checkpoints and
--   progress (save_state), and in steady state vacuum leaves room in every page anyway.
-- Storage parameters take a SHARE UPDATE EXCLUSIVE lock: reads and writes go on meanwhile.
ALTER TABLE taskengine_job SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_limit = 2000
)

-- name: reset_job_autovacuum_v1
ALTER TABLE taskengine_job RESET (
    autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_cost_limit
)

-- name: set_attempt_autovacuum_v1
-- Migration 0011. Attempts are inserted once per attempt and deleted with their job by
-- retention: the table only grows until vacuum reclaims the deleted rows. The same values as
-- the job table, for the same reasons (set_job_autovacuum_v1).
ALTER TABLE taskengine_attempt SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_limit = 2000
)

-- name: reset_attempt_autovacuum_v1
ALTER TABLE taskengine_attempt RESET (
    autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold,
    autovacuum_vacuum_insert_scale_factor, autovacuum_vacuum_cost_limit
)

-- name: create_pauses_function_v1
-- The pauses in force, for a statement that starts jobs, read after it holds the start fence
-- (shared; the caller passes its key). A pause, once committed, takes the fence exclusively
-- and so waits for the statements that hold it. A function, VOLATILE: its queries take their
-- snapshot when they run, after the lock, where the calling statement's was taken before it.
-- A statement that reads its pauses here therefore either started its jobs before the pause
-- returned, or sees the pause.
CREATE OR REPLACE FUNCTION taskengine_pauses_in_force(
    p_fence bigint, OUT queues text[], OUT tasks text[], OUT engine boolean)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(p_fence);
    queues := ARRAY(
        SELECT q.name FROM taskengine_queue q
        WHERE q.paused AND (q.paused_until IS NULL OR q.paused_until > now()));
    tasks := ARRAY(
        SELECT p.target FROM taskengine_pause p
        WHERE p.scope = 'task' AND (p.paused_until IS NULL OR p.paused_until > now()));
    engine := EXISTS (
        SELECT 1 FROM taskengine_pause p
        WHERE p.scope = 'engine' AND (p.paused_until IS NULL OR p.paused_until > now()));
END
$$

-- name: drop_pauses_function_v1
DROP FUNCTION IF EXISTS taskengine_pauses_in_force(bigint)


-- name: create_enqueue_function_v3
-- As create_enqueue_function_v2, with flow control (django_taskengine/core/flow.py): the
-- job's group and sequence, and its lane as the caller knows it (from the task's limits, the
-- group and the sequence). A job the caller gives no lane gets its queue's if the queue has a
-- limit in force: that is known here, in the queue table, where an operator's runtime limit
-- is written. A new signature, so v2 stays for processes of the previous release.
CREATE OR REPLACE FUNCTION taskengine_enqueue_job(
    p_task_name varchar, p_queue varchar, p_args jsonb, p_kwargs jsonb, p_priority integer,
    p_run_after timestamptz, p_max_attempts integer, p_retry_backoff double precision,
    p_timeout double precision, p_channel text, p_uid uuid, p_group varchar,
    p_sequence varchar, p_flow_key varchar)
RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_run_after timestamptz;
    v_flow_key varchar := p_flow_key;
BEGIN
    IF v_flow_key IS NULL THEN
        SELECT 'q:' || q.name INTO v_flow_key FROM taskengine_queue q
        WHERE q.name = p_queue AND (q.concurrency IS NOT NULL OR q.rate_limit <> '');
    END IF;
    INSERT INTO taskengine_job AS j (
        task_name, queue, args, kwargs, status, priority, run_after, dedup_key, attempts,
        max_attempts, retry_backoff, timeout, error, traceback, created_at, stop_requested, uid,
        group_key, sequence_key, flow_key)
    VALUES (p_task_name, p_queue, p_args, p_kwargs, 'queued', p_priority,
        COALESCE(p_run_after, now()), NULL, 0, p_max_attempts, p_retry_backoff, p_timeout,
        '', '', now(), '', p_uid, p_group, p_sequence, v_flow_key)
    RETURNING j.id, j.run_after INTO v_id, v_run_after;
    IF v_run_after <= now() THEN
        -- Wake an idle worker at commit; a job due later is found by a later poll. A job
        -- under flow control says so ("flow:" and its queue): workers run a flow claim for it.
        PERFORM pg_notify(p_channel,
            CASE WHEN v_flow_key IS NULL THEN p_queue ELSE 'flow:' || p_queue END);
    END IF;
    RETURN ARRAY[v_id, (extract(epoch FROM now()) * 1000000)::bigint];
END
$$

-- name: drop_enqueue_function_v3
DROP FUNCTION IF EXISTS taskengine_enqueue_job(
    varchar, varchar, jsonb, jsonb, integer, timestamptz, integer, double precision,
    double precision, text, uuid, varchar, varchar, varchar)

-- name: create_flow_usage_function
-- The flow claim's lock (one of the engine's own bigint keys: the namespace, then 3), held to
-- the end of its transaction: flow claims take turns, fleet-wide. Then what the limits count,
-- read in a statement of its own, so that its snapshot is taken after the lock (a volatile
-- function's statements each take one), with every earlier flow claim committed: no limit can
-- be exceeded by two claims that each saw room for one more. Returns the database's clock
-- (seconds since the epoch: every start of the claim is stamped with it); jobs under flow
-- control started or claimed ahead, counted by queue, task, group and sequence; the queues'
-- limits in force; the recent starts of every rate-limited scope.
CREATE OR REPLACE FUNCTION taskengine_flow_usage(p_lock bigint)
-- include: flow_usage_head
        (SELECT COALESCE(json_agg(json_build_array(a.queue, a.task_name, a.group_key,
                                                   a.sequence_key, a.n)), '[]'::json)
         FROM (SELECT j.queue, j.task_name, j.group_key, j.sequence_key, count(*) AS n
               FROM taskengine_job j
               -- Through taskengine_job_flow_active_idx, by its key (every lane is >= ''). A job
               -- with a token is running or reserved; the status is checked too, and written so
               -- that the running and reserved indexes (an entry per job run since the last
               -- vacuum) cannot serve the query.
               WHERE j.flow_key >= '' AND j.token IS NOT NULL
                 AND j.status IN ('running', 'queued')
               GROUP BY 1, 2, 3, 4) AS a),
        (SELECT COALESCE(json_agg(json_build_array(q.name, q.concurrency, q.rate_limit)),
                         '[]'::json)
         FROM taskengine_queue q WHERE q.concurrency IS NOT NULL OR q.rate_limit <> ''),
        (SELECT COALESCE(json_object_agg(w.scope, w.starts), '{}'::json)
         FROM taskengine_rate_window w);
END
$$

-- name: drop_flow_usage_function
DROP FUNCTION IF EXISTS taskengine_flow_usage(bigint)

-- name: index_is_invalid
-- Whether an index of this name (%s) exists but is invalid: what an interrupted CREATE INDEX
-- CONCURRENTLY leaves behind (store/sql/__init__.py, AddIndexConcurrently).
SELECT EXISTS (
    SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relname = %s AND NOT i.indisvalid
)

-- name: create_flow_start_function
-- Start the jobs a flow claim chose, stamped with the claim's clock (`p_now`, seconds since the
-- epoch, as the rate windows are), each with a new fencing token and its advisory lock, unless
-- an operator took one meanwhile; and write the rate windows that changed (`p_windows`, scope
-- to entries). Returns the columns claim_jobs returns, then each job's group, sequence and lane.
-- Both ways of a flow claim start through it: the statement flow_start, and the function
-- taskengine_flow_claim.
CREATE OR REPLACE FUNCTION taskengine_flow_start(
    p_ids bigint[], p_now float8, p_worker uuid, p_ns integer, p_windows jsonb)
RETURNS TABLE (
    o_id bigint, o_task_name varchar, o_queue varchar, o_args text, o_kwargs text,
    o_attempts integer, o_max_attempts integer, o_retry_backoff float8, o_timeout float8,
    o_token uuid, o_started_at timestamptz, o_checkpoint text, o_locked boolean,
    o_priority integer, o_run_after timestamptz, o_uid uuid, o_waits text, o_due timestamptz,
    o_group varchar, o_sequence varchar, o_lane varchar)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    -- plpgsql, not sql: its plan is kept from one call to the next.
    RETURN QUERY
    WITH windows AS (
        INSERT INTO taskengine_rate_window AS r (scope, starts)
        SELECT w.key, w.value FROM jsonb_each(p_windows) AS w
        ON CONFLICT (scope) DO UPDATE SET starts = EXCLUDED.starts
    )
    UPDATE taskengine_job j
    SET status = 'running', attempts = j.attempts + 1, started_at = to_timestamp(p_now),
        finished_at = NULL, worker_id = p_worker, token = gen_random_uuid(),
        lease_expires_at = NULL
    WHERE j.id = ANY(p_ids) AND j.status = 'queued' AND j.token IS NULL
    RETURNING j.id, j.task_name, j.queue, j.args::text, j.kwargs::text, j.attempts,
        j.max_attempts, j.retry_backoff, j.timeout, j.token, j.started_at, j.checkpoint::text,
        pg_try_advisory_lock(p_ns, (j.id)::bit(32)::int4), j.priority, j.run_after, j.uid,
        j.waits::text, GREATEST(j.created_at, j.run_after), j.group_key, j.sequence_key,
        j.flow_key;
END
$$

-- name: drop_flow_start_function
DROP FUNCTION IF EXISTS taskengine_flow_start(bigint[], float8, uuid, integer, jsonb)

-- name: create_flow_scopes_function
-- The limited scopes a job belongs to (its queue, task type, group and sequence), with their
-- limits, under `p_policy`: {"queues": {name: [concurrency, rate count, rate seconds]},
-- "tasks": {name: [concurrency, rate count, rate seconds, group concurrency]}}, the limited
-- queues and task types only, as django_taskengine/store/flow_claim.py writes it from the
-- limits in force. The rule is core/flow.py's Policy.scopes; tests/store/test_flow_fast.py
-- holds the two to the same answers.
CREATE OR REPLACE FUNCTION taskengine_flow_scopes(
    p_policy jsonb, p_queue text, p_task text, p_group text, p_sequence text)
RETURNS TABLE (o_key text, o_concurrency integer, o_rate_count integer, o_rate_seconds float8)
LANGUAGE sql IMMUTABLE AS $$
    SELECT s.key, s.concurrency, s.rate_count, s.rate_seconds
    FROM (SELECT p_policy -> 'tasks' -> p_task AS t, p_policy -> 'queues' -> p_queue AS q) AS l
    CROSS JOIN LATERAL (VALUES
        ('s:' || p_sequence, 1, NULL::integer, NULL::float8),
        (CASE WHEN p_group IS NOT NULL AND l.t ->> 3 IS NOT NULL
              THEN 'g:' || p_task || '|' || p_group END, (l.t ->> 3)::integer, NULL, NULL),
        (CASE WHEN l.t ->> 0 IS NOT NULL OR l.t ->> 1 IS NOT NULL THEN 't:' || p_task END,
         (l.t ->> 0)::integer, (l.t ->> 1)::integer, (l.t ->> 2)::float8),
        (CASE WHEN l.q IS NOT NULL THEN 'q:' || p_queue END,
         (l.q ->> 0)::integer, (l.q ->> 1)::integer, (l.q ->> 2)::float8)
    ) AS s(key, concurrency, rate_count, rate_seconds)
    WHERE s.key IS NOT NULL
$$

-- name: drop_flow_scopes_function
DROP FUNCTION IF EXISTS taskengine_flow_scopes(jsonb, text, text, text, text)

-- name: create_flow_claim_function
-- A flow claim in one statement, for when no limit binds (django_taskengine/store/
-- flow_claim.py: FlowClaimer). `p_candidates` are what flow_candidates read (locked, before the
-- lock, in the statement that calls this), as [id, queue, task, group, sequence, lane, cap] in
-- claim order. Under the flow lock, with the counts taskengine_flow_usage reads after it, the
-- first `p_start` candidates start if every one of them would: the queues' limits in force
-- are the ones the worker's `p_policy` was made from ("seen": what flow_usage last returned),
-- none of them is of a task in `p_park`, every scope they belong to has room for all of them
-- (running and rate window), and no lane was read short of what it holds (a claim that wants
-- more reads it again). Then the rate windows of their scopes get their starts (an entry less
-- than `p_grain` of the period old takes them: core/flow.py, record_starts), and the jobs
-- start through taskengine_flow_start. Otherwise nothing starts, and the worker claims again
-- the general way (flow_usage, core/flow.py's pick, flow_start), which decides job by job.
-- Either way a last row, its id NULL, holds the counts as JSON in o_meta: "now", "running",
-- "queues", "windows" (after the starts), "offered" (how many candidates) and "fast" (whether
-- the jobs started).
CREATE OR REPLACE FUNCTION taskengine_flow_claim(
    p_lock bigint, p_candidates jsonb, p_start integer, p_park text[], p_policy jsonb,
    p_grain float8, p_worker uuid, p_ns integer)
RETURNS TABLE (
    o_id bigint, o_task_name varchar, o_queue varchar, o_args text, o_kwargs text,
    o_attempts integer, o_max_attempts integer, o_retry_backoff float8, o_timeout float8,
    o_token uuid, o_started_at timestamptz, o_checkpoint text, o_locked boolean,
    o_priority integer, o_run_after timestamptz, o_uid uuid, o_waits text, o_due timestamptz,
    o_group varchar, o_sequence varchar, o_lane varchar, o_meta jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_now float8;
    v_running json;
    v_queues json;
    v_windows json;
    v_ids bigint[];
    v_fits boolean;
    v_starts jsonb;
BEGIN
    SELECT u.o_now, u.o_running, u.o_queues, u.o_windows
    INTO v_now, v_running, v_queues, v_windows
    FROM taskengine_flow_usage(p_lock) AS u;
    WITH chosen AS (
        SELECT c.e, c.i
        FROM jsonb_array_elements(p_candidates) WITH ORDINALITY AS c(e, i)
        WHERE c.i <= p_start
    ),
    -- The scopes of each kind of job (queue, task, group, sequence) once, not of each job.
    kinds AS (
        SELECT c.e ->> 1 AS queue, c.e ->> 2 AS task, c.e ->> 3 AS grp, c.e ->> 4 AS seq,
            count(*) AS n
        FROM chosen c GROUP BY 1, 2, 3, 4
    ),
    needed AS (
        SELECT s.o_key AS key, s.o_concurrency AS concurrency, s.o_rate_count AS rate_count,
            s.o_rate_seconds AS period, sum(k.n) AS n
        FROM kinds k
        CROSS JOIN LATERAL taskengine_flow_scopes(p_policy, k.queue, k.task, k.grp, k.seq) s
        GROUP BY 1, 2, 3, 4
    ),
    running AS (
        SELECT s.o_key AS key, sum((r.e ->> 4)::integer) AS n
        FROM json_array_elements(v_running) AS r(e)
        CROSS JOIN LATERAL taskengine_flow_scopes(
            p_policy, r.e ->> 0, r.e ->> 1, r.e ->> 2, r.e ->> 3) s
        WHERE s.o_concurrency IS NOT NULL
        GROUP BY 1
    ),
    -- Each rate window of the claim's scopes: its entries inside the period.
    recent AS (
        SELECT d.key, d.period, d.n,
            COALESCE(jsonb_agg(w.e ORDER BY w.i) FILTER (WHERE w.e IS NOT NULL), '[]') AS entries,
            COALESCE(sum((w.e ->> 1)::float8), 0) AS started
        FROM needed d
        LEFT JOIN LATERAL jsonb_array_elements((v_windows -> d.key)::jsonb)
            WITH ORDINALITY AS w(e, i) ON (w.e ->> 0)::float8 >= v_now - d.period
        WHERE d.rate_count IS NOT NULL
        GROUP BY 1, 2, 3
    )
    SELECT
        (SELECT COALESCE(jsonb_agg(q ORDER BY q), '[]')
         FROM jsonb_array_elements(v_queues::jsonb) q)
            = (SELECT COALESCE(jsonb_agg(q ORDER BY q), '[]')
               FROM jsonb_array_elements(p_policy -> 'seen') q)
        AND NOT EXISTS (SELECT 1 FROM kinds k WHERE k.task = ANY(p_park))
        AND (jsonb_array_length(p_candidates) >= p_start OR NOT EXISTS (
            SELECT 1 FROM jsonb_array_elements(p_candidates) AS c(e)
            GROUP BY c.e ->> 5 HAVING count(*) >= min((c.e ->> 6)::integer)))
        AND NOT EXISTS (
            SELECT 1 FROM needed d LEFT JOIN running r ON r.key = d.key
            WHERE d.n > d.concurrency - COALESCE(r.n, 0))
        AND NOT EXISTS (
            SELECT 1 FROM needed d JOIN recent w ON w.key = d.key
            WHERE d.n > d.rate_count - w.started),
        -- The claim's starts added to the last entry if it is less than a grain old, else
        -- a new one.
        (SELECT COALESCE(jsonb_object_agg(r.key, CASE
            WHEN jsonb_array_length(r.entries) > 0
                 AND v_now - (r.entries -> -1 ->> 0)::float8 < p_grain * r.period
            THEN (r.entries - (-1)) || jsonb_build_array(jsonb_build_array(
                v_now, (r.entries -> -1 ->> 1)::numeric + r.n))
            ELSE r.entries || jsonb_build_array(jsonb_build_array(v_now, r.n))
            END), '{}')
         FROM recent r),
        ARRAY(SELECT (c.e ->> 0)::bigint FROM chosen c ORDER BY c.i)
    INTO v_fits, v_starts, v_ids;
    IF v_fits THEN
        RETURN QUERY
        SELECT s.*, NULL::jsonb
        FROM taskengine_flow_start(v_ids, v_now, p_worker, p_ns, v_starts) AS s
        ORDER BY array_position(v_ids, s.o_id);
    ELSE
        v_starts := '{}';
    END IF;
    RETURN QUERY
    SELECT NULL::bigint, NULL::varchar, NULL::varchar, NULL::text, NULL::text, NULL::integer,
        NULL::integer, NULL::float8, NULL::float8, NULL::uuid, NULL::timestamptz, NULL::text,
        NULL::boolean, NULL::integer, NULL::timestamptz, NULL::uuid, NULL::text,
        NULL::timestamptz, NULL::varchar, NULL::varchar, NULL::varchar,
        jsonb_build_object('now', v_now, 'running', v_running, 'queues', v_queues,
            'windows', COALESCE(v_windows::jsonb, '{}') || v_starts,
            'offered', jsonb_array_length(p_candidates), 'fast', v_fits);
END
$$

-- name: drop_flow_claim_function
DROP FUNCTION IF EXISTS taskengine_flow_claim(
    bigint, jsonb, integer, text[], jsonb, float8, uuid, integer)

-- name: create_flow_running_function
-- What the flow limits count: the jobs under flow control started or claimed ahead (a token),
-- by queue, task, group and sequence, as JSON [[queue, task, group, sequence, count], ...].
-- Read through taskengine_job_flow_active_idx by an index scan whatever the statistics say
-- (they are those of a table whose jobs all waited, or none): a bitmap scan visits the heap
-- for every entry the index keeps of a job finished since the last vacuum, while an index scan
-- marks those entries dead as it passes them, so that the next one steps over them and an
-- insert into their page removes them.
CREATE OR REPLACE FUNCTION taskengine_flow_running()
RETURNS json
LANGUAGE sql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
-- include: flow_running_count
$$

-- name: drop_flow_running_function
DROP FUNCTION IF EXISTS taskengine_flow_running()

-- name: create_flow_usage_function_v2
-- taskengine_flow_usage of migration 0017 (see there), its count read through
-- taskengine_flow_running.
CREATE OR REPLACE FUNCTION taskengine_flow_usage(p_lock bigint)
-- include: flow_usage_head
        taskengine_flow_running(),
-- include: flow_limits_in_force
        ;
END
$$

-- name: flow_usage_head
-- The functions that read what the flow limits count (taskengine_flow_usage and
-- taskengine_flow_read): what they return, the lock, and the database's clock read after it.
RETURNS TABLE (o_now float8, o_running json, o_queues json, o_windows json)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    RETURN QUERY
    SELECT extract(epoch FROM clock_timestamp())::float8,

-- name: flow_limits_in_force
-- The queues' limits in force and the recent starts of every rate-limited scope, as JSON: what
-- the flow claim reads under its lock besides the clock and the count.
        (SELECT COALESCE(json_agg(json_build_array(q.name, q.concurrency, q.rate_limit)),
                         '[]'::json)
         FROM taskengine_queue q WHERE q.concurrency IS NOT NULL OR q.rate_limit <> ''),
        (SELECT COALESCE(json_object_agg(w.scope, w.starts), '{}'::json)
         FROM taskengine_rate_window w)

-- name: create_flow_candidate_type
-- A candidate of the flow claim in one statement (taskengine_flow_claim of migration 0033): the
-- job, the scopes it belongs to, its lane and how many of its lane's jobs were read at most.
CREATE TYPE taskengine_flow_candidate AS (
    id bigint, queue text, task text, grp text, seq text, lane text, cap integer)

-- name: drop_flow_candidate_type
DROP TYPE IF EXISTS taskengine_flow_candidate

-- name: create_flow_claim_function_v2
-- As taskengine_flow_claim of migration 0032 (see there), with two savings. The candidates come
-- as an array in claim order, not as JSON built by the calling statement and taken apart here.
-- And the jobs started or claimed ahead are counted only if a scope of the claim's jobs has a
-- concurrency limit (a sequence is one of 1): a claim under rate limits alone does not need
-- the count ("running" in o_meta is then empty).
CREATE OR REPLACE FUNCTION taskengine_flow_claim(
    p_lock bigint, p_candidates taskengine_flow_candidate[], p_start integer, p_park text[],
    p_policy jsonb, p_grain float8, p_worker uuid, p_ns integer)
RETURNS TABLE (
    o_id bigint, o_task_name varchar, o_queue varchar, o_args text, o_kwargs text,
    o_attempts integer, o_max_attempts integer, o_retry_backoff float8, o_timeout float8,
    o_token uuid, o_started_at timestamptz, o_checkpoint text, o_locked boolean,
    o_priority integer, o_run_after timestamptz, o_uid uuid, o_waits text, o_due timestamptz,
    o_group varchar, o_sequence varchar, o_lane varchar, o_meta jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_chosen taskengine_flow_candidate[] := p_candidates[1:p_start];
    v_ids bigint[];
    v_count boolean;
    v_now float8;
    v_running json := '[]';
    v_queues json;
    v_windows json;
    v_fits boolean;
    v_starts jsonb;
BEGIN
    v_ids := ARRAY(SELECT c.id FROM unnest(v_chosen) WITH ORDINALITY AS c ORDER BY ordinality);
    -- Whether a limited scope of the jobs to start (each kind of job: its queue, task, group
    -- and sequence) has a concurrency limit: then the jobs running are counted. This depends on
    -- the candidates and the policy alone.
    v_count := EXISTS (
        SELECT 1 FROM (SELECT DISTINCT c.queue, c.task, c.grp, c.seq FROM unnest(v_chosen) AS c) k
        CROSS JOIN LATERAL taskengine_flow_scopes(p_policy, k.queue, k.task, k.grp, k.seq) s
        WHERE s.o_concurrency IS NOT NULL);
    -- The lock, then (statements of their own: snapshots taken after it, with every earlier
    -- flow claim committed) what the limits count, as taskengine_flow_usage reads it.
    PERFORM pg_advisory_xact_lock(p_lock);
    IF v_count THEN
        v_running := taskengine_flow_running();
    END IF;
    SELECT extract(epoch FROM clock_timestamp())::float8,
-- include: flow_limits_in_force
    INTO v_now, v_queues, v_windows;
    WITH kinds AS (
        SELECT c.queue, c.task, c.grp, c.seq, count(*) AS n
        FROM unnest(v_chosen) AS c GROUP BY 1, 2, 3, 4
    ),
    needed AS (
        SELECT s.o_key AS key, s.o_concurrency AS concurrency, s.o_rate_count AS rate_count,
            s.o_rate_seconds AS period, sum(k.n) AS n
        FROM kinds k
        CROSS JOIN LATERAL taskengine_flow_scopes(p_policy, k.queue, k.task, k.grp, k.seq) s
        GROUP BY 1, 2, 3, 4
    ),
    running AS (
        SELECT s.o_key AS key, sum((r.e ->> 4)::integer) AS n
        FROM json_array_elements(v_running) AS r(e)
        CROSS JOIN LATERAL taskengine_flow_scopes(
            p_policy, r.e ->> 0, r.e ->> 1, r.e ->> 2, r.e ->> 3) s
        WHERE s.o_concurrency IS NOT NULL
        GROUP BY 1
    ),
    -- Each rate window of the claim's scopes: its entries inside the period.
    recent AS (
        SELECT d.key, d.period, d.n,
            COALESCE(jsonb_agg(w.e ORDER BY w.i) FILTER (WHERE w.e IS NOT NULL), '[]') AS entries,
            COALESCE(sum((w.e ->> 1)::float8), 0) AS started
        FROM needed d
        LEFT JOIN LATERAL jsonb_array_elements((v_windows -> d.key)::jsonb)
            WITH ORDINALITY AS w(e, i) ON (w.e ->> 0)::float8 >= v_now - d.period
        WHERE d.rate_count IS NOT NULL
        GROUP BY 1, 2, 3
    )
    SELECT
        (SELECT COALESCE(jsonb_agg(q ORDER BY q), '[]')
         FROM jsonb_array_elements(v_queues::jsonb) q)
            = (SELECT COALESCE(jsonb_agg(q ORDER BY q), '[]')
               FROM jsonb_array_elements(p_policy -> 'seen') q)
        AND NOT EXISTS (SELECT 1 FROM kinds k WHERE k.task = ANY(p_park))
        AND (cardinality(p_candidates) >= p_start OR NOT EXISTS (
            SELECT 1 FROM unnest(p_candidates) AS c
            GROUP BY c.lane HAVING count(*) >= min(c.cap)))
        AND NOT EXISTS (
            SELECT 1 FROM needed d LEFT JOIN running r ON r.key = d.key
            WHERE d.n > d.concurrency - COALESCE(r.n, 0))
        AND NOT EXISTS (
            SELECT 1 FROM needed d JOIN recent w ON w.key = d.key
            WHERE d.n > d.rate_count - w.started),
        -- The claim's starts added to the last entry if it is less than a grain old, else
        -- a new one.
        (SELECT COALESCE(jsonb_object_agg(r.key, CASE
            WHEN jsonb_array_length(r.entries) > 0
                 AND v_now - (r.entries -> -1 ->> 0)::float8 < p_grain * r.period
            THEN (r.entries - (-1)) || jsonb_build_array(jsonb_build_array(
                v_now, (r.entries -> -1 ->> 1)::numeric + r.n))
            ELSE r.entries || jsonb_build_array(jsonb_build_array(v_now, r.n))
            END), '{}')
         FROM recent r)
    INTO v_fits, v_starts;
    IF v_fits THEN
        RETURN QUERY
        SELECT s.*, NULL::jsonb
        FROM taskengine_flow_start(v_ids, v_now, p_worker, p_ns, v_starts) AS s
        ORDER BY array_position(v_ids, s.o_id);
    ELSE
        v_starts := '{}';
    END IF;
    RETURN QUERY
    SELECT NULL::bigint, NULL::varchar, NULL::varchar, NULL::text, NULL::text, NULL::integer,
        NULL::integer, NULL::float8, NULL::float8, NULL::uuid, NULL::timestamptz, NULL::text,
        NULL::boolean, NULL::integer, NULL::timestamptz, NULL::uuid, NULL::text,
        NULL::timestamptz, NULL::varchar, NULL::varchar, NULL::varchar,
        jsonb_build_object('now', v_now, 'running', v_running, 'queues', v_queues,
            'windows', COALESCE(v_windows::jsonb, '{}') || v_starts,
            'offered', cardinality(p_candidates), 'fast', v_fits);
END
$$

-- name: drop_flow_claim_function_v2
DROP FUNCTION IF EXISTS taskengine_flow_claim(
    bigint, taskengine_flow_candidate[], integer, text[], jsonb, float8, uuid, integer)

-- name: create_flow_running_function_v2
-- taskengine_flow_running of migration 0033 (see there), in plpgsql: a function in sql plans
-- its statement again at every call (a fifth of a millisecond, as much as the count itself),
-- while plpgsql keeps the plan for the session. The plan is made under the function's
-- settings, as before.
CREATE OR REPLACE FUNCTION taskengine_flow_running()
RETURNS json
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
BEGIN
    RETURN (
-- include: flow_running_count
    );
END
$$

-- name: flow_running_count
-- The count taskengine_flow_running returns (both its versions).
SELECT COALESCE(json_agg(json_build_array(a.queue, a.task_name, a.group_key,
                                          a.sequence_key, a.n)), '[]'::json)
FROM (SELECT j.queue, j.task_name, j.group_key, j.sequence_key, count(*) AS n
      FROM taskengine_job j
      -- Every lane is >= ''. A job with a token is running or reserved; the status is
      -- checked too, and written so that the running and reserved indexes (an entry per
      -- job run since the last vacuum) cannot serve the query.
      WHERE j.flow_key >= '' AND j.token IS NOT NULL
        AND j.status IN ('running', 'queued')
      GROUP BY 1, 2, 3, 4) AS a

-- name: create_flow_read_function
-- What the flow claim in one statement (flow_claim, store/sql/postgres.sql) reads under the flow
-- lock: it takes the lock, then reads (statements of their own: snapshots taken after it, with
-- every earlier flow claim committed) the database's clock, the jobs under flow control started
-- or claimed ahead if `p_count` (a concurrency limit of the claim's jobs needs them; '[]'
-- otherwise), the queues' limits in force and the recent starts. taskengine_flow_usage reads the
-- same, its count always.
CREATE OR REPLACE FUNCTION taskengine_flow_read(p_lock bigint, p_count boolean)
-- include: flow_usage_head
        CASE WHEN p_count THEN taskengine_flow_running() ELSE '[]'::json END,
-- include: flow_limits_in_force
        ;
END
$$

-- name: drop_flow_read_function
DROP FUNCTION IF EXISTS taskengine_flow_read(bigint, boolean)

-- name: create_flow_running_function_v3
-- taskengine_flow_running of migration 0034 (see there), with the quotas in force (migration
-- 0036, taskengine_flow_quota): each counts as `starts` jobs running in its queue (a row of no
-- task, group or sequence) until it ends, by the clock read here, after the flow lock. A quota
-- lets its worker start that many jobs in the queue's lane without the lock until then, and
-- its claim checks the end after taking the lock shared (taskengine_flow_quota_clock): a claim
-- that counts here either sees those starts made or counts the quota. Workers of the previous
-- releases read their counts through this function too. The quota table is read whole (a
-- few rows): with sequential scans off, that plan's cost is the one a disabled plan is given,
-- far over the threshold of JIT compilation, which would take a third of a second; hence jit
-- off.
CREATE OR REPLACE FUNCTION taskengine_flow_running()
RETURNS json
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET jit = off
AS $$
BEGIN
    RETURN (
        SELECT COALESCE(json_agg(json_build_array(a.queue, a.task_name, a.group_key,
                                                  a.sequence_key, a.n)), '[]'::json)
        FROM (SELECT j.queue::text, j.task_name::text, j.group_key::text,
                     j.sequence_key::text, count(*) AS n
              FROM taskengine_job j
              -- As flow_running_count.
              WHERE j.flow_key >= '' AND j.token IS NOT NULL
                AND j.status IN ('running', 'queued')
              GROUP BY 1, 2, 3, 4
              UNION ALL
              SELECT substr(l.scope, 3), '', NULL, NULL, l.starts
              FROM taskengine_flow_quota l
              WHERE l.until >= extract(epoch FROM clock_timestamp())) AS a
    );
END
$$

-- name: create_flow_quota_clock_function
-- The clock of a claim through a quota (flow_quota_claim, store/sql/postgres.sql), read after
-- taking the flow lock shared: claims through quotas run side by side, and a flow claim, which
-- holds the lock alone, never counts while one is in flight (see taskengine_flow_running).
CREATE OR REPLACE FUNCTION taskengine_flow_quota_clock(p_lock bigint)
RETURNS float8
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(p_lock);
    RETURN extract(epoch FROM clock_timestamp())::float8;
END
$$

-- name: drop_flow_quota_clock_function
DROP FUNCTION IF EXISTS taskengine_flow_quota_clock(bigint)
