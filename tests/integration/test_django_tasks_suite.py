"""Django's own tests of its Tasks framework (``tests/tasks/`` of the installed Django release),
re-pointed at TaskEngineBackend: all pass but those devsupport/django_tasks_suite.py lists,
with the reason, as not applying to a database backend."""

from __future__ import annotations

import os
import re

import pytest

from devsupport import django_tasks_suite as suite
from django_taskengine.backends.compat import SOURCE
from tests.settings import TEST_NAME

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        SOURCE != "django.tasks",
        reason="Django's own Tasks tests come with Django 6; the backport has its own",
    ),
]


def test_djangos_tasks_tests_pass_on_taskengine_backend(tmp_path):
    root = suite.prepare(suite.fetch_sdist(tmp_path), tmp_path / "suite")
    # A test database of its own, beside this suite's.
    env = {**os.environ, "TASKENGINE_TEST_NAME": f"{TEST_NAME}_dj"}
    env.pop("TASKENGINE_TEST_DB_NAME", None)
    done = suite.run(root, env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    ran = re.search(r"^Ran (\d+) tests?", output, re.MULTILINE)
    assert ran and int(ran.group(1)) >= 70, output[-3000:]
    assert re.search(rf"^OK \(skipped={len(suite.SKIPPED)}\)$", output, re.MULTILINE), output[
        -3000:
    ]
    for reason in suite.SKIPPED.values():
        assert f"skipped {reason!r}" in output
