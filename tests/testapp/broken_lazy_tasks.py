"""A module of tasks that fails as it is imported (tests/unit/test_task_modules.py)."""

raise RuntimeError("this module cannot be imported")
