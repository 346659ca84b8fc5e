-- The PostgreSQL store's statements (django_taskengine/store/postgres.py).
--
-- Advisory locks: a running job's lock is (ADVISORY_LOCK_NAMESPACE, low 32 bits of its id),
-- written `(id)::bit(32)::int4` below; the rescuer's guard is one 64-bit key.
-- Ownership of a running job is (worker_id, token, lease_expires_at): every statement that
-- ends an attempt releases all three (django_taskengine/core/ownership.py). A pending stop
-- request belongs to the job: it is written as the outcome leaves it, fenced.

-- name: enqueue_one
-- One job without a dedup key, through the function of migration 0016 (its uid made by the
-- caller; its lane the caller's, or its queue's if that has a limit): its INSERT and NOTIFY
-- are planned once per session. Returns {id, created_at in µs since the epoch}.
SELECT taskengine_enqueue_job(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)

-- name: enqueue_many
-- Any number of calls (one JSON array of [args, kwargs]) with the same options, in one
-- statement; with a dedup key, a conflict with an active job inserts nothing. Returns the new
-- ids, their shared run_after and created_at, and NOTIFYs at commit if any is due (as
-- taskengine_enqueue_job does). Each job gets
-- a random uid; it is not returned (reading a thousand UUIDs back cost ~6% of a bulk enqueue).
WITH ins AS (
    INSERT INTO taskengine_job (
        task_name, queue, args, kwargs, status, priority, run_after, dedup_key, attempts,
        max_attempts, retry_backoff, timeout, error, traceback, created_at, stop_requested, uid,
        group_key, sequence_key, flow_key, dedup_mode)
    SELECT %(task_name)s, %(queue)s, t.call -> 0, t.call -> 1, 'queued', %(priority)s,
        COALESCE(%(run_after)s, now()), %(dedup_key)s, 0, %(max_attempts)s, %(retry_backoff)s,
        %(timeout)s, '', '', now(), '', gen_random_uuid(), %(group_key)s, %(sequence_key)s,
        -- The caller's lane, or the queue's if it has a limit (as in taskengine_enqueue_job).
        COALESCE(%(flow_key)s, (
            SELECT 'q:' || q.name FROM taskengine_queue q
            WHERE q.name = %(queue)s AND (q.concurrency IS NOT NULL OR q.rate_limit <> ''))),
        %(dedup_mode)s
    FROM jsonb_array_elements(%(calls)s::jsonb) WITH ORDINALITY AS t(call, n)
    ORDER BY t.n
    -- The predicate of the partial unique index taskengine_job_active_dedup_key (the key's
    -- holder: job_indexes.DEDUP_HOLDER).
    ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL
        AND status IN ('queued', 'running', 'paused')
        AND (dedup_mode IN ('skip', 'throttle') OR started_at IS NULL) DO NOTHING
    RETURNING id, run_after, created_at, flow_key
)
SELECT ARRAY(SELECT id FROM ins ORDER BY id),
    (SELECT run_after FROM ins LIMIT 1), (SELECT created_at FROM ins LIMIT 1),
    (SELECT count(*) FROM (
        SELECT pg_notify(%(channel)s, CASE WHEN f.flow_key IS NULL THEN %(queue)s
                                           ELSE 'flow:' || %(queue)s END)
        FROM (SELECT flow_key FROM ins WHERE ins.run_after <= now() LIMIT 1) AS f) AS n)

