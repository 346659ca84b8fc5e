"""JSON validation for task arguments and results.

Arguments are checked before anything is written, and an error names the argument and the
offending value's place inside it, so the caller can fix the call site.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

_SCALARS = (str, int, bool, type(None))

# One compact, strict encoder for everything stored: json.dumps with options builds a new
# encoder on every call, which is a measurable share of an enqueue.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class NotJSONError(TypeError):
    """An argument or result that cannot be stored as JSON."""


def _string_problem(value: str, path: str) -> str | None:
    # Valid JSON for Python, but PostgreSQL's jsonb cannot store either.
    if "\x00" in value:
        return f"{path} contains a NUL character (\\x00)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{path} contains a lone surrogate, which is not valid Unicode text"
    return None


def find_problem(value: Any, path: str, depth: int = 0) -> str | None:
    """Why ``value`` (named ``path`` in the message) cannot be stored as JSON, or None."""
    if depth > 100:
        return f"{path} is nested more than 100 levels deep"
    if isinstance(value, str):
        return _string_problem(value, path)
    if isinstance(value, _SCALARS):
        return None
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"{path} is {value!r}, which JSON cannot represent"
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = find_problem(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return (
                    f"{path} has a key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be strings"
                )
            problem = _string_problem(key, f"{path} key {key!r}")
            if problem:
                return problem
            problem = find_problem(item, f"{path}[{key!r}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{path} is a {type(value).__module__}.{type(value).__qualname__} ({value!r:.80})"


def check_arguments(task_name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """Raise :class:`NotJSONError` naming the first argument JSON cannot store, if any."""
    for index, value in enumerate(args):
        problem = find_problem(value, f"positional argument {index}")
        if problem:
            raise NotJSONError(_message(task_name, problem))
    for name, value in kwargs.items():
        problem = find_problem(value, f"argument {name!r}")
        if problem:
            raise NotJSONError(_message(task_name, problem))


def to_json(value: Any) -> str:
    """Compact JSON text of a value that passed the checks here (tuples become arrays)."""
    return _encode(value)


def dump_arguments(
    task_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, str]:
    """Return ``(args_json, kwargs_json)`` or raise :class:`NotJSONError` naming the argument."""
    check_arguments(task_name, args, kwargs)
    return _encode(list(args)), _encode(kwargs)


def dump_result(value: Any) -> str:
    """Serialize a task's return value or raise :class:`NotJSONError`."""
    problem = find_problem(value, "the return value")
    if problem:
        raise NotJSONError(
            f"{problem}: a task's return value is stored as JSON; return only dicts, lists, "
            "strings, numbers, booleans and None (e.g. an id instead of a model instance)."
        )
    return _encode(value)


def _message(task_name: str, problem: str) -> str:
    return (
        f"Cannot enqueue {task_name}: {problem}, which is not JSON. Task arguments are stored "
        "as JSON: pass dicts, lists, strings, numbers, booleans and None (e.g. a primary key "
        "instead of a model instance, an ISO string instead of a datetime). Nothing was enqueued."
    )


def dump_event_payload(payload: Any) -> str:
    """Serialize an event's payload (``send_event``) or raise :class:`NotJSONError`."""
    problem = find_problem(payload, "the payload")
    if problem:
        raise NotJSONError(f"{problem}: an event's payload is stored as JSON. Nothing was sent.")
    return _encode(payload)


def dump_checkpoint(state: Any) -> str:
    """Serialize a checkpoint's state or raise :class:`NotJSONError`."""
    problem = find_problem(state, "the checkpoint state")
    if problem:
        raise NotJSONError(f"{problem}: checkpoint state is stored as JSON.")
    return _encode(state)
