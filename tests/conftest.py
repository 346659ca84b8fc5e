from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from .helpers import WorkerCommand, worker_env


@pytest.fixture
def start_workers(
    transactional_db: None, tmp_path: Path
) -> Iterator[Callable[..., WorkerCommand]]:
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


@pytest.fixture(autouse=True)
def _fresh_stores() -> Iterator[None]:
    """Forget the queues a store has seen: each test starts with emptied tables."""
    from django_taskengine import store

    store._stores.clear()
    yield
    store._stores.clear()
