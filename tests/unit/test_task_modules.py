"""A job's task defined outside ``tasks.py``: its module is imported when a job names it, only
inside installed apps' packages and ``TASKENGINE["TASK_MODULES"]``; nothing else is imported."""

from __future__ import annotations

import sys

import pytest
from django.test import override_settings

from django_taskengine import TaskNotRegistered, get_task
from django_taskengine.registry import tasks as registry

LAZY = "tests.testapp.lazy_tasks"
MODULES = (LAZY, "tests.testapp.broken_lazy_tasks", "tests.outside_tasks", "tabnanny")


@pytest.fixture(autouse=True)
def not_imported():
    """The modules these tests import are not imported before nor after each test."""
    saved, imported = registry.snapshot(), dict(registry._imported)

    def forget() -> None:
        for name in MODULES:
            sys.modules.pop(name, None)
        registry._imported = {k: v for k, v in imported.items() if k not in MODULES}
        registry.restore({k: v for k, v in saved.items() if not k.startswith(MODULES)})

    forget()
    yield
    forget()
    registry.restore(saved)
    registry._imported = imported


def test_a_task_of_an_installed_app_outside_tasks_py_is_found_by_its_name():
    assert LAZY not in sys.modules
    task = get_task(f"{LAZY}.lazy_add")
    assert task.name == f"{LAZY}.lazy_add" and task.func(2, 3) == 5
    assert LAZY in sys.modules


def test_a_django_tasks_task_outside_tasks_py_is_found_by_its_name():
    task = get_task(f"{LAZY}.lazy_django_add")
    assert task.django_task.module_path == f"{LAZY}.lazy_django_add"


def test_a_module_outside_installed_apps_is_never_imported():
    assert "tabnanny" not in sys.modules
    with pytest.raises(TaskNotRegistered):
        get_task("tabnanny.check")
    with pytest.raises(TaskNotRegistered):
        get_task("tests.outside_tasks.outside_add")
    assert "tabnanny" not in sys.modules and "tests.outside_tasks" not in sys.modules


@override_settings(TASKENGINE={"TASK_MODULES": ["tests.outside_tasks"]})
def test_task_modules_lets_a_package_outside_installed_apps_be_imported():
    assert get_task("tests.outside_tasks.outside_add").func(1, 1) == 2


def test_a_name_that_is_not_a_registered_task_of_the_imported_module_does_not_run():
    # The module is imported; what it holds but did not register is not a task.
    with pytest.raises(TaskNotRegistered):
        get_task(f"{LAZY}.django_task")
    with pytest.raises(TaskNotRegistered):
        get_task(f"{LAZY}.missing")
    assert LAZY in sys.modules


def test_a_module_that_fails_to_import_is_named_in_the_error():
    with pytest.raises(TaskNotRegistered, match="Importing tests.testapp.broken_lazy_tasks failed"):
        get_task("tests.testapp.broken_lazy_tasks.job")
    # Tried once: the next lookup does not import it again, and still says why.
    with pytest.raises(TaskNotRegistered, match="cannot be imported"):
        get_task("tests.testapp.broken_lazy_tasks.other")


@pytest.mark.parametrize(
    "name", ["tests.testapp.lazy tasks.x", "tests..testapp.x", "lazy_add", "", "tests.testapp.1x.y"]
)
def test_names_that_are_not_dotted_identifiers_import_nothing(name):
    with pytest.raises(TaskNotRegistered):
        get_task(name)
    assert LAZY not in sys.modules
