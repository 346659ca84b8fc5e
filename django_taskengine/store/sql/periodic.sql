-- Periodic schedules (django_taskengine.periodic.scheduler).

-- name: insert_periodic_tick
-- Claim one tick of one schedule: the unique (schedule_id, tick) lets exactly one worker insert
-- it, and RETURNING says whether it was this one (no row: another worker enqueued the tick).
-- Parameters: schedule id, tick, enqueued at. The job id is set once the job is enqueued.
INSERT INTO taskengine_periodic_tick (schedule_id, tick, job_id, enqueued_at)
VALUES (%s, %s, NULL, %s)
ON CONFLICT (schedule_id, tick) DO NOTHING
RETURNING id
