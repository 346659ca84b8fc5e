"""Pick the storage implementation for a database alias (see :mod:`.base`)."""

from __future__ import annotations

from django.db import connections

from ..conf import taskengine_settings
from . import base
from .base import ClaimedJob as ClaimedJob
from .base import ClaimFailedAfterWrite as ClaimFailedAfterWrite
from .base import NewJobs as NewJobs
from .base import Outcome as Outcome
from .base import RescuedJob as RescuedJob
from .base import StateWrite as StateWrite
from .base import Store
from .base import WorkerInfo as WorkerInfo
from .base import WorkerSession as WorkerSession
from .generic import GenericStore
from .postgres import PostgresStore

__all__ = [*base.__all__, "get_store"]

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
