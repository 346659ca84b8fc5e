"""``raise Snooze(seconds)``: a task's way to say "not now, try me again later".

The job goes back to the queue, due ``seconds`` from now by the database's clock; the run is kept
in its attempts history as ``snoozed`` and does not count: ``job.attempts`` does not grow and
``max_attempts`` is not used up, so a task may snooze as often as it needs (waiting for an
external system, a time window, a resource). Raised inside an ``atomic`` task, it rolls the
task's transaction back like any exception. The rule lives in
:func:`django_taskengine.core.lifecycle.snoozed`.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from numbers import Real

from .core.durations import seconds_text

#: The longest snooze: 100 years. Longer would overflow the dates the stores can write; a job
#: to hold indefinitely is one to pause.
SNOOZE_MAX_SECONDS = 100 * 365.25 * 86400


class Snooze(Exception):
    """Raised by a task to run again ``seconds`` from now (a number ≥ 0, or a ``timedelta``),
    without using up an attempt.

    ``Snooze(30)`` and ``Snooze(timedelta(minutes=5))``; a bad value (a string, a negative
    number, NaN, infinity, beyond 100 years) raises ``TypeError`` or ``ValueError`` here, so
    the attempt fails with that error, as for any exception of the task.
    """

    def __init__(self, seconds: float | Decimal | dt.timedelta) -> None:
        self.seconds = check_snooze_seconds(seconds)
        # The checked seconds as its only argument, so that a copy (pickle) is made alike.
        super().__init__(self.seconds)

    def __str__(self) -> str:
        return f"snooze for {seconds_text(self.seconds)} s"


def check_snooze_seconds(value: object, name: str = "Snooze", arg: str = "seconds") -> float:
    """``value`` as a number of seconds to snooze: a real number (an int, a float, a
    ``Decimal``…; not a bool) or a ``timedelta``, finite, at least 0 and at most
    :data:`SNOOZE_MAX_SECONDS`. ``name(arg)`` is what the errors call: ``Snooze(seconds)``,
    ``ctx.sleep(seconds)`` or ``ctx.wait_for_event(timeout)``."""
    call = f"{name}({arg})"
    raising = "raise " if name == "Snooze" else ""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (Real, Decimal)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except (ValueError, OverflowError):  # a signalling NaN, an int beyond any float
            seconds = math.nan
    else:
        raise TypeError(
            f"{call} takes a number of seconds or a datetime.timedelta, not "
            f"{value!r:.80} ({type(value).__name__}): e.g. {raising}{name}(30) or "
            f"{name}(timedelta(minutes=5))"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(
            f"{call} needs a finite delay of 0 seconds or more, not {value!r:.80}: "
            "the job is due again that long after the attempt ends"
        )
    if seconds > SNOOZE_MAX_SECONDS:
        raise ValueError(
            f"{call} takes at most 100 years ({SNOOZE_MAX_SECONDS:.0f} s), not "
            f"{value!r:.80}: to hold a job indefinitely, pause it (operations.pause_job)"
        )
    return seconds
