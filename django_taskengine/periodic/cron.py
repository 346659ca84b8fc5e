"""Cron expressions read in a time zone, and which ticks are due.

Ticks are computed by croniter with aware datetimes in the schedule's time zone and returned in
UTC. :class:`Cron` owns the daylight-saving rules; :func:`due_ticks` owns the catch-up rule
(what a schedule enqueues after every worker was down). Nothing here touches the database.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from ..conf import taskengine_settings

#: ``catch_up="all"`` enqueues at most this many missed ticks: the latest ones.
CATCH_UP_LIMIT = 100

_UTC = dt.UTC
_JUST_AFTER = dt.timedelta(microseconds=1)


class Cron:
    """A cron expression read in one time zone (raises ``ValueError`` for a bad expression and
    ``zoneinfo.ZoneInfoNotFoundError`` for an unknown zone).

    Five fields (minute hour day month weekday), or six with **seconds first**
    (``"*/10 * * * * *"``: every ten seconds); ``@daily``, ``@hourly``… work too. Returned
    ticks are in UTC.

    Daylight saving time: a wall-clock time that does not exist (02:30 on the night clocks go
    forward) fires at the first minute that does (03:00). On the night clocks go back, a time
    that happens twice fires twice only if the expression's hour field is ``*`` (so that
    "every 30 minutes" stays regular); an expression with fixed hours ("30 2 * * *") fires
    once, at the first occurrence — as Vixie cron does.
    """

    def __init__(self, expression: str, zone: str) -> None:
        # Imported here, not at module level: importing croniter runs the `file` command (for
        # platform.architecture()), a cost every process that merely imports this app would pay.
        # The first Cron pays it; the methods use what it keeps.
        from croniter import CroniterBadDateError, CroniterError, croniter

        self._croniter = croniter
        self._bad_date = CroniterBadDateError
        self.expression = expression
        self.zone = zoneinfo.ZoneInfo(zone)
        try:
            expanded = croniter(expression, second_at_beginning=True).expanded
        except CroniterError as exc:
            raise ValueError(str(exc)) from None
        self._every_hour = expanded[1] == ["*"]

    def _iterator(self, start: dt.datetime) -> Any:
        return self._croniter(
            self.expression, start.astimezone(self.zone), second_at_beginning=True
        )

    def _is_repeat(self, tick: dt.datetime) -> bool:
        """Whether ``tick`` is the second occurrence of its wall-clock time and must be skipped."""
        if self._every_hour:
            return False
        later = tick.replace(fold=1)
        if tick.replace(fold=0).utcoffset() == later.utcoffset():
            return False  # not an ambiguous time
        return tick.utcoffset() == later.utcoffset()

    def next_after(self, moment: dt.datetime) -> dt.datetime | None:
        """The first tick strictly after ``moment``; None if the expression has no further date."""
        iterator = self._iterator(moment)
        try:
            while True:
                tick: dt.datetime = iterator.get_next(dt.datetime)
                if not self._is_repeat(tick):
                    return tick.astimezone(_UTC)
        except self._bad_date:
            return None

    def ticks_between(self, start: dt.datetime, end: dt.datetime, limit: int) -> list[dt.datetime]:
        """Ticks ``t`` with ``start <= t <= end``, oldest first: the latest ``limit`` of them.

        Walks back from ``end``, so a long stretch costs ``limit`` steps, not one per tick.
        """
        iterator = self._iterator(end + _JUST_AFTER)
        found: list[dt.datetime] = []
        try:
            while len(found) < limit:
                tick = iterator.get_prev(dt.datetime)
                if tick < start:
                    break
                if not self._is_repeat(tick):
                    found.append(tick.astimezone(_UTC))
        except self._bad_date:
            pass
        found.reverse()
        return found


def due_ticks(
    cron: Cron,
    next_tick_at: dt.datetime | None,
    now: dt.datetime,
    *,
    catch_up: str = "once",
    missed_after: float | None = None,
) -> tuple[list[dt.datetime], dt.datetime | None]:
    """The ticks to enqueue at ``now`` (oldest first) and the schedule's next tick after them.

    ``next_tick_at`` is the earliest tick not yet handled. If it is more than ``missed_after``
    seconds (default ``TASKENGINE["PERIODIC_MISSED_AFTER"]``) in the past, every worker was down
    when it fell due: ``catch_up="once"`` returns only the latest due tick; ``"all"`` returns
    every due tick (the latest :data:`CATCH_UP_LIMIT`). Ticks that fell due between two looks
    of a running worker are all returned, whatever ``catch_up`` says.
    """
    if next_tick_at is None or next_tick_at > now:
        return [], next_tick_at
    if missed_after is None:
        missed_after = taskengine_settings.PERIODIC_MISSED_AFTER
    missed = (now - next_tick_at).total_seconds() > missed_after
    limit = 1 if catch_up == "once" and missed else CATCH_UP_LIMIT
    return cron.ticks_between(next_tick_at, now, limit), cron.next_after(now)


_parsed: dict[tuple[str, str], Cron] = {}


def parsed_cron(expression: str, zone: str) -> Cron:
    """The :class:`Cron` of ``expression`` in ``zone``, parsed once per process."""
    key = (expression, zone)
    if key not in _parsed:
        _parsed[key] = Cron(expression, zone)
    return _parsed[key]
