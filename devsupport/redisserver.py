"""A throwaway Redis server: ``redis-server`` on a free port of 127.0.0.1, in a temporary folder.

The fault tests kill it (SIGKILL) and start it again on the same port. It keeps nothing on disk
(``--save ''``, ``--appendonly no``): a restarted server is empty, as one without persistence
is after a crash. The machine's own Redis is never touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import TYPE_CHECKING

from .pgcluster import _free_port, _program

if TYPE_CHECKING:
    import redis


def _binary() -> str | None:
    return _program("redis-server", "/usr/bin/redis-server")


class RedisServer:
    """``redis-server`` on a free port, without persistence; :meth:`kill` it, :meth:`restart`
    it on the same port (empty), :meth:`stop` it for good (its folder removed)."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.root = tempfile.mkdtemp(prefix="taskengine-redis-")
        self.log = os.path.join(self.root, "redis.log")
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import redis  # noqa: F401
        except ImportError:
            return "the redis package is not installed (pip install 'django-taskengine[redis]')"
        if _binary() is None:
            return "redis-server is not installed (Debian package redis-server)"
        return None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A client of the server (replies decoded), for the tests' own reads and faults."""
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def start(self, timeout: float = 15.0) -> None:
        import redis

        command = [
            str(_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.root,
            "--logfile",
            self.log,
            "--protected-mode",
            "no",
        ]
        self._proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        probe = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.RedisError:
                    pass
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server did not start: {self.log_text()}")
                time.sleep(0.05)
        finally:
            probe.close()

    def kill(self) -> None:
        """SIGKILL: the server ends at once, its data with it."""
        if self._proc is not None and self._proc.poll() is None:
            os.kill(self._proc.pid, signal.SIGKILL)
            self._proc.wait(timeout=10)

    def restart(self) -> None:
        """Kill the server (if it runs) and start an empty one on the same port."""
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            with open(self.log) as log:
                return log.read()[-4000:]
        except OSError:
            return "(no log)"
