"""Transactions a task leaves open, found after it returns and discarded.

A task that enters ``transaction.atomic()`` without leaving it, begins a transaction with a raw
``BEGIN``, or turns autocommit off, returns with its writes uncommitted on its thread's
connection. Nothing would ever commit them, and the next job on that thread would run inside
that transaction (or on a connection Django considers closed in a transaction). The runner
compares each connection's transaction state after the task with the state before it; a
connection left in a transaction is rolled back and closed (a worker thread gets a clean one on
its next query), or, on the caller's own connection (eager mode, ``testing.run_jobs``), rolled
back to where it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections


@dataclass(frozen=True)
class TransactionState:
    """Where one connection stands: Django's atomic blocks, autocommit, the driver's own."""

    in_atomic_block: bool = False
    savepoints: int = 0
    autocommit: bool = True
    #: The driver is in a transaction Django did not open (a raw ``BEGIN``).
    raw_open: bool = False


CLEAN = TransactionState()
_RAW_OPEN = TransactionState(raw_open=True)

#: libpq transaction statuses of a connection inside a transaction (INTRANS, INERROR).
_IN_TRANSACTION = (2, 3)


def snapshot(opened: Sequence[Any] | None = None) -> dict[str, TransactionState]:
    """The transaction state of the connections this thread has opened (``opened``, if the
    caller has them at hand) that are not idle in autocommit, by alias (usually none: this runs
    for every job, so the idle case is cheap)."""
    found = {}
    for conn in connections.all(initialized_only=True) if opened is None else opened:
        state = _state(conn)
        if state is not CLEAN:
            found[conn.alias] = state
    return found


def left_open(
    before: dict[str, TransactionState], opened: Sequence[Any] | None = None
) -> dict[str, str]:
    """Connections (of ``opened``, or of all this thread has opened) whose transaction state
    differs from ``before``: alias -> what was left."""
    after = snapshot(opened)
    if not after and not before:
        return {}
    found = {}
    for alias in sorted(after.keys() | before.keys()):
        now, was = after.get(alias, CLEAN), before.get(alias, CLEAN)
        if now == was:
            continue
        if now.savepoints > was.savepoints or now.in_atomic_block != was.in_atomic_block:
            found[alias] = "a transaction.atomic() block entered and never exited"
        elif now.autocommit != was.autocommit:
            found[alias] = "autocommit turned off (transaction.set_autocommit(False))"
        else:
            found[alias] = "a transaction begun on the connection (a raw BEGIN) never ended"
    return found


def discard(aliases: list[str], before: dict[str, TransactionState], *, close: bool) -> None:
    """Roll back what the task left open on ``aliases``.

    ``close``: close the connection and forget it, so this thread's next query opens a clean
    one. Otherwise (the caller's connection, perhaps inside the caller's own transaction), roll
    back to the state ``before`` and keep the connection.
    """
    for alias in aliases:
        conn = connections[alias]
        if close:
            _close(conn)
            del connections[alias]
        else:
            _roll_back_to(conn, before.get(alias, CLEAN))


def _state(conn: Any) -> TransactionState:
    raw = conn.connection
    if raw is None and not conn.in_atomic_block:
        # Closed (or lost with a broken connection, which Django leaves marked autocommit off):
        # no transaction is held, and the next use connects afresh in autocommit.
        return CLEAN
    if not conn.in_atomic_block and conn.autocommit and not conn.savepoint_ids:
        if raw is None or not _driver_in_transaction(raw):
            return CLEAN
        return _RAW_OPEN
    return TransactionState(
        in_atomic_block=conn.in_atomic_block,
        savepoints=len(conn.savepoint_ids),
        autocommit=conn.autocommit,
    )


def _driver_in_transaction(raw: Any) -> bool:
    pgconn = getattr(raw, "pgconn", None)  # psycopg 3: the status without a ConnectionInfo
    if pgconn is not None:
        return int(pgconn.transaction_status) in _IN_TRANSACTION
    # psycopg 3 and psycopg2 (>= 2.8): connection.info.transaction_status, the libpq values:
    # IDLE 0, ACTIVE 1, INTRANS 2, INERROR 3, UNKNOWN 4. Only INTRANS and INERROR are a
    # transaction left open; UNKNOWN is a broken connection (the task's own query failed with
    # it, a retryable error), which Django replaces on its next use.
    status = getattr(getattr(raw, "info", None), "transaction_status", None)
    if status is not None:
        return int(status) in _IN_TRANSACTION
    return bool(getattr(raw, "in_transaction", False))  # sqlite3


def _close(conn: Any) -> None:
    raw = conn.connection
    if raw is None:
        return
    try:
        # Closing ends the transaction without a commit: the server rolls it back.
        raw.close()
    except Exception:  # noqa: BLE001 - a broken connection is as good as closed
        pass


def _roll_back_to(conn: Any, was: TransactionState) -> None:
    while len(conn.savepoint_ids) > was.savepoints:
        savepoint = conn.savepoint_ids.pop()
        if savepoint is not None:
            conn.savepoint_rollback(savepoint)
    if conn.in_atomic_block and not was.in_atomic_block:
        conn.in_atomic_block = False
        conn.needs_rollback = False
        conn.rollback()
        conn.set_autocommit(True)
    elif conn.autocommit != was.autocommit and not conn.in_atomic_block:
        conn.rollback()
        conn.set_autocommit(was.autocommit)
    elif conn.connection is not None and _driver_in_transaction(conn.connection):
        if not was.raw_open and conn.autocommit and not conn.in_atomic_block:
            conn.connection.rollback()
