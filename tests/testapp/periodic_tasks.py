"""Periodic schedules of the test suite, imported by ``tasks.py`` so autodiscovery finds them.

One uses each order of the decorators. They fire on 29 February only, so the worker processes
of other tests create their rows but never enqueue their jobs.
"""

from __future__ import annotations

from django_taskengine import periodic, task


@periodic("0 4 29 2 *", timezone="Europe/Paris")
@task
def leap_day_report():
    return "report"


@task
@periodic("30 5 29 2 *", kwargs={"label": "below"}, name="leap-day-below", catch_up="all")
def leap_day_below(label=""):
    return label
