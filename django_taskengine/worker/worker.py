"""The import path the supervisor, ``run_workers`` and earlier code use for a worker process;
the parts live in :mod:`.process` and its siblings, the outcome report in :mod:`.report`."""

from __future__ import annotations

from .process import EXIT_RECYCLE, WorkerProcess
from .report import report_outcome

__all__ = ["EXIT_RECYCLE", "WorkerProcess", "report_outcome"]
