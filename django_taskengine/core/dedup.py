"""Uniqueness modes: what an enqueue with a dedup key does when another job has that key.

``.using(dedup_key=K, dedup=MODE)``:

* ``skip`` (the default): while a queued, running or paused job holds K, the enqueue returns
  it and adds nothing.
* ``replace``: a job holds K only until it starts. A waiting holder that never started gets
  the new arguments, priority and ``run_after``; once it has started, the key is free and the
  enqueue adds a new job, queued after it.
* ``debounce`` (with ``dedup_window``): as ``replace``, and the holder is due ``dedup_window``
  seconds after the last enqueue: a burst runs once, with the last arguments.
* ``throttle`` (with ``dedup_window``): at most one job per key per window. The window starts
  at the enqueue of the job that holds the key (finished or not); calls inside it return that
  job and add nothing. An active holder still blocks the key after its window, as in ``skip``.

``job.dedup_outcome`` says what an enqueue did: one of :data:`OUTCOMES`.
"""

from __future__ import annotations

import math
from typing import Any

SKIP = "skip"
REPLACE = "replace"
DEBOUNCE = "debounce"
THROTTLE = "throttle"
MODES = (SKIP, REPLACE, DEBOUNCE, THROTTLE)
#: Modes whose job holds its key only until it starts (it is replaced while it waits).
UNTIL_START = (REPLACE, DEBOUNCE)
#: Modes whose job holds its key while it is active (queued, running or paused).
WHILE_ACTIVE = (SKIP, THROTTLE)
#: The longest mode name (the column's size).
MODE_MAX = 8

CREATED = "created"
SKIPPED = "skipped"
REPLACED = "replaced"
DEBOUNCED = "debounced"
THROTTLED = "throttled"
OUTCOMES = (CREATED, SKIPPED, REPLACED, DEBOUNCED, THROTTLED)

#: What an enqueue that found a holder did, by mode.
FOUND = {SKIP: SKIPPED, REPLACE: REPLACED, DEBOUNCE: DEBOUNCED, THROTTLE: THROTTLED}


def check_mode(
    mode: Any, window: Any, *, dedup_key: Any, run_after: Any, what: str
) -> float | None:
    """Refuse a mode or window that cannot apply; return the window in seconds (None for none).

    ``what`` names the caller (the task) in the messages.
    """
    if mode not in MODES:
        raise ValueError(f"{what}: dedup must be one of {', '.join(MODES)}, not {mode!r}")
    if dedup_key is None and (mode != SKIP or window is not None):
        raise ValueError(f"{what}: dedup={mode!r} needs a dedup_key")
    if mode in (DEBOUNCE, THROTTLE):
        seconds = getattr(window, "total_seconds", lambda: window)()
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 < seconds < math.inf
        ):
            raise ValueError(
                f"{what}: dedup={mode!r} needs dedup_window, a number of seconds (or a "
                f"timedelta) above 0, not {window!r}"
            )
        if mode == DEBOUNCE and run_after is not None:
            raise ValueError(
                f"{what}: dedup='debounce' sets run_after itself (dedup_window after the last "
                "enqueue); give one or the other"
            )
        return float(seconds)
    if window is not None:
        raise ValueError(f"{what}: dedup_window applies to 'debounce' and 'throttle', not {mode!r}")
    return None


def outcomes(first: str, mode: str, count: int) -> list[str]:
    """Per call of an enqueue of ``count`` calls with one key: the first call's outcome, then
    what each later call did (it found the job the first one got)."""
    return [first] + [FOUND[mode]] * (count - 1)
