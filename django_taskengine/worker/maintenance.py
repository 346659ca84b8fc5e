"""Periodic housekeeping that long-running workers do between claims (enqueueing due periodic
ticks, pruning old finished jobs). Each duty is a function taking the database alias; it runs
in the worker's main thread on its Django connection at most once per ``interval`` seconds, and
an error in one is logged, never fatal to the worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Duty:
    name: str
    interval: float
    run: Callable[[str], object]


#: Duties every non-burst worker process performs. Modules append theirs at import.
DUTIES: list[Duty] = []


def register(
    name: str, interval: float
) -> Callable[[Callable[[str], object]], Callable[[str], object]]:
    """Decorator: run ``function(database_alias)`` in every worker about every ``interval`` s."""

    def decorate(function: Callable[[str], object]) -> Callable[[str], object]:
        DUTIES[:] = [duty for duty in DUTIES if duty.name != name]
        DUTIES.append(Duty(name, interval, function))
        return function

    return decorate
