"""One grammar for durations that people write: ``90s``, ``15m``, ``1h30m``, ``2d``, ``1w``.

Used by the CLI (``--for``, ``--older-than``), the retention settings and the admin; a number
alone means seconds where a caller allows it. :func:`format_duration` writes a duration back in
the same grammar, so what the engine prints can be typed back in.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

SECONDS_PER_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNITS = "".join(SECONDS_PER_UNIT)
_DURATION = re.compile(rf"(?:\d+(?:\.\d+)?[{_UNITS}])+")
_PART = re.compile(rf"(\d+(?:\.\d+)?)([{_UNITS}])")

#: How a valid duration looks, for error messages.
EXAMPLES = "90s, 15m, 1h30m, 2d or 1w"


def parse_duration(value: Any, *, allow_seconds: bool = False) -> dt.timedelta:
    """``"1h30m"`` → ``timedelta(hours=1, minutes=30)``; ``ValueError`` if it is not one.

    Case and spaces do not matter. With ``allow_seconds``, a number (int or float, or a string
    of digits) is a number of seconds. A ``timedelta`` is returned as it is.
    """
    if isinstance(value, dt.timedelta):
        return value
    if allow_seconds and isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration: write it like {EXAMPLES}")
    compact = value.strip().lower().replace(" ", "")
    if allow_seconds and re.fullmatch(r"\d+(?:\.\d+)?", compact):
        return dt.timedelta(seconds=float(compact))
    if not _DURATION.fullmatch(compact):
        raise ValueError(f"{value!r} is not a duration: write it like {EXAMPLES}")
    seconds = sum(float(number) * SECONDS_PER_UNIT[unit] for number, unit in _PART.findall(compact))
    return dt.timedelta(seconds=seconds)


def format_duration(duration: dt.timedelta, *, largest_unit: str = "w") -> str:
    """A duration in the same grammar, largest units first: ``1h30m``, ``2w3d``, ``45s``.

    Fractions of a second are dropped; zero is ``0s``. ``largest_unit`` caps the units used
    (``largest_unit="d"`` writes ``14d``, not ``2w``), for texts that people know in days.
    """
    if largest_unit not in SECONDS_PER_UNIT:
        raise ValueError(f"largest_unit must be one of {', '.join(SECONDS_PER_UNIT)}")
    remaining = int(duration.total_seconds())
    if remaining <= 0:
        return "0s"
    cap = SECONDS_PER_UNIT[largest_unit]
    parts = []
    units = sorted(SECONDS_PER_UNIT.items(), key=lambda item: -item[1])
    for unit, size in (item for item in units if item[1] <= cap):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def seconds_text(seconds: float) -> str:
    """A number of seconds as people write it, to the millisecond: ``30``, ``0.5``, ``1.25``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")
