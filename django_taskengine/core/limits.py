"""Bounds of what the job table stores, and the checks every entry point shares.

The models take their column sizes from here, so a check and the column it protects cannot
disagree. Each check raises ``TypeError`` or ``ValueError`` with a message that names ``what``
(the caller says which option or setting it checks), the problem and the bound.
"""

from __future__ import annotations

from typing import Any

#: Longest queue name (``Job.queue``, ``Queue.name``).
QUEUE_NAME_MAX = 100
#: Longest task name and dedup key.
TASK_NAME_MAX = 255
DEDUP_KEY_MAX = 255
#: Longest group and sequence keys (``.using(group=…, sequence=…)``), and a flow lane's key: a
#: prefix, a task name, a separator and a group (see :mod:`.flow`).
GROUP_KEY_MAX = 200
SEQUENCE_KEY_MAX = 200
FLOW_KEY_MAX = 2 + TASK_NAME_MAX + 1 + GROUP_KEY_MAX
#: Longest "by" (who did an operator action).
ACTOR_MAX = 150
#: Priorities, attempts and other integer columns are 32-bit.
INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
#: Longest event name (``send_event``, ``ctx.wait_for_event``).
EVENT_NAME_MAX = 200
#: Longest workflow name and step name (``Workflow(name)``, ``wf.add(…, name=…)``).
WORKFLOW_NAME_MAX = 200
STEP_NAME_MAX = 200
#: Job ids are 64-bit.
JOB_ID_MAX = 2**63 - 1


def check_name(value: Any, what: str, *, max_length: int = QUEUE_NAME_MAX) -> str:
    """A non-empty string of at most ``max_length`` characters (a queue name by default)."""
    if not isinstance(value, str) or not value or len(value) > max_length:
        raise ValueError(
            f"{what} must be a non-empty string of at most {max_length} characters, not {value!r}"
        )
    return value


def check_queue_name(value: Any, what: str = "queue") -> str:
    """A queue name as the job table stores it."""
    return check_name(value, what, max_length=QUEUE_NAME_MAX)


def is_int32(value: Any) -> bool:
    """An ``int`` (not a bool) that fits a 32-bit column."""
    return (
        isinstance(value, int) and not isinstance(value, bool) and INT32_MIN <= value <= INT32_MAX
    )


def check_int32(value: Any, what: str, *, minimum: int | None = None) -> int:
    """An integer for a 32-bit column, at least ``minimum`` when one is given.

    Without a ``minimum``, a value below the column's range is refused as not fitting in 32
    bits (rather than as less than ``INT32_MIN``), which is what the person needs to hear.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value!r}")
    if not INT32_MIN <= value <= INT32_MAX:
        raise ValueError(f"{what} must fit in 32 bits (±{INT32_MAX}), not {value!r}")
    return value


def check_number(value: Any, what: str, *, minimum: float | None = None) -> float:
    """A real number (int or float, not a bool), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value!r}")
    return value
