"""Pick the storage implementation for a database alias (see :mod:`.base`)."""

from __future__ import annotations

from django.db import connections

from ..conf import taskengine_settings
from .base import (
    ClaimedJob,
    NewJobs,
    Outcome,
    RescuedJob,
    StateWrite,
    Store,
    WorkerInfo,
    WorkerSession,
)
from .generic import GenericStore
from .postgres import PostgresStore

__all__ = [
    "ClaimedJob",
    "NewJobs",
    "Outcome",
    "RescuedJob",
    "StateWrite",
    "Store",
    "WorkerInfo",
    "WorkerSession",
    "get_store",
]

_stores: dict[str, Store] = {}


def get_store(alias: str | None = None) -> Store:
    """Return the store for ``alias`` (default: the ``TASKENGINE["DATABASE"]`` setting)."""
    alias = alias or taskengine_settings.DATABASE
    store = _stores.get(alias)
    if store is None:
        vendor = connections[alias].vendor
        store = PostgresStore(alias) if vendor == "postgresql" else GenericStore(alias)
        _stores[alias] = store
    return store
