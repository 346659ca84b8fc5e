"""How workers learn which jobs to claim: the dispatch backend (``TASKENGINE["DISPATCH"]``).

``postgres`` (the default): workers find due jobs by scanning the job table's claim index
(``SKIP LOCKED``) when a ``NOTIFY`` or their poll interval wakes them.

``redis-streams``: the job row stays the truth and the outbox (enqueue is one INSERT in the
caller's transaction); a relay (:mod:`.relay`, one per fleet, elected by an advisory lock)
publishes the ids of due, claimable jobs to one Redis stream per queue, in claim order, a bounded
window at a time; workers read them through a consumer group (:mod:`.streams`) and claim those
ids in PostgreSQL under the same conditions, fencing token and advisory lock as a scan. A
delivery confers nothing: a job no longer claimable is skipped. Workers fall back to scans
whenever Redis fails, or nothing was delivered for a poll interval; the relay republishes what a
lost entry left behind. The failure modes and what handles each: README, "Redis Streams".
"""
