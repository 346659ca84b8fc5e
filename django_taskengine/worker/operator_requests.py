"""An operator's requests to a worker process: drain, resume, stop, hard stop.

An operator writes the request on the worker's row (:mod:`django_taskengine.operations.workers`);
the process reads it back with each heartbeat (the heartbeat's own statement returns it, so it
costs no query more on PostgreSQL) and carries it out at once:

- ``drain``: claim nothing more; give back the jobs claimed but not started (reserved ones
  untouched, so other workers take them at once); let the running ones finish; then stay up,
  idle. Like Sidekiq's "quiet": the process keeps its place under ``run_workers`` (a supervisor
  would start a replacement for one that exited, which would claim again), and an operator can
  resume it. Removing the request (``resume``) lets it claim again.
- ``stop``: exactly what SIGTERM does (stop claiming; running jobs finish, or stop at a
  checkpoint, within the shutdown timeout), then exit with :data:`EXIT_STOPPED`, which tells the
  supervisor not to start a replacement.
- ``kill`` (hard stop): exit now; the running attempts end with the process and the rescue
  requeues their jobs, as for a worker that died (:meth:`.stopping.StopControl.hard_stop`). Not
  replaced either.
"""

from __future__ import annotations

import logging
import uuid

from ..store import WorkerSession
from .stopping import StopControl

logger = logging.getLogger("django_taskengine.worker")

#: Exit code of a worker process an operator stopped: its supervisor does not replace it.
EXIT_STOPPED = 4

DRAIN = "drain"
STOP = "stop"
KILL = "kill"


class OperatorRequests:
    """Carries out the request the last heartbeat brought back."""

    def __init__(self, stops: StopControl, worker_id: uuid.UUID) -> None:
        self.stops = stops
        self.worker_id = worker_id
        #: Claiming nothing: an operator asked this process to drain.
        self.draining = False
        #: An operator stopped this process (gracefully or not): exit with EXIT_STOPPED.
        self.stopped = False
        self._hard = False

    def apply(self, request: str, session: WorkerSession) -> None:
        """Act on ``request`` ("drain", "stop", "kill" or "" for none) if it is new."""
        if request == KILL and not self._hard:
            self._hard = self.stopped = True
            logger.warning(
                "worker %s: hard-stopped by an operator; exiting now, its running jobs (%s) "
                "to be requeued by the rescue",
                self.worker_id,
                len(self.stops.claimer.running),
            )
            self.stops.hard_stop()
        elif request == STOP and not self.stopped:
            self.stopped = True
            logger.warning(
                "worker %s: stopped by an operator; finishing its running jobs (up to %g s), "
                "then exiting",
                self.worker_id,
                self.stops.shutdown_timeout,
            )
            self.stops.request()
        elif request == DRAIN and not self.draining:
            self.draining = True
            self.stops.return_unstarted(session)
            logger.warning(
                "worker %s: draining at an operator's request: no new jobs; %s running",
                self.worker_id,
                len(self.stops.claimer.running),
            )
        elif request == "" and self.draining:
            self.draining = False
            logger.warning("worker %s: resumed by an operator: claiming again", self.worker_id)
