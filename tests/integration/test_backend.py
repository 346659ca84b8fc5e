"""TaskEngineBackend against Django's documented Tasks API: results and statuses through real
workers, errors, TaskResultDoesNotExist, priority and run_after rules, JSON arguments, signals,
async tasks, contexts, the engine's options and system checks."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import signal
from importlib.util import find_spec

import pytest

if not (find_spec("django.tasks") or find_spec("django_tasks")):
    _MISSING = (
        "Django's Tasks framework is not installed: Django < 6.0 without the django-tasks "
        "backport (pip install 'django-tasks>=0.12')"
    )
    if os.environ.get("CI"):  # CI installs it (the [test] extra): its absence is a failure there
        pytest.fail(_MISSING + "; CI must install it", pytrace=False)
    pytest.skip(_MISSING, allow_module_level=True)

from asgiref.sync import async_to_sync
from django.db import connections, transaction
from django.utils import timezone

from django_taskengine import operations
from django_taskengine import task as engine_task
from django_taskengine.backends import (
    JobCancelled,
    TaskEngineBackend,
    TaskEngineContext,
    TaskEngineTask,
    WorkerDied,
    engine_options,
)
from django_taskengine.backends.adapter import DjangoTaskAdapter
from django_taskengine.backends.compat import (
    SOURCE,
    InvalidTask,
    TaskContext,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task,
    task_backends,
    task_enqueued,
)
from django_taskengine.backends.results import exception_class_path
from django_taskengine.models import Attempt, Job, JobStatus
from django_taskengine.registry import get_task
from django_taskengine.registry import tasks as registry
from django_taskengine.serialization import NotJSONError
from tests.helpers import wait_for
from tests.testapp import django_api_tasks as tasks
from tests.testapp.models import LedgerEntry

pytestmark = pytest.mark.django_db(transaction=True)

if SOURCE == "django.tasks":
    from django.tasks.exceptions import TaskResultMismatch
else:
    from django_tasks.exceptions import TaskResultMismatch


def _job(result) -> Job:
    return Job.objects.get(pk=int(result.id))


def _finished(result, timeout: float = 30.0):
    """Refresh ``result`` until a worker has finished it."""

    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_for(done, timeout=timeout, message=f"result {result.id} to finish")
    return result


# -- the backend and its tasks ----------------------------------------------------------------


def test_backend_supports_defer_priority_results_and_async_tasks():
    backend = task_backends["default"]
    assert isinstance(backend, TaskEngineBackend)
    assert backend.supports_defer
    assert backend.supports_priority
    assert backend.supports_get_result
    assert backend.supports_async_task
    assert isinstance(tasks.add, TaskEngineTask)


def test_defining_a_task_registers_it_for_workers_under_its_module_path():
    registered = get_task("tests.testapp.django_api_tasks.add")
    assert isinstance(registered, DjangoTaskAdapter)
    assert registered.django_task is tasks.add
    # A using() copy is validated again, and keeps the entry of the definition.
    tasks.add.using(priority=5)
    assert get_task("tests.testapp.django_api_tasks.add") is registered


# -- enqueue --------------------------------------------------------------------------------


def test_enqueue_adds_an_ordinary_job_and_returns_a_ready_result():
    result = tasks.add.enqueue(2, 3)
    job = _job(result)
    assert (job.task_name, job.queue, job.priority, job.status) == (
        "tests.testapp.django_api_tasks.add",
        "default",
        0,
        JobStatus.QUEUED,
    )
    assert (job.args, job.kwargs) == ([2, 3], {})
    assert result.id == str(job.id)
    assert result.status == TaskResultStatus.READY
    assert result.task is tasks.add
    assert result.backend == "default"
    assert result.enqueued_at == job.created_at
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (None, None, None)
    assert (result.args, result.kwargs) == ([2, 3], {})
    assert (result.errors, result.worker_ids, result.attempts) == ([], [], 0)
    assert not result.is_finished
    with pytest.raises(ValueError, match="not finished yet"):
        _ = result.return_value


def test_priority_and_queue_name_become_the_jobs_priority_and_queue():
    result = tasks.send_mail.enqueue("a@example.com", "hi")
    assert (_job(result).priority, _job(result).queue) == (10, "emails")
    low = tasks.send_mail.using(priority=-100, queue_name="default").enqueue("b@example.com", "hi")
    assert (_job(low).priority, _job(low).queue) == (-100, "default")
    assert low.task.priority == -100
    assert tasks.send_mail.get_result(low.id).task.priority == -100


def test_priority_must_be_a_whole_number_from_minus_100_to_100():
    for priority in (101, -101, 1.5):
        with pytest.raises(InvalidTask, match="whole number between -100 and 100"):
            tasks.add.using(priority=priority)
    with pytest.raises(InvalidTask):
        task(priority=200)(_plain_function)
    assert tasks.add.using(priority=100).enqueue(1, 1).task.priority == 100
    assert Job.objects.count() == 1


def test_run_after_defers_the_job_and_must_be_aware():
    later = timezone.now() + dt.timedelta(hours=1)
    result = tasks.add.using(run_after=later).enqueue(1, 2)
    assert _job(result).run_after == later
    assert result.task.run_after == later
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        tasks.add.using(run_after=dt.datetime(2030, 1, 1))
    with pytest.raises(TypeError):
        task(run_after=later)(_plain_function)


def test_queue_name_must_be_one_of_the_backends_queues():
    with pytest.raises(InvalidTask, match="Queue 'nowhere' is not valid for backend"):
        tasks.add.using(queue_name="nowhere")
    assert not Job.objects.exists()


def test_arguments_are_normalized_to_json_as_django_does():
    result = tasks.echo.enqueue((1, 2), b"text", {"nested": (3, [4])}, flag=True, none=None)
    expected_args = [[1, 2], "text", {"nested": [3, [4]]}]
    assert result.args == expected_args
    assert result.kwargs == {"flag": True, "none": None}
    assert (_job(result).args, _job(result).kwargs) == (expected_args, {"flag": True, "none": None})
    assert tasks.echo.get_result(result.id).args == expected_args


def test_arguments_that_are_not_json_are_refused_before_anything_is_written():
    # Django's own normalization refuses these with TypeError ...
    for value in (object(), dt.date(2030, 1, 1), {1, 2}):
        with pytest.raises(TypeError, match="Unsupported type"):
            tasks.echo.enqueue(value)
    # ... and the engine also refuses what a JSON round trip would change or PostgreSQL cannot
    # store (a deliberate difference: the job would not get back what was enqueued).
    for value in ({1: "int key"}, float("nan"), "nul \x00"):
        with pytest.raises(NotJSONError):
            tasks.echo.enqueue(value)
    assert issubclass(NotJSONError, TypeError)
    assert not Job.objects.exists()


def test_arguments_that_do_not_fit_the_function_are_refused_at_enqueue():
    with pytest.raises(TypeError, match="missing a required argument: 'b'"):
        tasks.add.enqueue(1)
    assert not Job.objects.exists()


def test_enqueue_inside_a_transaction_exists_only_if_it_commits():
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        raise RuntimeError("roll back")
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id)


def test_enqueue_sends_task_enqueued_with_the_result():
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append((sender, task_result.id, task_result.status, task_result.enqueued_at))

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [(TaskEngineBackend, result.id, TaskResultStatus.READY, result.enqueued_at)]


def test_aenqueue_and_aget_result():
    result = async_to_sync(tasks.add.aenqueue)(4, 5)
    again = async_to_sync(tasks.add.aget_result)(result.id)
    assert (again.id, again.args, again.status) == (result.id, [4, 5], TaskResultStatus.READY)


# -- get_result -------------------------------------------------------------------------------


@pytest.mark.parametrize("result_id", ["999999", "abc", "-1", "", "1.5", " 1", str(2**63), "१"])
def test_get_result_of_an_unknown_id_raises_task_result_does_not_exist(result_id):
    tasks.add.enqueue(1, 2)  # id 1 may exist; none of these name it
    with pytest.raises(TaskResultDoesNotExist):
        task_backends["default"].get_result(result_id)


def test_get_result_of_a_job_that_is_not_a_django_task_raises_does_not_exist():
    from tests.testapp.tasks import add as native_add

    job = native_add.enqueue(1, 2)
    with pytest.raises(TaskResultDoesNotExist, match="not a django.tasks task"):
        task_backends["default"].get_result(str(job.id))


def test_get_result_of_another_tasks_result_raises_mismatch():
    result = tasks.send_mail.enqueue("a@example.com", "hi")
    assert task_backends["default"].get_result(result.id).task.func is tasks.send_mail.func
    with pytest.raises(TaskResultMismatch):
        tasks.add.get_result(result.id)


# -- the engine's options --------------------------------------------------------------------


def test_engine_options_given_to_task_reach_the_job_and_the_worker():
    flaky = _job(tasks.flaky.enqueue())
    assert (flaky.max_attempts, flaky.retry_backoff) == (3, 0.05)
    overruns = _job(tasks.overruns.enqueue())
    assert (overruns.timeout, overruns.max_attempts) == (0.5, 1)
    assert get_task(tasks.atomic_write.module_path).atomic is True
    assert _job(tasks.flaky.using(max_attempts=7).enqueue()).max_attempts == 7


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_attempts": 0}, "max_attempts must be an integer of at least 1"),
        ({"max_attempts": True}, "max_attempts must be an integer"),
        ({"timeout": -1}, "timeout must be a number of seconds"),
        ({"retry_backoff": "1"}, "retry_backoff must be a number of seconds"),
        ({"on_orphan": "ignore"}, "on_orphan must be 'retry' or 'park'"),
        ({"atomic": "yes"}, "atomic must be True or False"),
        ({"dedup_key": ""}, "dedup_key must be a non-empty string"),
        ({"dedup": "latest"}, "dedup must be one of skip, replace"),
        ({"dedup": "debounce"}, "needs dedup_window"),
    ],
)
def test_bad_engine_options_are_refused_where_the_task_is_defined(
    options, message, isolated_registry
):
    with pytest.raises(InvalidTask, match=message):
        engine_options(**options)(task(_plain_function))
    if TASK_TAKES_OPTIONS:
        with pytest.raises(InvalidTask, match=message):
            task(**options)(_plain_function)


#: Whether this Django's @task passes keywords it does not know to the task class (6.1, and the
#: backport); Django 6.0's refuses them.
TASK_TAKES_OPTIONS = any(
    parameter.kind is inspect.Parameter.VAR_KEYWORD
    for parameter in inspect.signature(task).parameters.values()
)


def test_engine_options_give_a_task_the_engines_options_on_every_django(isolated_registry):
    options = {"max_attempts": 3, "timeout": 5.0, "atomic": True, "on_orphan": "park"}
    given = engine_options(**options)(task(queue_name="emails")(_plain_function))
    assert isinstance(given, TaskEngineTask) and given.queue_name == "emails"
    assert {option: getattr(given, option) for option in options} == options
    registered = get_task(given.module_path)
    assert (registered.max_attempts, registered.timeout, registered.atomic) == (3, 5.0, True)
    assert registered.on_orphan == "park"
    if TASK_TAKES_OPTIONS:
        assert task(queue_name="emails", **options)(_plain_function) == given
    else:
        with pytest.raises(TypeError, match="max_attempts"):
            task(**options)(_plain_function)


def test_engine_options_refuses_what_it_does_not_know(isolated_registry):
    with pytest.raises(TypeError, match="unknown options retries; it takes max_attempts"):
        engine_options(retries=3)
    with pytest.raises(InvalidTask, match="needs a task of TaskEngineBackend"):
        engine_options(max_attempts=3)(_plain_function)


def test_a_dedup_key_returns_the_active_job_instead_of_adding_one():
    seen = []
    task_enqueued.connect(receiver := lambda sender, task_result, **kw: seen.append(task_result.id))
    try:
        first = tasks.add.using(dedup_key="sum-1-2").enqueue(1, 2)
        again = tasks.add.using(dedup_key="sum-1-2").enqueue(1, 2)
        nightly = tasks.nightly_report.enqueue()
        nightly_again = tasks.nightly_report.enqueue()
    finally:
        task_enqueued.disconnect(receiver)
    assert again.id == first.id
    assert nightly_again.id == nightly.id
    assert Job.objects.count() == 2
    # Nothing was enqueued the second time, so task_enqueued was not sent.
    assert seen == [first.id, nightly.id]


def test_a_replace_key_gives_the_waiting_job_the_new_arguments():
    first = tasks.add.using(dedup_key="sum", dedup="replace").enqueue(1, 2)
    again = tasks.add.using(dedup_key="sum", dedup="replace").enqueue(3, 4)
    assert again.id == first.id
    assert (_job(again).args, again.args) == ([3, 4], [3, 4])
    throttled = tasks.add.using(dedup_key="t", dedup="throttle", dedup_window=60)
    assert throttled.enqueue(1, 1).id == throttled.enqueue(2, 2).id
    assert Job.objects.count() == 2


def test_a_name_clash_with_an_engine_task_is_refused(isolated_registry):
    engine_task(name="tests.integration.test_backend._plain_function")(_other_function)
    with pytest.raises(
        InvalidTask, match="Two tasks are named 'tests.integration.test_backend._plain_"
    ):
        task(_plain_function)


# -- through real workers ---------------------------------------------------------------------


def test_a_worker_runs_the_jobs_and_refresh_shows_them_successful(start_workers):
    summed = tasks.add.enqueue(20, 22)
    mailed = tasks.send_mail.enqueue("a@example.com", "hi")
    echoed = tasks.echo.enqueue((1, 2), b"text", key={"a": (1,)})
    normalized = tasks.returns_bytes.enqueue()
    workers = start_workers("--burst")
    assert workers.wait() == 0, workers.log()[-3000:]
    for result in (summed, mailed, echoed, normalized):
        result.refresh()
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.is_finished
        assert result.errors == []
        attempt = Attempt.objects.get(job_id=int(result.id))
        assert result.worker_ids == [str(attempt.worker_id)]
        assert result.attempts == 1
        assert result.enqueued_at <= result.started_at == result.last_attempted_at
        assert result.last_attempted_at <= result.finished_at
    assert summed.return_value == 42
    assert mailed.return_value == "sent 'hi' to a@example.com"
    assert echoed.return_value == {"args": [[1, 2], "text"], "kwargs": {"key": {"a": [1]}}}
    assert normalized.return_value == {"data": "bytes", "pair": [1, 2]}


def test_a_running_job_reads_as_running(start_workers):
    result = tasks.sleeps.enqueue(seconds=30.0)
    workers = start_workers("--processes", "1")
    wait_for(lambda: LedgerEntry.objects.filter(job_id=int(result.id)).exists(), timeout=30)
    result.refresh()
    assert result.status == TaskResultStatus.RUNNING
    assert result.worker_ids == [str(_job(result).worker_id)]
    assert result.started_at == result.last_attempted_at == _job(result).started_at
    assert result.finished_at is None
    with pytest.raises(ValueError, match="not finished yet"):
        _ = result.return_value
    workers.kill()


def test_paused_jobs_are_ready_and_cancelled_jobs_failed_with_an_error():
    paused = tasks.add.enqueue(1, 2)
    operations.pause_job(int(paused.id))
    paused.refresh()
    assert paused.status == TaskResultStatus.READY
    cancelled = tasks.add.enqueue(3, 4)
    operations.cancel_job(int(cancelled.id))
    cancelled.refresh()
    assert cancelled.status == TaskResultStatus.FAILED
    assert cancelled.finished_at == _job(cancelled).finished_at is not None
    [error] = cancelled.errors
    assert error.exception_class is JobCancelled
    assert error.traceback == "cancelled by an operator"
    with pytest.raises(ValueError, match="Task failed"):
        _ = cancelled.return_value


def test_a_paused_queue_holds_django_jobs_like_any_other(start_workers):
    operations.pause_queue("emails")
    result = tasks.send_mail.enqueue("a@example.com", "hi")
    workers = start_workers("--burst")
    assert workers.wait() == 0
    result.refresh()
    assert result.status == TaskResultStatus.READY
    operations.resume_queue("emails")
    workers = start_workers("--burst")
    assert workers.wait() == 0
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_retries_end_failed_with_one_error_per_attempt(start_workers):
    result = tasks.always_fails.enqueue()
    workers = start_workers("--burst")
    assert workers.wait() == 0, workers.log()[-3000:]
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 2
    assert len(set(result.worker_ids)) == 1
    assert result.finished_at is not None
    assert [e.exception_class_path for e in result.errors] == [
        "tests.testapp.django_api_tasks.Boom",
        "tests.testapp.django_api_tasks.Boom",
    ]
    assert result.errors[0].exception_class is tasks.Boom
    assert result.errors[-1].traceback.startswith("Traceback (most recent call last):")
    assert "this task always fails" in result.errors[-1].traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value


def test_a_task_that_fails_then_succeeds_keeps_its_errors_and_sees_its_attempt(start_workers):
    result = tasks.flaky.enqueue(failures=2)
    workers = start_workers("--burst")
    assert workers.wait() == 0, workers.log()[-3000:]
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 3
    assert result.attempts == 3
    assert [e.exception_class for e in result.errors] == [tasks.Boom, tasks.Boom]
    assert result.started_at < result.last_attempted_at


def test_a_context_task_gets_a_django_task_context_from_attempt_1(start_workers):
    result = tasks.record_attempt.enqueue(label="ctx")
    workers = start_workers("--burst")
    assert workers.wait() == 0, workers.log()[-3000:]
    result.refresh()
    worker_id = str(Attempt.objects.get(job_id=int(result.id)).worker_id)
    assert result.return_value == {
        "attempt": 1,
        "status": "RUNNING",
        "worker_ids": [worker_id],
        "job_id": int(result.id),
    }
    assert issubclass(TaskEngineContext, TaskContext)


def test_async_tasks_run_in_the_worker(start_workers):
    summed = tasks.async_add.enqueue(2, 3)
    attempt = tasks.async_attempt.enqueue()
    workers = start_workers("--burst")
    assert workers.wait() == 0, workers.log()[-3000:]
    summed.refresh()
    attempt.refresh()
    assert (summed.status, summed.return_value) == (TaskResultStatus.SUCCESSFUL, 5)
    assert (attempt.status, attempt.return_value) == (TaskResultStatus.SUCCESSFUL, 1)


def test_an_atomic_task_rolls_its_writes_back_with_its_failure(start_workers):
    kept = tasks.atomic_write.enqueue("kept")
    gone = tasks.atomic_write.enqueue("gone", fail=True)
    workers = start_workers("--burst")
    assert workers.wait() == 0, workers.log()[-3000:]
    kept.refresh()
    gone.refresh()
    assert (kept.status, kept.return_value) == (TaskResultStatus.SUCCESSFUL, "kept")
    assert gone.status == TaskResultStatus.FAILED
    assert list(LedgerEntry.objects.values_list("label", flat=True)) == ["kept"]


def test_a_return_value_that_is_not_json_fails_the_task(start_workers):
    result = tasks.returns_object.enqueue()
    workers = start_workers("--burst")
    assert workers.wait() == 0, workers.log()[-3000:]
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    # TypeError, as Django's own backends record it.
    assert error.exception_class is TypeError
    assert "which is not JSON" in error.traceback and "Unsupported type" in error.traceback


def test_a_timeout_from_the_task_definition_fails_the_attempt(start_workers):
    result = tasks.overruns.enqueue()
    start_workers("--processes", "1")
    _finished(result)
    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is TimeoutError
    assert "timeout of 0.5 s" in error.traceback


def test_a_killed_workers_django_job_is_rescued_and_its_error_recorded(start_workers):
    result = tasks.sleeps.enqueue(seconds=1.0)
    workers = start_workers("--processes", "1")
    wait_for(lambda: LedgerEntry.objects.filter(job_id=int(result.id)).exists(), timeout=30)
    os.killpg(workers.pid, signal.SIGKILL)
    workers.wait()
    start_workers("--processes", "1")
    _finished(result, timeout=60)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.attempts == 2
    assert [e.exception_class for e in result.errors] == [WorkerDied]
    assert "worker died mid-run" in result.errors[0].traceback


def test_the_worker_sends_task_started_per_attempt_and_task_finished_once(start_workers):
    ok = tasks.add.enqueue(1, 2)
    bad = tasks.always_fails.enqueue()
    # The worker process connects receivers that write a ledger row per signal.
    workers = start_workers("--burst", TASKENGINE_TEST_DJANGO_SIGNALS="1")
    assert workers.wait() == 0, workers.log()[-3000:]

    def events(result):
        rows = LedgerEntry.objects.filter(job_id=int(result.id)).order_by("id")
        return [json.loads(label) for label in rows.values_list("label", flat=True)]

    def event(signal_name, status, attempts, errors=0):
        return {
            "signal": signal_name,
            "sender": "TaskEngineBackend",
            "status": status,
            "attempts": attempts,
            "errors": errors,
        }

    assert events(ok) == [event("started", "RUNNING", 1), event("finished", "SUCCESSFUL", 1)]
    assert events(bad) == [
        event("started", "RUNNING", 1),
        event("started", "RUNNING", 2, errors=1),
        event("finished", "FAILED", 2, errors=2),
    ]


def test_the_testing_helpers_run_django_tasks_in_process():
    from django_taskengine.testing import eager, run_jobs

    result = tasks.add.enqueue(1, 2)
    run_jobs()
    result.refresh()
    assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, 3)
    with eager():
        ran = tasks.flaky.enqueue(failures=1)
    assert (ran.status, ran.return_value, ran.attempts) == (TaskResultStatus.SUCCESSFUL, 2, 2)
    assert [e.exception_class for e in ran.errors] == [tasks.Boom]


def _formatted(exc: BaseException) -> tuple[str, str]:
    """The error and traceback the worker stores for ``exc``."""
    import traceback

    try:
        raise exc
    except BaseException as raised:  # noqa: BLE001
        return f"{type(raised).__name__}: {raised}", "".join(traceback.format_exception(raised))


class _Outer:
    class Inner(Exception):
        pass


def _chained() -> BaseException:
    try:
        raise KeyError("first")
    except KeyError as first:
        try:
            raise tasks.Boom("second") from first
        except tasks.Boom as second:
            return second


def _with_note() -> BaseException:
    exc = ValueError("line one\nboom.Boom: not the class")
    exc.add_note("tests.testapp.django_api_tasks.Boom: a note is not the class either")
    return exc


@pytest.mark.parametrize(
    "exc, path",
    [
        (ValueError("plain"), "builtins.ValueError"),
        (tasks.Boom("mine"), "tests.testapp.django_api_tasks.Boom"),
        (_Outer.Inner("nested"), "tests.integration.test_backend._Outer.Inner"),
        (_chained(), "tests.testapp.django_api_tasks.Boom"),
        (_with_note(), "builtins.ValueError"),
        (RuntimeError(), "builtins.RuntimeError"),
    ],
)
def test_an_errors_exception_class_path_is_read_from_its_traceback(exc, path):
    error, traceback = _formatted(exc)
    assert exception_class_path(error, traceback) == path


def test_errors_recorded_without_a_traceback_map_to_the_engines_exceptions():
    assert exception_class_path("TaskNotRegistered: No task named 'x'", "") == (
        "django_taskengine.task.TaskNotRegistered"
    )
    assert exception_class_path("KeyError: 'x'", "") == "builtins.KeyError"
    assert exception_class_path("Mystery: ?", "") == "builtins.Exception"
    assert exception_class_path("worker died mid-run: ...", "", "orphaned").endswith(".WorkerDied")
    assert exception_class_path("TimeoutError: ...", "", "timed_out") == "builtins.TimeoutError"


# -- system checks ----------------------------------------------------------------------------


def _ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_check_is_silent_for_a_correct_configuration():
    assert task_backends["default"].check() == []


def test_check_reports_a_database_other_than_postgresql_or_sqlite(monkeypatch):
    monkeypatch.setattr(connections["default"], "vendor", "mysql")
    [message] = task_backends["default"].check()
    assert message.id == "taskengine.E101"
    assert "a mysql database" in message.msg


def test_check_reports_queue_names_the_job_table_cannot_store_and_options():
    backend = TaskEngineBackend(
        "other", {"QUEUES": ["default", "", "q" * 101], "OPTIONS": {"DATABASE": "x"}}
    )
    assert sorted(_ids(backend.check())) == [
        "taskengine.E102",
        "taskengine.E102",
        "taskengine.E103",
    ]


@pytest.mark.skipif(
    SOURCE != "django.tasks",
    reason="the django-tasks backport registers its system check only with 'django_tasks' in "
    "INSTALLED_APPS",
)
def test_manage_py_check_runs_the_backend_check(settings):
    from django.core.checks import run_checks

    settings.TASKS = {
        "default": {"BACKEND": "django_taskengine.backends.TaskEngineBackend", "OPTIONS": {"X": 1}}
    }
    assert "taskengine.E103" in _ids(run_checks())


# -- helpers ---------------------------------------------------------------------------------


def _plain_function(a=1):
    return a


def _other_function(a=1):
    return a


@pytest.fixture
def isolated_registry():
    saved = registry.snapshot()
    yield
    registry.restore(saved)
