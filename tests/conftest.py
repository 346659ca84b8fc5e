from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from django_taskengine.store import WorkerInfo, WorkerSession, get_store

from .helpers import WorkerCommand, end_subprocess_sessions, worker_env


@pytest.fixture
def start_workers(transactional_db: None, tmp_path: Path) -> Iterator[Callable[..., WorkerCommand]]:
    """Start ``run_workers`` subprocesses against the test database; all are killed at the end."""
    started: list[WorkerCommand] = []

    def start(*args: str, **env: str) -> WorkerCommand:
        log_path = tmp_path / f"run_workers-{len(started)}.log"
        command = WorkerCommand(list(args), log_path, worker_env(**env))
        started.append(command)
        return command

    yield start
    for command in started:
        command.kill()
    if started:
        end_subprocess_sessions()


@pytest.fixture(autouse=True)
def _fresh_stores() -> Iterator[None]:
    """Forget the queues a store has seen: each test starts with emptied tables."""
    from django_taskengine import store

    store._stores.clear()
    yield
    store._stores.clear()


@pytest.fixture(scope="session", autouse=True)
def _no_sessions_left_at_teardown(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Before the test database is dropped, end sessions that killed worker processes or the
    live server left behind (PostgreSQL refuses to drop a database that is in use)."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        connection.close()


@pytest.fixture
def open_sessions() -> Iterator[Callable[[int], list[WorkerSession]]]:
    """Open ``n`` registered worker sessions of the test database's store (as ``n`` worker
    processes would); all are closed after the test."""
    opened: list[WorkerSession] = []

    def open_(n: int) -> list[WorkerSession]:
        for _ in range(n):
            info = WorkerInfo(
                id=uuid.uuid4(), hostname="test", pid=os.getpid(), queues=[], concurrency=1
            )
            opened.append(get_store().open_session(info))
            opened[-1].register()
        return opened[-n:]

    yield open_
    for session in opened:
        session.close()


@pytest.fixture
def session(open_sessions: Callable[[int], list[WorkerSession]]) -> WorkerSession:
    """A registered worker session of the test database's store, closed after the test."""
    return open_sessions(1)[0]
