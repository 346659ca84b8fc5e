"""Fixtures of the worker tests that build the worker's parts in-process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from django_taskengine.store import WorkerInfo, WorkerSession, get_store


@pytest.fixture
def session() -> Iterator[WorkerSession]:
    """A registered worker session of the test database's store, closed after the test."""
    info = WorkerInfo(id=uuid.uuid4(), hostname="test", pid=os.getpid(), queues=[], concurrency=1)
    session = get_store().open_session(info)
    session.register()
    yield session
    session.close()