-- name: enqueue_replacing
-- One job with a dedup key whose mode replaces a waiting holder (replace, debounce: see
-- django_taskengine/core/dedup.py): inserted, or, if the key's holder never started, written
-- over it (arguments, priority, run_after). A holder a worker reserved is taken back from it,
-- as an operator's action takes it (start_jobs drops it). No row comes back when the holder
-- cannot be replaced (it holds the key in another mode). `delay`: seconds after the database's
-- now when no run_after is given (a debounce's window). NOTIFYs at commit if the job is due.
WITH up AS (
    INSERT INTO taskengine_job (
        task_name, queue, args, kwargs, status, priority, run_after, dedup_key, attempts,
        max_attempts, retry_backoff, timeout, error, traceback, created_at, stop_requested, uid,
        group_key, sequence_key, flow_key, dedup_mode)
    SELECT %(task_name)s, %(queue)s, %(args)s::jsonb, %(kwargs)s::jsonb, 'queued', %(priority)s,
        COALESCE(%(run_after)s, now() + %(delay)s * interval '1 second'), %(dedup_key)s, 0,
        %(max_attempts)s, %(retry_backoff)s, %(timeout)s, '', '', now(), '', gen_random_uuid(),
        %(group_key)s, %(sequence_key)s,
        COALESCE(%(flow_key)s, (
            SELECT 'q:' || q.name FROM taskengine_queue q
            WHERE q.name = %(queue)s AND (q.concurrency IS NOT NULL OR q.rate_limit <> ''))),
        %(dedup_mode)s
    -- As in enqueue_many.
    ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL
        AND status IN ('queued', 'running', 'paused')
        AND (dedup_mode IN ('skip', 'throttle') OR started_at IS NULL)
    DO UPDATE SET args = EXCLUDED.args, kwargs = EXCLUDED.kwargs, priority = EXCLUDED.priority,
        run_after = EXCLUDED.run_after, worker_id = NULL, token = NULL, lease_expires_at = NULL
    WHERE taskengine_job.dedup_mode IN ('replace', 'debounce')
    RETURNING id, xmax = 0 AS inserted, run_after <= now() AS due, queue, flow_key
)
SELECT up.id, up.inserted,
    (SELECT count(*) FROM (
        SELECT pg_notify(%(channel)s, CASE WHEN up.flow_key IS NULL THEN up.queue
                                           ELSE 'flow:' || up.queue END)
        WHERE up.due) AS n)
FROM up

-- name: throttle_holder
-- The job that holds a throttled key (core/dedup.py): the last one enqueued with it less than
-- `window` seconds ago, finished or not. Read after the key's lock (event_lock).
SELECT id FROM taskengine_job
WHERE dedup_key = %(dedup_key)s
  AND created_at > clock_timestamp() - %(window)s * interval '1 second'
ORDER BY created_at DESC, id DESC
LIMIT 1

-- name: ensure_queue
INSERT INTO taskengine_queue (name, paused, paused_by, pause_reason, created_at)
VALUES (%s, false, '', '', now())
ON CONFLICT (name) DO NOTHING

-- name: pause_fence
-- The start fence (one of the engine's own bigint keys: the namespace, then 2), taken
-- (exclusive) once a pause has committed: it waits until every statement that started
-- jobs without seeing the pause has committed (they hold the fence shared: see the function
-- taskengine_pauses_in_force). After it, nothing starts under that pause.
SELECT pg_advisory_xact_lock(%(fence)s::bigint)

-- name: claim_jobs
-- Due queued jobs of unpaused queues and task types that no worker has reserved, in priority,
-- then run_after, then FIFO order, taken for this worker in one statement (no window between
-- choosing a job and owning it), each with a new fencing token and its advisory lock taken.
-- Jobs under flow control (a lane in flow_key) are not in the claim index: the flow claim takes
-- them (flow_candidates). Nor are jobs of a queue or task type with a limit that were enqueued
-- without a lane, by a process that did not know of the limit yet: a worker gives them theirs
-- (django_taskengine/operations/limits.py).
-- The first `free` (one per idle runner thread) start at once (status running, attempt
-- counted), and so do the next up to `start` unless their task is in `park`; the others are
-- reserved: they stay queued, owned by this worker (its token and lock), and start only when a
-- thread is free for them (start_jobs), or go back untouched. The JSON columns come back as text,
-- loaded per job by the caller: one row Python cannot load fails its own job, not the whole
-- batch (store/decoding.py).
-- The scan starts after the cursor (`after_priority`, `after_run`, `after_id`: the last job
-- this session claimed): jobs of that priority after it, then lower priorities. The index
-- entries of jobs claimed before it stay in the claim index until vacuum removes them, and
-- while a transaction holds back the xmin horizon that is not before it ends: a scan from the
-- head would step over every job claimed since. From the head is the cursor (2^31 - 1,
-- NULL, 0); the session scans from there regularly (PostgresWorkerSession.claim), for the
-- jobs that sort before its cursor: higher priorities, jobs given back or rescued (they keep
-- their place), jobs whose enqueue committed late.
WITH
-- include: claim_pauses
picked AS (
    -- Two index scans of due, unreserved jobs in this worker's queues, the second run only if
    -- the first found fewer than `limit`, each locking only the rows it takes (a locking
    -- clause does not reach into a WITH query: the conditions are written in each). The
    -- pauses in force are read once per claim (hashed, uncorrelated subqueries; names are
    -- never NULL), not joined per job: as anti-joins, or as `<> ALL` of an array, their
    -- estimate on a column of few distinct values (often 1 row) made the planner trade the
    -- claim index's order for a scan and sort of every queued job.
    SELECT * FROM (
        SELECT j.id, j.priority, j.run_after, j.task_name FROM taskengine_job j
        WHERE j.priority = %(after_priority)s
          AND (j.run_after, j.id) > (COALESCE(%(after_run)s::timestamptz, '-infinity'), %(after_id)s::bigint)
          -- include: claimable_now
        ORDER BY j.run_after, j.id
        LIMIT %(limit)s
        FOR UPDATE OF j SKIP LOCKED
    ) this_priority
    UNION ALL
    SELECT * FROM (
        SELECT j.id, j.priority, j.run_after, j.task_name FROM taskengine_job j
        WHERE j.priority < %(after_priority)s
          -- include: claimable_now
        ORDER BY j.priority DESC, j.run_after, j.id
        LIMIT %(limit)s
        FOR UPDATE OF j SKIP LOCKED
    ) lower_priorities
    LIMIT %(limit)s
),
-- include: claim_take

-- name: claim_ids
-- As claim_jobs, of the jobs `ids` only: those a stream delivered to this worker under Redis
-- Streams dispatch (django_taskengine/dispatch), handed over best first, at most the limit. A
-- delivery confers nothing: a job is taken only if it is claimable now, here, under the same
-- conditions, fenced and locked the same way. No ORDER BY here (claim_take ranks them): with
-- one, the generic plan walked the claim index in its order, filtering on the ids, instead of
-- looking them up by primary key (13-16 ms a claim against 1-3 ms with a backlog of 10,000).
WITH
-- include: claim_pauses
picked AS (
    SELECT j.id, j.priority, j.run_after, j.task_name FROM taskengine_job j
    WHERE j.id = ANY(%(ids)s::bigint[])
      -- include: claimable_now
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
),
-- include: claim_take

-- name: claimable_ids
-- Of the jobs `ids` (delivered, and not taken by claim_ids), those claimable now by the same
-- conditions, read without locking: their rows were locked by another transaction when the
-- claim came (SKIP LOCKED passed them by).
WITH
-- include: claim_pauses
delivered AS (SELECT unnest(%(ids)s::bigint[]) AS id)
SELECT j.id FROM taskengine_job j
WHERE j.id IN (SELECT id FROM delivered)
      -- include: claimable_now

-- name: claim_pauses
-- Part of the claims (claim_jobs, claim_ids, relay_candidates): the pauses in force and the
-- queues with a limit, read once per statement.
pauses AS MATERIALIZED (
    -- Read after taking the start fence, with a snapshot of their own: a pause that has
    -- returned is seen (see the function).
    SELECT * FROM taskengine_pauses_in_force(%(fence)s::bigint)
),
limited AS MATERIALIZED (
    SELECT ARRAY(
        SELECT q.name FROM taskengine_queue q
        WHERE q.concurrency IS NOT NULL OR q.rate_limit <> '') AS queues
),

-- name: claimable_now
-- Part of the claims: a job `j` a worker of these queues may take now (with claim_pauses).
AND j.status = 'queued' AND j.token IS NULL AND j.flow_key IS NULL
AND j.run_after <= now()
AND (%(all_queues)s OR j.queue = ANY(%(queues)s))
AND j.queue NOT IN (SELECT unnest(queues) FROM pauses)
AND j.task_name NOT IN (SELECT unnest(tasks) FROM pauses)
AND NOT (SELECT engine FROM pauses)
AND j.queue NOT IN (SELECT unnest(queues) FROM limited)
AND j.task_name NOT IN (SELECT unnest(%(flow_tasks)s::text[]))

-- name: claim_take
-- Part of the claims: the jobs `picked`, taken for this worker.
ranked AS (
    SELECT p.id, p.task_name,
        row_number() OVER (ORDER BY p.priority DESC, p.run_after, p.id) AS n
    FROM picked p
),
held AS (
    -- The jobs only reserved, not started: none when every job picked starts (short jobs, the
    -- busiest case), so the three tests of each row below cost nothing then.
    SELECT ARRAY(
        SELECT r.id FROM ranked r
        WHERE NOT (r.n <= %(free)s OR (r.n <= %(start)s AND NOT r.task_name = ANY(%(park)s)))
    ) AS ids
)
UPDATE taskengine_job j
SET status = CASE WHEN j.id = ANY((SELECT ids FROM held)::bigint[]) THEN 'queued' ELSE 'running' END,
    attempts = j.attempts + CASE WHEN j.id = ANY((SELECT ids FROM held)::bigint[]) THEN 0 ELSE 1 END,
    started_at = CASE WHEN j.id = ANY((SELECT ids FROM held)::bigint[]) THEN NULL ELSE now() END,
    finished_at = NULL, worker_id = %(worker)s, token = gen_random_uuid(), lease_expires_at = NULL
WHERE j.id = ANY(ARRAY(SELECT id FROM picked))
RETURNING
-- include: taken_job_columns

-- name: taken_job_columns
-- What the claims (claim_take, flow_claim, flow_quota_claim) return of each job they take, in
-- the order that store/postgres_claims.py's claimed_job reads: its advisory lock taken (`ns`)
-- as it is read.
    j.id, j.task_name, j.queue, j.args::text, j.kwargs::text, j.attempts, j.max_attempts,
    j.retry_backoff, j.timeout, j.token, j.started_at, j.checkpoint::text,
    pg_try_advisory_lock(%(ns)s::integer, (j.id)::bit(32)::int4), j.priority, j.run_after,
    j.uid, j.waits::text, GREATEST(j.created_at, j.run_after)

-- name: begin
-- The flow claim's transaction, its BEGIN and COMMIT sent in its pipeline
-- (store/postgres_claims.py: PostgresFlowSource.locked).
BEGIN

-- name: commit
COMMIT

-- name: rollback
ROLLBACK

-- name: flow_usage
-- The flow claim's lock, then what the limits count (the function of migration 0017, one
-- statement of the pipeline; see there): the database's clock, jobs under flow control started
-- or claimed ahead by scope, the queues' limits in force, the recent starts.
SELECT * FROM taskengine_flow_usage(%(lock)s::bigint)

-- name: flow_candidates
-- Jobs the flow claim may start, lane by lane (a lane is a flow_key), from the lane after
-- `after` (the last one this session took from) round to it: at most `max_lanes` lanes, and in
-- each the first due jobs in claim order, as many as the lane had room for at the previous
-- claim (`rooms` by lane, at least one; `prefixes`: a group limit by lane prefix), at most
-- `per_lane`; for a sequence, only its first job not finished, in enqueue order, if that one
-- is due and waiting. Which of them may start is decided under the lock (core/flow.py: pick).
-- Lanes are found one index probe each (the next flow_key after the last), never by reading
-- every waiting job. Holds the start fence as claim_jobs does. Run before the flow lock: the
-- jobs of a lane are locked as read, skipping those another claim holds (a sequence's first
-- job is not: see below).
WITH RECURSIVE pauses AS MATERIALIZED (
    SELECT * FROM taskengine_pauses_in_force(%(fence)s::bigint)
),
onward(k, n) AS (
    SELECT (SELECT min(j.flow_key) FROM taskengine_job j
            WHERE j.status = 'queued' AND j.token IS NULL AND j.flow_key IS NOT NULL
              AND j.flow_key > %(after)s), 1::int
    UNION ALL
    SELECT (SELECT min(j.flow_key) FROM taskengine_job j
            WHERE j.status = 'queued' AND j.token IS NULL AND j.flow_key IS NOT NULL
              AND j.flow_key > o.k), o.n + 1
    FROM onward o WHERE o.k IS NOT NULL AND o.n < %(max_lanes)s::int
),
wrapped(k, n) AS (
    -- From the first lane again, short of the cursor's: that one comes last, unprobed (its
    -- read finds nothing if no job of it waits). A probe would step over the index entries
    -- its read steps over again: those of the jobs just taken from it (held by another
    -- claim, or started too recently for the index to have dropped them).
    SELECT (SELECT min(j.flow_key) FROM taskengine_job j
            WHERE j.status = 'queued' AND j.token IS NULL AND j.flow_key IS NOT NULL
              AND j.flow_key < %(after)s),
        %(max_lanes)s::int + 1
    WHERE %(after)s <> ''
    UNION ALL
    SELECT (SELECT min(j.flow_key) FROM taskengine_job j
            WHERE j.status = 'queued' AND j.token IS NULL AND j.flow_key IS NOT NULL
              AND j.flow_key > r.k AND j.flow_key < %(after)s), r.n + 1
    FROM wrapped r WHERE r.k IS NOT NULL AND r.n < 2 * %(max_lanes)s::int
),
lanes AS MATERIALIZED (
    -- Each lane with how many of its jobs to read (`cap`): as many as it has room for
    -- (django_taskengine/core/flow.py: lane_room).
    SELECT o.k, o.n, LEAST(%(per_lane)s::int, COALESCE(
        (SELECT r.value::int FROM jsonb_each_text(%(rooms)s::jsonb) AS r WHERE r.key = o.k),
        (SELECT p.value::int FROM jsonb_each_text(%(prefixes)s::jsonb) AS p
         WHERE starts_with(o.k, p.key) LIMIT 1),
        %(per_lane)s::int)) AS cap
    FROM (SELECT k, n FROM onward WHERE k IS NOT NULL
          UNION ALL
          SELECT k, n FROM wrapped WHERE k IS NOT NULL
          UNION ALL
          SELECT %(after)s, 2 * %(max_lanes)s::int + 1 WHERE %(after)s <> '') AS o
)
SELECT c.id, c.queue, c.task_name, c.group_key, c.sequence_key, l.k, l.cap, l.n,
    c.priority, c.run_after
