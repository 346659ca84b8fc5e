"""A worker runs a job whose task is defined outside ``tasks.py``, in a module of an installed
app that the worker process had not imported (``@task`` and ``django.tasks``)."""

from __future__ import annotations

import pytest

from django_taskengine.models import Job, JobStatus
from tests.helpers import burst

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_worker_imports_the_module_of_a_task_a_job_names(start_workers):
    # Imported here to enqueue; the worker process imports only the apps' tasks.py at start-up.
    from tests.testapp.lazy_tasks import lazy_add, lazy_django_add

    job = lazy_add.enqueue(2, 3)
    result = lazy_django_add.enqueue(4, 5)
    log = burst(start_workers, job)
    assert (job.status, job.result) == (JobStatus.SUCCEEDED, 5), log[-3000:]
    assert Job.objects.get(pk=int(result.id)).result == 9
    result.refresh()
    assert result.return_value == 9
