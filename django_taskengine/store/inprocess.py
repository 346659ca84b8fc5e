"""An in-process worker session: the ORM one, on the caller's connection and transaction,
narrowed to some jobs. Eager mode and :mod:`django_taskengine.testing` run jobs through it."""

from __future__ import annotations

from typing import Any

from .base import WorkerInfo
from .generic import GenericStore
from .generic_session import GenericWorkerSession


class InProcessSession(GenericWorkerSession):
    """The generic (ORM) worker session, on the caller's connection, narrowed to some jobs.

    Every query of the generic session starts from ``_jobs()``; narrowing it makes the claim
    take only the jobs eager mode just created, and skip the jobs this call already tried.
    """

    def __init__(self, alias: str, worker: WorkerInfo, only_ids: list[int] | None) -> None:
        super().__init__(GenericStore(alias), worker)
        self.only_ids = only_ids
        self.held_back: set[int] = set()

    def _jobs(self) -> Any:
        jobs = super()._jobs()
        if self.only_ids is not None:
            jobs = jobs.filter(id__in=self.only_ids)
        if self.held_back:
            jobs = jobs.exclude(id__in=self.held_back)
        return jobs