FROM lanes l
CROSS JOIN LATERAL (
    SELECT * FROM (
    SELECT x.id, x.queue, x.task_name, x.group_key, x.sequence_key, x.priority, x.run_after
     FROM taskengine_job x
     WHERE l.k NOT LIKE 's:%%' AND x.flow_key = l.k
       AND x.status = 'queued' AND x.token IS NULL AND x.run_after <= now()
       AND (%(all_queues)s OR x.queue = ANY(%(queues)s))
       AND x.queue NOT IN (SELECT unnest(queues) FROM pauses)
       AND x.task_name NOT IN (SELECT unnest(tasks) FROM pauses)
       AND NOT (SELECT engine FROM pauses)
     ORDER BY x.priority DESC, x.run_after, x.id
     LIMIT l.cap
     -- Locked as read, skipping those another claim is reading (it takes turns with this
     -- one only to count and start: flow_usage).
     FOR UPDATE OF x SKIP LOCKED) AS lane_jobs
    UNION ALL
    -- A sequence's first job not finished, not locked: skipping it, were it locked, would
    -- take the next one. flow_start finds it again, if no other claim took it.
    SELECT * FROM (
    SELECT h.id, h.queue, h.task_name, h.group_key, h.sequence_key, h.priority, h.run_after
     FROM (SELECT x.* FROM taskengine_job x
           WHERE l.k LIKE 's:%%' AND x.sequence_key = substr(l.k, 3)
             AND x.status IN ('queued', 'running', 'paused')
           ORDER BY x.id
           LIMIT 1) h
     WHERE h.status = 'queued' AND h.token IS NULL AND h.run_after <= now()
       AND (%(all_queues)s OR h.queue = ANY(%(queues)s))
       AND h.queue NOT IN (SELECT unnest(queues) FROM pauses)
       AND h.task_name NOT IN (SELECT unnest(tasks) FROM pauses)
       AND NOT (SELECT engine FROM pauses)) AS head
) c
ORDER BY l.n, c.priority DESC, c.run_after, c.id
LIMIT %(cap)s

-- name: flow_start
-- Start the jobs the flow claim chose (django_taskengine/core/flow.py: pick) and write the rate
-- windows that changed (the function of migration 0032; see there).
SELECT * FROM taskengine_flow_start(
    %(ids)s::bigint[], %(now)s::float8, %(worker)s::uuid, %(ns)s::integer, %(windows)s::jsonb)

