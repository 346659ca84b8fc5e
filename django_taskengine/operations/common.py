"""What every operator action shares: its refusals, the database it acts on, and when a timed
pause ends."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from ..conf import taskengine_settings


class ActionRefused(Exception):
    """An operator action that does not apply to the object's current state."""


class NotFound(ActionRefused, LookupError):
    """The queue, job or schedule named does not exist."""


def database(using: str | None) -> str:
    """The alias of the job table's database: ``using``, or ``TASKENGINE["DATABASE"]``."""
    return using or taskengine_settings.DATABASE


def pause_end(until: dt.datetime | dt.timedelta | None) -> dt.datetime | None:
    """When a pause given ``until`` ends (None: when resumed); a duration counts from now."""
    if until is None or isinstance(until, dt.datetime):
        if until is not None and timezone.is_naive(until):
            raise ValueError(f"pause until {until!r}: pass an aware datetime")
        return until
    if isinstance(until, dt.timedelta):
        if until <= dt.timedelta(0):
            raise ValueError("a timed pause needs a positive duration")
        return timezone.now() + until
    raise TypeError(f"until must be a datetime or a timedelta, not {until!r}")
