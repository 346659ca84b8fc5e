-- The console's per-minute statistics (django_taskengine/worker/stats.py): each worker process
-- adds what its attempts did to one row per queue and minute. The same text runs on PostgreSQL
-- and on SQLite (3.24 and later: INSERT … ON CONFLICT DO UPDATE, `excluded`). Other databases add
-- through the ORM (worker/stats.py).

-- name: add_minute_stats
-- One row of counts added to the row (queue, minute), created if missing. Sent once per row
-- (executemany, pipelined by psycopg), the rows sorted by (queue, minute) in every process, so
-- two processes flushing at once take the rows' locks in the same order and never deadlock.
-- Parameters, in order: queue, minute, succeeded, failed, retried, running_seconds, then the
-- 28 buckets of the wait histogram (django_taskengine/core/wait_histogram.py).
INSERT INTO taskengine_minute_stats (
    queue, minute, succeeded, failed, retried, running_seconds, wait_0, wait_1, wait_2, wait_3,
    wait_4, wait_5, wait_6, wait_7, wait_8, wait_9, wait_10, wait_11, wait_12, wait_13, wait_14,
    wait_15, wait_16, wait_17, wait_18, wait_19, wait_20, wait_21, wait_22, wait_23, wait_24,
    wait_25, wait_26, wait_27
)
VALUES (
    %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
    %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s
)
ON CONFLICT (queue, minute) DO UPDATE SET
    succeeded = taskengine_minute_stats.succeeded + excluded.succeeded,
    failed = taskengine_minute_stats.failed + excluded.failed,
    retried = taskengine_minute_stats.retried + excluded.retried,
    running_seconds = taskengine_minute_stats.running_seconds + excluded.running_seconds,
    wait_0 = taskengine_minute_stats.wait_0 + excluded.wait_0,
    wait_1 = taskengine_minute_stats.wait_1 + excluded.wait_1,
    wait_2 = taskengine_minute_stats.wait_2 + excluded.wait_2,
    wait_3 = taskengine_minute_stats.wait_3 + excluded.wait_3,
    wait_4 = taskengine_minute_stats.wait_4 + excluded.wait_4,
    wait_5 = taskengine_minute_stats.wait_5 + excluded.wait_5,
    wait_6 = taskengine_minute_stats.wait_6 + excluded.wait_6,
    wait_7 = taskengine_minute_stats.wait_7 + excluded.wait_7,
    wait_8 = taskengine_minute_stats.wait_8 + excluded.wait_8,
    wait_9 = taskengine_minute_stats.wait_9 + excluded.wait_9,
    wait_10 = taskengine_minute_stats.wait_10 + excluded.wait_10,
    wait_11 = taskengine_minute_stats.wait_11 + excluded.wait_11,
    wait_12 = taskengine_minute_stats.wait_12 + excluded.wait_12,
    wait_13 = taskengine_minute_stats.wait_13 + excluded.wait_13,
    wait_14 = taskengine_minute_stats.wait_14 + excluded.wait_14,
    wait_15 = taskengine_minute_stats.wait_15 + excluded.wait_15,
    wait_16 = taskengine_minute_stats.wait_16 + excluded.wait_16,
    wait_17 = taskengine_minute_stats.wait_17 + excluded.wait_17,
    wait_18 = taskengine_minute_stats.wait_18 + excluded.wait_18,
    wait_19 = taskengine_minute_stats.wait_19 + excluded.wait_19,
    wait_20 = taskengine_minute_stats.wait_20 + excluded.wait_20,
    wait_21 = taskengine_minute_stats.wait_21 + excluded.wait_21,
    wait_22 = taskengine_minute_stats.wait_22 + excluded.wait_22,
    wait_23 = taskengine_minute_stats.wait_23 + excluded.wait_23,
    wait_24 = taskengine_minute_stats.wait_24 + excluded.wait_24,
    wait_25 = taskengine_minute_stats.wait_25 + excluded.wait_25,
    wait_26 = taskengine_minute_stats.wait_26 + excluded.wait_26,
    wait_27 = taskengine_minute_stats.wait_27 + excluded.wait_27
