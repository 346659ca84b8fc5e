"""Fault injection with real processes: kill storms, cut connections, a restarted server.

Invariants proven here (DESIGN.md): nothing is lost; at-least-once; exactly-once database
effects for atomic tasks; no job runs in two live workers at once.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from django.db import connection

from devsupport.pgcluster import PrivateCluster
from django_taskengine.models import Attempt, Job, JobStatus
from tests.helpers import REPO_ROOT, child_pids, manage, wait_for, worker_env
from tests.testapp.models import LedgerEntry
from tests.testapp.tasks import record, record_atomic, sleep_and_record

pytestmark = pytest.mark.django_db(transaction=True)

KILLS = 10


def _all_finished(deadline_s: float, log) -> None:
    deadline = time.monotonic() + deadline_s
    while Job.objects.exclude(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED]).exists():
        assert time.monotonic() < deadline, "jobs still unfinished; log tail:\n" + log()[-4000:]
        time.sleep(0.1)


def _kill_storm(workers) -> int:
    """SIGKILL a random worker process every ~0.5 s, KILLS times; return how many landed."""
    landed = 0
    rng = random.Random(7)
    for _ in range(KILLS):
        time.sleep(0.5)
        pids = child_pids(workers.pid)
        if not pids:
            continue
        try:
            os.kill(rng.choice(pids), signal.SIGKILL)
            landed += 1
        except ProcessLookupError:
            pass
    return landed


def _jobs_through_a_kill_storm(task, start_workers):
    """500 short jobs of ``task`` on 3 × 2 workers, killed repeatedly until all finished."""
    # Each kill orphans a job's attempt at most once: with more attempts than kills, a job that
    # is unlucky enough to be running at several kills is retried, not failed for its budget
    # (rescued jobs keep their place, so they are the next ones claimed, often by a process
    # that has just started and is as likely as any to be killed next).
    jobs = task.using(max_attempts=KILLS + 1).bulk_enqueue([((), {"sleep": 0.05})] * 500)
    workers = start_workers("--processes", "3", "--concurrency", "2")
    wait_for(lambda: LedgerEntry.objects.exists(), timeout=30, message="work under way")
    landed = _kill_storm(workers)
    _all_finished(180, workers.log)
    assert landed >= 8
    failed = [
        (
            job.pk,
            job.attempts,
            job.error,
            list(job.attempt_set.values_list("outcome", "worker_id", "started_at", "finished_at")),
        )
        for job in Job.objects.filter(status=JobStatus.FAILED)
    ]
    assert not failed, f"jobs failed: {failed}"
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 500
    return jobs, landed


def test_kill_storm_atomic_task_has_exactly_once_database_effects(start_workers):
    jobs, landed = _jobs_through_a_kill_storm(record_atomic, start_workers)
    rows = Counter(LedgerEntry.objects.values_list("job_id", flat=True))
    assert set(rows) == {job.id for job in jobs}
    assert set(rows.values()) == {1}, "an atomic task's effects were committed twice"
    orphaned = Attempt.objects.filter(outcome="orphaned").count()
    print(
        f"kill storm (atomic): {landed} kills, {orphaned} attempts rescued, 500 rows for 500 jobs"
    )


def test_kill_storm_plain_task_loses_nothing_and_repeats_only_interrupted_jobs(start_workers):
    jobs, landed = _jobs_through_a_kill_storm(record, start_workers)
    rows = Counter(LedgerEntry.objects.values_list("job_id", flat=True))
    assert set(rows) == {job.id for job in jobs}, "a job never ran"
    repeated = {job_id for job_id, n in rows.items() if n > 1}
    interrupted = set(Attempt.objects.filter(outcome="orphaned").values_list("job_id", flat=True))
    assert interrupted, "no kill interrupted a job: the storm tested nothing"
    assert repeated <= interrupted, "a job ran twice without its worker dying"
    print(
        f"kill storm (plain): {landed} kills, {len(interrupted)} jobs rescued, "
        f"{len(repeated)} ran twice"
    )


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_terminated_database_connections_lose_nothing(start_workers):
    jobs = record_atomic.bulk_enqueue([((), {"sleep": 0.02})] * 300)
    workers = start_workers("--processes", "2", "--concurrency", "2")
    for _ in range(2):
        # Each cut after 20 more jobs ran: the second one hits workers that recovered.
        done = LedgerEntry.objects.count()
        wait_for(
            lambda done=done: LedgerEntry.objects.count() > done + 20,
            timeout=60,
            message="work under way",
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 2
    _all_finished(120, workers.log)
    assert Job.objects.filter(status=JobStatus.SUCCEEDED).count() == 300
    rows = Counter(LedgerEntry.objects.values_list("job_id", flat=True))
    assert set(rows) == {job.id for job in jobs} and set(rows.values()) == {1}


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.skipif(
    PrivateCluster.unavailable_reason() is not None, reason=str(PrivateCluster.unavailable_reason())
)
def test_a_restarted_database_server_loses_nothing(tmp_path):
    cluster = PrivateCluster()
    try:
        cluster.init()
        cluster.start()
        env = worker_env(DATABASE_URL=cluster.url, TASKENGINE_TEST_DB_NAME="postgres")

        manage(env, "migrate", "-v0", check=True)
        manage(
            env,
            "shell",
            "-c",
            "from tests.testapp.tasks import record_atomic; "
            "record_atomic.bulk_enqueue([((), {'sleep': 0.02})] * 300)",
            check=True,
        )
        log_path = tmp_path / "workers.log"
        with open(log_path, "wb") as log:
            workers = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "django",
                    "run_workers",
                    "--processes",
                    "2",
                    "--concurrency",
                    "2",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                db = cluster.connect()
                wait_for(
                    lambda: (
                        db.execute("SELECT count(*) FROM testapp_ledgerentry").fetchone()[0] > 30
                    ),
                    timeout=60,
                    message="work under way",
                )
                db.close()
                started = time.monotonic()
                cluster.restart()
                db = cluster.connect()

                def unfinished() -> int:
                    return db.execute(
                        "SELECT count(*) FROM taskengine_job"
                        " WHERE status NOT IN ('succeeded', 'failed')"
                    ).fetchone()[0]

                wait_for(lambda: unfinished() == 0, timeout=120, message="all jobs finished")
                recovered = time.monotonic() - started
                statuses = dict(
                    db.execute(
                        "SELECT status, count(*) FROM taskengine_job GROUP BY status"
                    ).fetchall()
                )
                per_job = db.execute(
                    "SELECT count(*), count(DISTINCT job_id) FROM testapp_ledgerentry"
                ).fetchone()
                errors = [
                    row[0]
                    for row in db.execute(
                        "SELECT DISTINCT error FROM taskengine_job WHERE status = 'failed' LIMIT 5"
                    ).fetchall()
                ]
                db.close()
            finally:
                os.killpg(workers.pid, signal.SIGKILL)
                workers.wait(timeout=10)
        assert statuses == {"succeeded": 300}, (statuses, errors, log_path.read_text()[-3000:])
        assert per_job == (300, 300), "an atomic task's effects were committed twice or lost"
        assert "reconnecting" in log_path.read_text()
        print(f"server restart: all 300 jobs done {recovered:.1f} s after the restart began")
    finally:
        cluster.stop()


def test_a_killed_workers_job_runs_again_before_the_backlog_enqueued_after_it(start_workers):
    (first,) = sleep_and_record.bulk_enqueue([((), {"seconds": 60.0, "label": "first"})])
    workers = start_workers("--processes", "2", "--concurrency", "1")
    run = wait_for(
        lambda: LedgerEntry.objects.filter(job_id=first.id).first(),
        timeout=30,
        message="the first job under way",
    )
    backlog = record.bulk_enqueue([((), {"label": "backlog", "sleep": 0.3})] * 60)
    wait_for(
        lambda: LedgerEntry.objects.filter(label="backlog").exists(),
        timeout=30,
        message="the backlog under way",
    )
    os.kill(run.pid, signal.SIGKILL)
    again = wait_for(
        lambda: LedgerEntry.objects.filter(job_id=first.id, attempt=2).first(),
        timeout=60,
        message="the killed worker's job to run again; log:\n" + workers.log()[-3000:],
    )
    started_before = LedgerEntry.objects.filter(label="backlog", id__lt=again.id).count()
    # Rescued in seconds, it runs next: most of the backlog (18 s of work) is still waiting.
    assert started_before <= len(backlog) // 2, (started_before, len(backlog))
    print(f"rescued job ran again after {started_before} of {len(backlog)} later jobs")
