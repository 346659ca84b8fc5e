-- Redis Streams dispatch (django_taskengine/dispatch): the relay's statements. Workers claim
-- the ids it publishes with claim_ids (postgres.sql).

-- name: relay_lock
-- The relay's leadership: one engine advisory key, held by the relay's session while it lives.
SELECT pg_try_advisory_lock(%(key)s::bigint)

-- name: relay_candidates
-- Per queue, the first `window` jobs a worker of that queue could claim now (claim_jobs'
-- conditions), in claim order, with its run_after (epoch seconds) and how long it has been due
-- (seconds): what the relay keeps published. Each queue's are read from the claim index on their
-- own, so that a queue no worker serves does not hold back another's.
WITH
-- include: claim_pauses
named AS (SELECT q.name FROM taskengine_queue q)
SELECT n.name, c.id, c.priority, c.run_at, c.due_for
FROM named n
CROSS JOIN LATERAL (
    SELECT j.id, j.priority, extract(epoch FROM j.run_after)::float8 AS run_at,
        extract(epoch FROM now() - j.run_after)::float8 AS due_for
    FROM taskengine_job j
    WHERE j.queue = n.name
      -- include: claimable_now
    ORDER BY j.priority DESC, j.run_after, j.id
    LIMIT %(window)s
) c
ORDER BY n.name, c.priority DESC, c.run_at, c.id