-- name: flow_claim
-- The flow claim in one statement, when no limit binds (django_taskengine/store/flow_claim.py:
-- FlowClaimer). The candidates as flow_candidates reads them (locked, before the flow lock);
-- then, under the lock, the counts (taskengine_flow_read, migration 0035); and the first
-- `start` candidates started if every one of them would start: the queues' limits in force are
-- the ones the worker's `policy` was made from ("seen": what the flow claim last read), none of
-- them is of a task in `park`, every scope they belong to has room for all of them (running and
-- rate window), and no lane was read short of what it holds (a claim that wants more reads it
-- again). Their rate windows then get their starts (an entry less than a grain of the period
-- old takes them: core/flow.py, record_starts). Otherwise nothing starts, and the worker claims
-- again the general way (flow_usage, core/flow.py's pick, flow_start), which decides job by
-- job. The scopes of a job are taskengine_flow_scopes' (migration 0032), under `policy`.
-- Returns the jobs started (the columns flow_start returns), in no order, and a last row, its
-- id NULL, with the counts as JSON: "now", "running" (counted only if a scope of the jobs to
-- start has a concurrency limit: a sequence is one of 1), "queues", "windows" (after the
-- starts), "offered" (how many candidates), "fast" (whether the jobs started), "order" (the
-- ids of the jobs to start, in claim order) and "quota" ([lane, starts, end] of the quota
-- granted to the worker, or null: see `quota` below).
-- Written as one statement rather than as a function that takes the candidates as an array
-- and starts them through taskengine_flow_start (migration 0033's taskengine_flow_claim, which
-- workers of the previous release still call): the same decision and starts, with no array of
-- candidates built and taken apart and the jobs returned once, not copied through two
-- functions' results and sorted there. In a drain of 30,000 no-op jobs that took a fifth off
-- the claim's time in the server (docs/explanation/benchmarks.md).
WITH cand AS MATERIALIZED (
    SELECT c.id, c.queue, c.task_name AS task, c.group_key AS grp, c.sequence_key AS seq,
        c.k AS lane, c.cap,
        row_number() OVER (ORDER BY c.n, c.priority DESC, c.run_after, c.id) AS rank
    FROM (
-- include: flow_candidates
    ) AS c
),
chosen AS MATERIALIZED (
    SELECT * FROM cand WHERE rank <= %(start)s::integer
),
-- The scopes of each kind of job (queue, task, group, sequence) once, not of each job.
kinds AS MATERIALIZED (
    SELECT c.queue, c.task, c.grp, c.seq, count(*) AS n FROM chosen c GROUP BY 1, 2, 3, 4
),
needed AS MATERIALIZED (
    SELECT s.o_key AS key, s.o_concurrency AS concurrency, s.o_rate_count AS rate_count,
        s.o_rate_seconds AS period, sum(k.n) AS n
    FROM kinds k
    CROSS JOIN LATERAL taskengine_flow_scopes(%(policy)s::jsonb, k.queue, k.task, k.grp, k.seq) s
    GROUP BY 1, 2, 3, 4
),
usage AS MATERIALIZED (
    -- The lock and the counts, once the candidates are read and locked: the call's arguments
    -- wait for them.
    SELECT u.* FROM taskengine_flow_read(
        CASE WHEN (SELECT count(*) FROM cand) >= 0 THEN %(lock)s::bigint END,
        EXISTS (SELECT 1 FROM needed d WHERE d.concurrency IS NOT NULL)) AS u
),
running AS (
    SELECT s.o_key AS key, sum((r.e ->> 4)::integer) AS n
    FROM usage u
    CROSS JOIN LATERAL json_array_elements(u.o_running) AS r(e)
    CROSS JOIN LATERAL taskengine_flow_scopes(
        %(policy)s::jsonb, r.e ->> 0, r.e ->> 1, r.e ->> 2, r.e ->> 3) s
    WHERE s.o_concurrency IS NOT NULL
    GROUP BY 1
),
-- Each rate window of the claim's scopes: its entries inside the period.
recent AS MATERIALIZED (
    SELECT d.key, d.period, d.rate_count, d.n,
        COALESCE(jsonb_agg(w.e ORDER BY w.i) FILTER (WHERE w.e IS NOT NULL), '[]') AS entries,
        COALESCE(sum((w.e ->> 1)::float8), 0) AS started
    FROM needed d
    CROSS JOIN usage u
    LEFT JOIN LATERAL jsonb_array_elements((u.o_windows -> d.key)::jsonb)
        WITH ORDINALITY AS w(e, i) ON (w.e ->> 0)::float8 >= u.o_now - d.period
    WHERE d.rate_count IS NOT NULL
    GROUP BY 1, 2, 3, 4
),
decision AS MATERIALIZED (
    SELECT
        (SELECT COALESCE(jsonb_agg(q ORDER BY q), '[]')
         FROM usage u CROSS JOIN LATERAL jsonb_array_elements(u.o_queues::jsonb) AS q)
            = (SELECT COALESCE(jsonb_agg(q ORDER BY q), '[]')
               FROM jsonb_array_elements(%(policy)s::jsonb -> 'seen') AS q)
        AND NOT EXISTS (SELECT 1 FROM kinds k WHERE k.task = ANY(%(park)s::text[]))
        AND ((SELECT count(*) FROM cand) >= %(start)s::integer OR NOT EXISTS (
            SELECT 1 FROM cand c GROUP BY c.lane HAVING count(*) >= min(c.cap)))
        AND NOT EXISTS (
            SELECT 1 FROM needed d LEFT JOIN running r ON r.key = d.key
            WHERE d.n > d.concurrency - COALESCE(r.n, 0))
        AND NOT EXISTS (
            SELECT 1 FROM needed d JOIN recent w ON w.key = d.key
            WHERE d.n > d.rate_count - w.started) AS fits,
        -- The claim's starts added to the last entry if it is less than a grain old (the
        -- coarse one while the window, with them, holds at most `coarse_share` of its limit),
        -- else a new one: core/flow.py, merge_within.
        (SELECT COALESCE(jsonb_object_agg(r.key, CASE
            WHEN jsonb_array_length(r.entries) > 0
                 AND u.o_now - (r.entries -> -1 ->> 0)::float8 < r.period * CASE
                     WHEN r.started + r.n <= %(coarse_share)s::float8 * r.rate_count
                     THEN %(coarse_grain)s::float8 ELSE %(grain)s::float8 END
            THEN (r.entries - (-1)) || jsonb_build_array(jsonb_build_array(
                u.o_now, (r.entries -> -1 ->> 1)::numeric + r.n))
            ELSE r.entries || jsonb_build_array(jsonb_build_array(u.o_now, r.n))
            END), '{}')
         FROM recent r CROSS JOIN usage u) AS starts
),
-- A quota for this worker (`quota` starts, 0 for none; its claims: flow_quota_claim), if the
-- claim starts its jobs, read candidates of one lane only, a queue's, whose scope is the only
-- limited one its jobs belong to, and the queue stays within `quota_share` of its limits with
-- the quota's starts counted as well: of its concurrency limit (the jobs running and the
-- quotas in force: taskengine_flow_running) and of its rate limit (the window's starts in the
-- period). It ends `quota_seconds` after the claim's clock.
quota AS MATERIALIZED (
    SELECT d.key, d.concurrency, %(quota)s::integer AS starts,
        u.o_now + %(quota_seconds)s::float8 AS until
    FROM needed d
    CROSS JOIN usage u
    CROSS JOIN decision x
    LEFT JOIN running r ON r.key = d.key
    LEFT JOIN recent w ON w.key = d.key
    WHERE %(quota)s::integer > 0 AND x.fits AND d.key LIKE 'q:%%'
      AND (SELECT count(*) FROM needed) = 1
      AND NOT EXISTS (SELECT 1 FROM cand c WHERE c.lane <> d.key)
      AND (d.concurrency IS NULL OR COALESCE(r.n, 0) + d.n + %(quota)s::integer
                                    <= %(quota_share)s::float8 * d.concurrency)
      AND (d.rate_count IS NULL OR w.started + d.n + %(quota)s::integer
                                   <= %(quota_share)s::float8 * d.rate_count)
),
-- The rate windows the claim writes: with its starts, and a quota's starts before the last
-- entry, stamped at the quota's end (they count until a period after it, whenever they are
-- made); the last entry is the one later claims' starts may join (core/flow.py,
-- record_starts), which would stamp them earlier.
written AS MATERIALIZED (
    SELECT w.key, CASE WHEN e.key IS NULL THEN w.value
        ELSE (w.value - (-1))
            || jsonb_build_array(jsonb_build_array(e.until, e.starts), w.value -> -1)
        END AS value
    FROM decision d
    CROSS JOIN LATERAL jsonb_each(d.starts) AS w
    LEFT JOIN quota e ON e.key = w.key
    WHERE d.fits
),
windows AS (
    INSERT INTO taskengine_rate_window AS r (scope, starts)
    SELECT w.key, w.value FROM written w
    ON CONFLICT (scope) DO UPDATE SET starts = EXCLUDED.starts
),
-- A quota of a queue with a concurrency limit, for the flow claims to count; and those that
-- ended a minute ago, of workers that did not claim again.
granted AS (
    INSERT INTO taskengine_flow_quota AS l (worker_id, scope, starts, until)
    SELECT %(worker)s::uuid, e.key, e.starts, e.until FROM quota e
    WHERE e.concurrency IS NOT NULL
    ON CONFLICT (worker_id, scope) DO UPDATE SET starts = EXCLUDED.starts, until = EXCLUDED.until
),
ended AS (
    DELETE FROM taskengine_flow_quota l
    WHERE EXISTS (SELECT 1 FROM quota) AND l.worker_id <> %(worker)s::uuid
      AND l.until < (SELECT u.o_now FROM usage u) - 60
),
started AS (
    -- By primary key (an array, as claim_jobs' update): never a join the planner might make a
    -- scan of the table. Each is still waiting: an operator may have taken one meanwhile.
    UPDATE taskengine_job j
    SET status = 'running', attempts = j.attempts + 1,
        started_at = to_timestamp((SELECT u.o_now FROM usage u)),
        finished_at = NULL, worker_id = %(worker)s::uuid, token = gen_random_uuid(),
        lease_expires_at = NULL
    WHERE j.id = ANY(ARRAY(SELECT c.id FROM chosen c WHERE (SELECT d.fits FROM decision d)))
      AND j.status = 'queued' AND j.token IS NULL
    RETURNING
-- include: taken_job_columns
        , j.group_key, j.sequence_key, j.flow_key
)
SELECT s.*, NULL::jsonb FROM started s
UNION ALL
SELECT NULL::bigint, NULL::varchar, NULL::varchar, NULL::text, NULL::text, NULL::integer,
    NULL::integer, NULL::float8, NULL::float8, NULL::uuid, NULL::timestamptz, NULL::text,
    NULL::boolean, NULL::integer, NULL::timestamptz, NULL::uuid, NULL::text, NULL::timestamptz,
    NULL::varchar, NULL::varchar, NULL::varchar,
    jsonb_build_object('now', u.o_now, 'running', u.o_running, 'queues', u.o_queues,
        'windows', COALESCE(u.o_windows::jsonb, '{}')
            || (SELECT COALESCE(jsonb_object_agg(w.key, w.value), '{}') FROM written w),
        'offered', (SELECT count(*) FROM cand), 'fast', d.fits,
        'order', (SELECT COALESCE(jsonb_agg(c.id ORDER BY c.rank), '[]') FROM chosen c),
        'quota', (SELECT jsonb_build_array(e.key, e.starts, e.until) FROM quota e))
FROM usage u CROSS JOIN decision d

-- name: flow_quota_claim
-- A flow claim through this worker's quota of a queue's lane (granted by flow_claim; `until`:
-- its end, seconds since the epoch): up to `limit` due jobs of the lane, of that queue, of no
-- sequence and of no task type in `tasks` (those with limits, and those parked when the claim
-- may start more than the worker's free threads), in claim order, started if the database's
-- clock, read after taking the flow lock shared (taskengine_flow_quota_clock), is not past the
-- end, and stamped with it. A flow claim holds that lock alone and counts the quotas in force:
-- whichever of the two comes second sees what the first did. The worker makes no more starts
-- through a quota than it grants. Holds the start fence as claim_jobs does. Returns the
-- columns claim_jobs returns.
WITH pauses AS MATERIALIZED (
    SELECT * FROM taskengine_pauses_in_force(%(fence)s::bigint)
),
picked AS MATERIALIZED (
    SELECT x.id FROM taskengine_job x
    WHERE x.flow_key = %(lane)s AND x.queue = %(queue)s
      AND x.status = 'queued' AND x.token IS NULL AND x.run_after <= now()
      AND x.sequence_key IS NULL
      -- A hashed subquery, as in claimable_now: `<> ALL` of an array parameter is estimated to
      -- keep no row when one task fills the queue, and the generic plan then read the whole
      -- queue and sorted it (15 ms a claim against 1.7 ms with a backlog of 30,000).
      AND x.task_name NOT IN (SELECT unnest(%(tasks)s::text[]))
      AND x.queue NOT IN (SELECT unnest(queues) FROM pauses)
      AND x.task_name NOT IN (SELECT unnest(tasks) FROM pauses)
      AND NOT (SELECT engine FROM pauses)
    ORDER BY x.priority DESC, x.run_after, x.id
    LIMIT %(limit)s
    FOR UPDATE OF x SKIP LOCKED
),
clock AS MATERIALIZED (
    -- The lock once the jobs are read and locked: the call's argument waits for them.
    SELECT taskengine_flow_quota_clock(
        CASE WHEN (SELECT count(*) FROM picked) >= 0 THEN %(lock)s::bigint END) AS now
)
UPDATE taskengine_job j
SET status = 'running', attempts = j.attempts + 1,
    started_at = to_timestamp((SELECT c.now FROM clock c)),
    finished_at = NULL, worker_id = %(worker)s::uuid, token = gen_random_uuid(),
    lease_expires_at = NULL
WHERE j.id = ANY(ARRAY(
        SELECT p.id FROM picked p WHERE (SELECT c.now FROM clock c) <= %(until)s::float8))
  AND j.status = 'queued' AND j.token IS NULL
RETURNING
-- include: taken_job_columns

-- name: start_jobs
-- Start jobs this worker reserved (`start` true) or give them back (`start` false), fenced by
-- their tokens (a job already running under its token counts as started: a retry after a lost
-- reply): a job starts (status running, attempt counted, started_at now) only if it is
-- still reserved by this attempt and its queue, task type and the engine are not paused now —
-- nothing starts after a pause has returned. Every other one still reserved goes back to the
-- queue untouched (no attempt counted, its place kept), and idle workers are woken for it. An
-- operator's action on a reserved job (a pause, a cancel) took it already: it is skipped.
-- Releases the advisory locks in `unlock` of the jobs that did not start. Returns the started
-- ids with their attempt numbers and start times.
WITH pauses AS MATERIALIZED (
    -- Read after taking the start fence, as in claim_jobs.
    SELECT * FROM taskengine_pauses_in_force(%(fence)s::bigint)
),
r AS (
    SELECT * FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS r(id, token)
),
mine AS (
    -- One probe by primary key per job, a subquery of its own (OFFSET 0), as in
    -- write_outcomes: never a scan of every queued and running job, nor a join whose cost
    -- grows with the square of the batch.
    SELECT j.* FROM r CROSS JOIN LATERAL (
        SELECT x.id, x.queue, x.task_name, x.status, x.attempts, x.started_at
        FROM taskengine_job x
        WHERE x.id = r.id AND x.token = r.token AND x.status IN ('queued', 'running')
        OFFSET 0
        FOR UPDATE
    ) j
),
ok AS (
    SELECT m.id FROM mine m
    WHERE %(start)s AND m.status = 'queued'
      AND m.queue NOT IN (SELECT unnest(queues) FROM pauses)
      AND m.task_name NOT IN (SELECT unnest(tasks) FROM pauses)
      AND NOT (SELECT engine FROM pauses)
),
updated AS (
    UPDATE taskengine_job j
    SET status = 'running', attempts = j.attempts + 1, started_at = now(), finished_at = NULL
    WHERE j.id = ANY(ARRAY(SELECT id FROM ok))
    RETURNING j.id, j.attempts, j.started_at
),
started AS (
    SELECT id, attempts, started_at FROM updated
    UNION ALL
    SELECT id, attempts, started_at FROM mine WHERE status = 'running'
),
released AS (
    UPDATE taskengine_job j SET worker_id = NULL, token = NULL, lease_expires_at = NULL
    WHERE j.id = ANY(ARRAY(
        SELECT id FROM mine WHERE status = 'queued' AND id NOT IN (SELECT id FROM ok)))
    RETURNING j.queue
),
unlocked AS (
    SELECT pg_advisory_unlock(%(ns)s, (u.id)::bit(32)::int4)
    FROM unnest(%(unlock)s::bigint[]) AS u(id)
    WHERE u.id NOT IN (SELECT id FROM started)
),
woken AS (
    SELECT pg_notify(%(channel)s, q.queue) FROM (SELECT DISTINCT queue FROM released) AS q
)
SELECT ARRAY(SELECT id FROM started ORDER BY id),
    ARRAY(SELECT attempts FROM started ORDER BY id),
    ARRAY(SELECT started_at FROM started ORDER BY id),
    (SELECT count(*) FROM unlocked), (SELECT count(*) FROM woken)

-- name: write_outcomes
-- The outcomes the caller decided (django_taskengine/core/lifecycle.py), one array element
-- per attempt, each applied only if its attempt still owns the job (token, status running)
-- and the job's stop request is still the one the outcome was decided with (`stop`; the
-- write sets it to `stop_after`). Every attempt gets its record: "superseded" when its write
-- was fenced out (unless the job is gone), none when it was fenced out only by a changed stop
-- request: the caller decides again with the current request (returned) and writes again.
-- The rows are locked first (`cur`), so that a stop request changed concurrently is seen by
-- both the fence and the report, and so that what the update will apply is known there: the
-- later steps read `cur` alone and join nothing. Also releases the advisory locks of the jobs
-- in `unlock`. `terminal` (the core's decision) says the job is finished at the attempt's
-- end; `workers` names the attempt's worker when it is not the writer (a rescue); `waits`, the
-- job's durable waits after an attempt that ended in one (ctx.sleep, ctx.wait_for_event), and
-- `waiting_for` the event a parked job waits for (NULL for every other outcome). `workers`,
-- `errors`, `tracebacks`, `refunds`, `stops`, `stops_after`, `waits` and `waiting_for` may be
-- empty when every element would be the default (none, "", "", false, "", "", none, none):
-- unnest pads them with NULL. A job that a job.wait() watches is told of on
-- `finished_channel` when it finishes. The jobs that wait for jobs it finishes are returned.
WITH o AS (
    SELECT u.id, u.token, u.status, u.outcome, u.result, COALESCE(u.error, '') AS error,
        COALESCE(u.traceback, '') AS traceback, u.due_in, COALESCE(u.refund, false) AS refund,
        u.number, u.started, u.finished, u.terminal, u.worker,
        COALESCE(u.stop, '') AS stop, COALESCE(u.stop_after, '') AS stop_after, u.waits,
        u.waiting_for
    FROM unnest(
        %(ids)b::bigint[], %(tokens)b::uuid[], %(statuses)b::text[], %(outcomes)b::text[],
        %(results)b::text[], %(errors)b::text[], %(tracebacks)b::text[], %(due_in)b::float8[],
        %(refunds)b::bool[], %(numbers)b::int[], %(started)b::timestamptz[],
        %(finished)b::timestamptz[], %(terminal)b::bool[], %(workers)b::uuid[],
        %(stops)b::text[], %(stops_after)b::text[], %(waits)b::text[],
        %(waiting_for)b::text[])
    AS u(id, token, status, outcome, result, error, traceback, due_in, refund, number,
         started, finished, terminal, worker, stop, stop_after, waits, waiting_for)
),
cur AS (
    -- One probe by primary key per outcome. The probe is a subquery of its own (OFFSET 0):
    -- joined to the outcomes as a whole, the planner matched every running job against
    -- every outcome, a cost growing with the square of the batch.
    SELECT o.*, j.stop_requested AS stop_now,
        (j.status = 'running' AND j.stop_requested = o.stop) IS TRUE AS applies,
        (j.status = 'running' AND j.stop_requested <> o.stop) IS TRUE AS restop,
        j.status IS NOT NULL AS owned, j.notify_finish IS TRUE AS notify_finish, j.queue,
        j.flow_key IS NOT NULL AS lane
    FROM o LEFT JOIN LATERAL (
        SELECT x.status, x.stop_requested, x.notify_finish, x.queue, x.flow_key
        FROM taskengine_job x
        WHERE x.id = o.id AND x.token = o.token
        OFFSET 0
        FOR UPDATE
    ) j ON true
),
upd AS (
    -- The rows are locked: what `cur` read of them is what they hold.
    UPDATE taskengine_job j SET
        status = c.status,
        result = c.result::jsonb,
        error = c.error,
        traceback = c.traceback,
        finished_at = CASE WHEN c.terminal THEN c.finished END,
        run_after = COALESCE(now() + c.due_in * interval '1 second', j.run_after),
        attempts = CASE WHEN c.refund THEN j.attempts - 1 ELSE j.attempts END,
        worker_id = NULL, token = NULL, lease_expires_at = NULL, stop_requested = c.stop_after,
        waits = COALESCE(c.waits::jsonb, j.waits), waiting_for = c.waiting_for
    FROM cur c
    WHERE c.applies AND j.id = c.id AND j.token = c.token
    RETURNING j.id
),
att AS (
    INSERT INTO taskengine_attempt (job_id, number, worker_id, started_at, finished_at, outcome,
                                    error, traceback)
    SELECT c.id, c.number, COALESCE(c.worker, %(worker)s), c.started, c.finished,
        CASE WHEN c.applies THEN c.outcome ELSE 'superseded' END, c.error, c.traceback
    FROM cur c
    WHERE NOT c.restop
      AND (c.owned OR EXISTS (SELECT 1 FROM taskengine_job x WHERE x.id = c.id))
),
unlocked AS (
    SELECT pg_advisory_unlock(%(ns)s, (u.id)::bit(32)::int4)
    FROM unnest(%(unlock)b::bigint[]) AS u(id)
),
followed AS (
    -- Jobs finished by this write that others wait for (.using(after=...)): one probe of an
    -- index that is empty unless jobs have dependencies.
    SELECT c.id FROM cur c
    WHERE c.applies AND c.terminal
      AND EXISTS (SELECT 1 FROM taskengine_dependency e WHERE e.after_id = c.id)
),
told AS (
    -- Jobs a job.wait() watches (notify_finish), finished by this write: their ids, comma
    -- separated, 300 to a notification (well under its 8,000 bytes), sent at commit.
    SELECT pg_notify(%(finished_channel)s, string_agg(f.id::text, ','))
    FROM (SELECT c.id, (row_number() OVER (ORDER BY c.id) - 1) / 300 AS part
          FROM cur c WHERE c.applies AND c.terminal AND c.notify_finish) AS f
    GROUP BY f.part
),
woke AS (
    -- Jobs this write sent back to their queue due now (a retry without backoff, a snooze of
    -- none, a stop that requeues): idle workers of the queue are woken at commit, as by an
    -- enqueue; without it they would find them only at their next poll.
    SELECT pg_notify(%(channel)s, CASE WHEN q.lane THEN 'flow:' || q.queue ELSE q.queue END)
    FROM (SELECT DISTINCT c.queue, c.lane FROM cur c
          WHERE c.applies AND c.status = 'queued' AND c.waiting_for IS NULL
            AND COALESCE(c.due_in, 0) <= 0) AS q
)
SELECT ARRAY(SELECT id FROM upd), (SELECT count(*) FROM unlocked),
    ARRAY(SELECT id FROM cur WHERE restop ORDER BY id),
    ARRAY(SELECT stop_now FROM cur WHERE restop ORDER BY id),
    (SELECT count(*) FROM told) + (SELECT count(*) FROM woke),
    -- The jobs that wait for those it finished: once it has committed, the caller decides
    -- for those with none left unfinished (waiting_jobs).
    ARRAY(SELECT DISTINCT e.job_id FROM taskengine_dependency e
          WHERE e.after_id IN (SELECT id FROM followed))

-- name: waiting_jobs
-- Of the jobs that wait for jobs a committed write finished (`ids`): those still waiting with
-- none left unfinished, for the decision (django_taskengine/core/dependencies.py;
-- store/postgres_dependencies.py). Each with its status and queue, the batch whose callback it
-- is (a step named in `callbacks` of a workflow of kind batch), and what it waits for: the
-- jobs, their status ('' if gone), the policy of each, the run_after it was enqueued with.
-- Nothing marks a dependency done: a job is finished when its status says so, and the write
-- that commits a fan-in's last dependency reads, after its commit, every other one finished.
-- Not locked: two workers may decide for one job (both saw it ready), and decide_waiting_jobs
-- writes only the first decision.
SELECT j.id, j.status, j.queue, w.id,
    array_agg(x.after_id ORDER BY x.after_id),
    array_agg(COALESCE(d.status, '') ORDER BY x.after_id),
    array_agg(x.policy ORDER BY x.after_id),
    max(x.run_after)
-- One join and one grouping, not a subquery per job: a fan-out decides thousands at once.
FROM taskengine_job j
JOIN taskengine_dependency x ON x.job_id = j.id
LEFT JOIN taskengine_job d ON d.id = x.after_id
LEFT JOIN taskengine_workflow w
    ON w.id = j.workflow_id AND w.kind = 'batch' AND j.step = ANY(%(callbacks)s::text[])
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.blocked
  -- None left unfinished, looked for newest first: a backward scan of the job's rows in the
  -- unique index, each dependency probed by its key (a subquery: no join reads the statuses
  -- of rows it will not need). A fan-in's dependencies finish about in the order they were
  -- added, so while one is left this stops at the first row.
  AND (SELECT o.after_id FROM taskengine_dependency o
       WHERE o.job_id = j.id
         AND (SELECT a.status FROM taskengine_job a WHERE a.id = o.after_id)
             = ANY(%(active)s::text[])
       ORDER BY o.after_id DESC LIMIT 1) IS NULL
GROUP BY j.id, j.status, j.queue, w.id
ORDER BY j.id

-- name: decide_waiting_jobs
-- Write the decisions for jobs waiting_jobs returned, one element per job: 'run' (due at
-- `dues`, or now when NULL; `batches`: the batch= of a batch's callback, JSON), 'cancel' (ended
-- cancelled with `errors`), or 'end' (an operator ended it: it only stops waiting). Only a job
-- still waiting is written: of two decisions for one job, the first stands. Wakes the idle
-- workers of the queues of the jobs due now, at commit; returns the jobs that wait for the
-- jobs it cancelled (decided next).
WITH decided AS (
    UPDATE taskengine_job j SET
        blocked = false,
        run_after = CASE WHEN d.action = 'run' THEN GREATEST(now(), COALESCE(d.due, now()))
                         ELSE j.run_after END,
        status = CASE WHEN d.action = 'cancel' THEN 'cancelled' ELSE j.status END,
        finished_at = CASE WHEN d.action = 'cancel' THEN now() ELSE j.finished_at END,
        error = CASE WHEN d.action = 'cancel' THEN d.error ELSE j.error END,
        stop_requested = CASE WHEN d.action = 'cancel' THEN '' ELSE j.stop_requested END,
        worker_id = CASE WHEN d.action = 'cancel' THEN NULL ELSE j.worker_id END,
        token = CASE WHEN d.action = 'cancel' THEN NULL ELSE j.token END,
        lease_expires_at = CASE WHEN d.action = 'cancel' THEN NULL ELSE j.lease_expires_at END,
        kwargs = CASE WHEN d.batch IS NULL THEN j.kwargs
                      ELSE j.kwargs || jsonb_build_object('batch', d.batch::jsonb) END
    FROM unnest(%(ids)s::bigint[], %(actions)s::text[], %(dues)s::timestamptz[],
                %(errors)s::text[], %(batches)s::text[]) AS d(id, action, due, error, batch)
    WHERE j.id = d.id AND j.blocked
    RETURNING j.id, j.status, j.queue, j.run_after <= now() AS due, j.flow_key
),
woken AS (
    SELECT pg_notify(%(channel)s, CASE WHEN q.lane THEN 'flow:' || q.queue ELSE q.queue END)
    FROM (SELECT DISTINCT queue, flow_key IS NOT NULL AS lane FROM decided
          WHERE status = 'queued' AND due) AS q
)
SELECT ARRAY(SELECT DISTINCT e.job_id FROM taskengine_dependency e
             WHERE e.after_id IN (SELECT id FROM decided WHERE status = 'cancelled')),
    (SELECT count(*) FROM woken)

-- name: finish_atomic
-- An atomic task's success, in the task's own transaction (Django's connection, so text
-- parameters), fenced like write_outcomes but not on the stop request: the task returned,
-- and what it returned stands whatever was asked meanwhile (a finished job has nothing left to
-- stop). Returns 1 if it applied, 0 if fenced out.
WITH upd AS (
    UPDATE taskengine_job SET status = %(status)s, result = %(result)s::jsonb, error = %(error)s,
        traceback = '', finished_at = %(job_finished)s, worker_id = NULL, token = NULL,
        lease_expires_at = NULL, stop_requested = ''
    WHERE id = %(id)s AND token = %(token)s AND status = 'running'
    RETURNING id, notify_finish
),
att AS (
    INSERT INTO taskengine_attempt (job_id, number, worker_id, started_at, finished_at, outcome,
                                    error, traceback)
    SELECT id, %(number)s, %(worker)s, %(started)s, %(finished)s, %(outcome)s, %(error)s, ''
    FROM upd
),
told AS (
    -- As in write_outcomes: a job.wait() watching it is told (at the commit of the task's
    -- transaction).
    SELECT pg_notify(%(finished_channel)s, upd.id::text) FROM upd WHERE upd.notify_finish
)
SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM told),
    -- Whether other jobs wait for this one (as in write_outcomes).
    EXISTS (SELECT 1 FROM upd JOIN taskengine_dependency e ON e.after_id = upd.id)

-- name: select_orphans
-- Jobs whose worker died, running or reserved (queued with a token): their advisory lock is
-- free and their worker missed its heartbeat for the grace (or stopped), with their status and
-- pending stop request (the rescue carries it out; a reserved job never started and goes back
-- untouched). Looked up by worker, the silent ones first: the running and reserved indexes
-- keep an entry per job since the last vacuum (while a transaction holds the xmin horizon, all
-- of them), which a scan of every running job would step over once a second. With
-- `everyone`, also the jobs of workers that have no row (deleted by hand): that is such a
-- scan, made now and then. Locked FOR UPDATE for the rest of the rescuer's transaction; only
-- one rescuer at a time (the transaction-level guard lock), and none while another holds it.
WITH guard AS (
    SELECT pg_try_advisory_xact_lock(%(rescuer_key)s) AS ok
),
held AS (
    SELECT l.objid::bigint AS k FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.classid = %(ns)s::oid AND l.objsubid = 2 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
),
silent AS (
    SELECT w.id FROM taskengine_worker w
    WHERE (SELECT ok FROM guard)
      AND (w.stopped_at IS NOT NULL
           OR w.last_heartbeat_at < now() - %(grace)s * interval '1 second')
    UNION
    SELECT j.worker_id FROM taskengine_job j
    LEFT JOIN taskengine_worker w ON w.id = j.worker_id
    WHERE %(everyone)s AND (SELECT ok FROM guard) AND w.id IS NULL
      AND (j.status = 'running' OR (j.status = 'queued' AND j.token IS NOT NULL))
)
SELECT j.id, j.task_name, j.queue, j.attempts, j.max_attempts, j.retry_backoff, j.timeout,
    j.token, j.started_at, j.worker_id, now(), j.stop_requested, j.status
FROM silent s
CROSS JOIN LATERAL (
    SELECT * FROM taskengine_job j
    WHERE j.worker_id = s.id
      AND (j.status = 'running' OR (j.status = 'queued' AND j.token IS NOT NULL))
      AND (j.id & 4294967295) NOT IN (SELECT k FROM held)
    OFFSET 0
    FOR UPDATE SKIP LOCKED
) j

-- name: notify_queues
-- Wake idle workers of these queues (at commit): after a rescue, and after a resume (of a
-- job, a queue, a task type or the engine) or a change of limits made jobs due, on the channel
-- enqueue uses. As "flow:" and the queue: jobs under flow control may be among them, so
-- workers run a flow claim too.
SELECT count(*) FROM (
    SELECT pg_notify(%(channel)s, 'flow:' || q) FROM unnest(%(queues)s::text[]) AS q) AS n

-- name: register_worker
-- (On a reconnect, an operator's request to the process stays: it is still to be carried out.)
INSERT INTO taskengine_worker (id, hostname, pid, queues, concurrency, started_at,
                               last_heartbeat_at, stopped_at, jobs_succeeded, jobs_failed,
                               control_requested, control_requested_by)
VALUES (%s, %s, %s, %s::jsonb, %s, now(), now(), NULL, 0, 0, '', '')
ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now(), stopped_at = NULL

-- name: heartbeat
-- The worker's liveness and counters; returns whether its row exists, the stop requests
-- operators made for the jobs it runs (`ids`: those it knows of), and an operator's request to
-- the process itself ("drain", "stop", "kill" or ""). Each job is found by its key:
-- the running-jobs index keeps an entry per job run since the last vacuum (while a
-- transaction holds the xmin horizon, all of them), which a search by worker would step over.
WITH w AS (
    UPDATE taskengine_worker SET last_heartbeat_at = now(), jobs_succeeded = %(ok)s,
        jobs_failed = %(failed)s
    WHERE id = %(worker)s RETURNING id, control_requested
),
stops AS MATERIALIZED (
    -- The probe's only condition is the key (OFFSET 0 keeps the others outside it): with the
    -- worker and the status in it, a plan made on an empty table took the running-jobs index
    -- (425 ms a heartbeat, 2.6 s at worst, a minute into a held horizon).
    SELECT j.id, j.stop_requested
    FROM unnest(%(ids)s::bigint[]) AS r(id)
    CROSS JOIN LATERAL (
        SELECT x.id, x.worker_id, x.status, x.stop_requested FROM taskengine_job x
        WHERE x.id = r.id
        OFFSET 0
    ) j
    WHERE j.worker_id = %(worker)s AND j.status = 'running' AND j.stop_requested <> ''
)
SELECT (SELECT count(*) FROM w),
    ARRAY(SELECT s.id FROM stops s ORDER BY s.id),
    ARRAY(SELECT s.stop_requested FROM stops s ORDER BY s.id),
    (SELECT w.control_requested FROM w)

-- name: save_state
-- Checkpoints and progress of running attempts, each fenced by its token; returns the pending
-- stop request of every job written.
UPDATE taskengine_job j SET
    checkpoint = CASE WHEN w.has_checkpoint THEN w.checkpoint::jsonb ELSE j.checkpoint END,
    progress_current = COALESCE(w.current, j.progress_current),
    progress_total = COALESCE(w.total, j.progress_total)
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[], %(has)s::bool[],
            %(checkpoints)s::text[], %(currents)s::bigint[], %(totals)s::bigint[])
    AS w(id, token, has_checkpoint, checkpoint, current, total)
WHERE j.id = w.id AND j.token = w.token AND j.status = 'running'
RETURNING j.id, j.stop_requested

-- name: release_unknown_claims
-- After a reconnect: jobs running for this worker or reserved by it that it does not own (a
-- claim whose reply was lost with the connection) go back to the queue as never claimed. The
-- worker passes every job it owns, finished ones whose outcome it has yet to write included:
-- those must not run again.
UPDATE taskengine_job
SET status = 'queued', attempts = attempts - CASE WHEN status = 'running' THEN 1 ELSE 0 END,
    worker_id = NULL, token = NULL, started_at = NULL
WHERE worker_id = %s AND (status = 'running' OR (status = 'queued' AND token IS NOT NULL))
  AND NOT (id = ANY(%s))

-- name: relock_jobs
-- After a reconnect: take again the advisory locks of the jobs this worker still owns (running,
-- reserved, or finished with the outcome not yet written); a job no longer running or reserved
-- under its token is not this worker's any more.
SELECT j.id, pg_try_advisory_lock(%(ns)s, (j.id)::bit(32)::int4)
FROM taskengine_job j
JOIN unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS r(id, token)
  ON j.id = r.id AND j.token = r.token
WHERE j.status IN ('running', 'queued')

-- name: unregister_worker
UPDATE taskengine_worker SET stopped_at = now(), last_heartbeat_at = now() WHERE id = %s

-- name: event_lock
-- Events (django_taskengine/events.py): a lock per event name (a hash of it, in a key space of
-- the engine's own, `namespace << 32 | 2^31 | hash`, apart from its numbered locks), held to
-- the end of the transaction by send_event and by the check after a job parked on the name
-- (wake_if_sent): whichever comes second sees what the first wrote, so a job that parks as
-- its event is sent is not left waiting. Taken in a statement of its own, before the reads.
-- A throttled enqueue (core/dedup.py) takes the lock of "dedup:" and its key the same way, so
-- that the enqueues of one key in one window see one another: a name that hashes alike only
-- makes the two wait for each other.
SELECT pg_advisory_xact_lock(l.key)
FROM (SELECT DISTINCT (%(ns)s::bigint << 32) | 2147483648::bigint
                      | (hashtext(n) & 2147483647)::bigint AS key
      FROM unnest(%(names)s::text[]) AS n
      ORDER BY 1) AS l

-- name: send_event
-- Send an event (after event_lock): kept, stamped with the database's clock, and every job
-- parked waiting for it that was enqueued before it made due now. Returns the event's id and
-- the queues of the jobs made due (their workers are woken).
WITH sent AS (
    INSERT INTO taskengine_event (name, payload, sent_at)
    VALUES (%(name)s, %(payload)s::jsonb, clock_timestamp())
    RETURNING id, sent_at
),
woken AS (
    UPDATE taskengine_job j SET run_after = s.sent_at
    FROM sent s
    WHERE j.waiting_for = %(name)s AND j.status = 'queued' AND j.run_after > s.sent_at
      AND j.created_at <= s.sent_at
    RETURNING j.queue
)
SELECT (SELECT id FROM sent), ARRAY(SELECT DISTINCT queue FROM woken)

-- name: wake_if_sent
-- After jobs parked waiting for events (write_outcomes with `waiting_for`), and after
-- event_lock for their names: any of them whose event was sent meanwhile (after it was
-- enqueued, before its wait ends, its run_after) is made due now. Returns their queues.
UPDATE taskengine_job j SET run_after = now()
WHERE j.id = ANY(%(ids)s::bigint[]) AND j.status = 'queued' AND j.waiting_for IS NOT NULL
  AND j.run_after > now()
  AND EXISTS (SELECT 1 FROM taskengine_event e
              WHERE e.name = j.waiting_for AND e.sent_at >= j.created_at
                AND e.sent_at <= j.run_after)
RETURNING j.queue

-- name: watch_finish
-- job.wait(): have the worker that finishes the job say so (write_outcomes' `told`); no row if
-- it is finished already (or gone). The mark locks the job's row until it commits: a claim
-- that reaches the row meanwhile passes it by (SKIP LOCKED), and its worker would leave the
-- job to its next poll. So a job claimable now wakes its queue's workers at the mark's
-- commit, as its enqueue did (a job.wait() right after the enqueue meets the claims it woke).
WITH marked AS (
    UPDATE taskengine_job SET notify_finish = true
    WHERE id = %(id)s AND status NOT IN ('succeeded', 'failed', 'cancelled')
    RETURNING id, queue, flow_key,
        status = 'queued' AND token IS NULL AND run_after <= now() AS claimable
)
SELECT m.id,
    (SELECT count(*) FROM (
        SELECT pg_notify(%(channel)s, CASE WHEN m.flow_key IS NULL THEN m.queue
                                           ELSE 'flow:' || m.queue END)
        WHERE m.claimable) AS n)
FROM marked m

-- name: listen
-- {channel} is the notification channel, quoted as an identifier by the caller.
LISTEN {channel}

-- name: plan_settings
-- How the engine's own sessions plan (a worker's, the relay's): their statements once (a
-- custom plan per call of a claim costs as much as running it, and the generic plan is the
-- index plan), and none with JIT compilation: the estimates of CTEs and lateral reads (1,000
-- rows for a function call) put the cost of the flow claim and of the relay's round over
-- jit_above_cost once the job table has been analysed with a backlog, and compiling took 100
-- ms of a flow claim that runs in 5, 14-40 ms of a relay round that runs in 2.
SELECT set_config('plan_cache_mode', 'force_generic_plan', false), set_config('jit', 'off', false)

-- name: ping
SELECT 1

-- name: estimated_row_count
-- The planner's estimate of a table's rows (-1 or 0 when never analysed).
SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)
