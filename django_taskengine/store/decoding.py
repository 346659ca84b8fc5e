"""Loading a claimed job's JSON columns one job at a time.

The database accepts JSON that Python's ``json`` cannot load (nesting deeper than the recursion
limit, integers longer than ``sys.get_int_max_str_digits()``). Loaded inside the claim, one such
row would make the whole batch fail and the worker exit; loaded here, per job, it is named as
:class:`Unreadable` and fails only its own job.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Unreadable:
    """A job's JSON column that could not be loaded, and why (for the job's error)."""

    column: str
    problem: str


def load_column(column: str, text: str | None) -> Any:
    """``text`` loaded as JSON, None for SQL NULL, or :class:`Unreadable` naming the problem."""
    if text is None:
        return None
    # Most jobs' arguments are empty: no parse for them.
    if text == "[]":
        return []
    if text == "{}":
        return {}
    try:
        return json.loads(text)
    except RecursionError:
        problem = (
            "it is nested too deeply for Python's json module "
            f"(Python's recursion limit is {sys.getrecursionlimit()})"
        )
        return Unreadable(column, problem)
    except ValueError as exc:
        return Unreadable(column, str(exc))
