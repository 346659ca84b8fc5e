"""The ``manage.py taskengine`` command, one module per group of subcommands.

The management command (:mod:`django_taskengine.management.commands.taskengine`) parses the
command line with :mod:`.arguments` and hands each subcommand to its handler here; a handler
checks the values (:mod:`.values`), calls :mod:`django_taskengine.operations` to change
anything and :mod:`django_taskengine.inspection` to read, and writes the report
(:mod:`.report`). Handlers take the command (for its output streams and styles), the database
alias and the parsed options.

- :mod:`.status`: ``status`` and ``why``.
- :mod:`.pauses`: ``pause`` and ``resume``.
- :mod:`.limits`: ``limit``, and the limits section of ``status``.
- :mod:`.jobs`: ``retry``, ``cancel``, ``pause-job``, ``resume-job``, ``run-now``.
- :mod:`.prune`: ``prune``.
- :mod:`.health`: ``health``, the probe for this host's workers.
- :mod:`.audit`: ``audit``.
- :mod:`.workflows`: ``workflow``.
- :mod:`.workers`: ``worker drain|resume|stop|kill``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand

from .audit import audit
from .health import health
from .jobs import JOB_SUBCOMMANDS, job_action
from .limits import limit
from .pauses import pause, resume
from .prune import prune
from .status import status, why
from .workers import worker
from .workflows import workflow

Handler = Callable[[BaseCommand, str, dict[str, Any]], None]

#: Subcommand -> its handler.
HANDLERS: dict[str, Handler] = {
    "status": status,
    "pause": pause,
    "resume": resume,
    "limit": limit,
    "why": why,
    "prune": prune,
    "health": health,
    "audit": audit,
    "workflow": workflow,
    "worker": worker,
    **dict.fromkeys(JOB_SUBCOMMANDS, job_action),
}

#: Subcommands that only read: a database failure during them changed nothing.
READ_ONLY = ("status", "why", "audit", "health")
