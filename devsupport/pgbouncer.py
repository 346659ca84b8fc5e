"""A throwaway PgBouncer in front of a PostgreSQL server: its own configuration in a temporary
folder, on a free port of 127.0.0.1, every database of the server passed through.

The tests run workers through it in transaction pooling mode (tests/worker/test_pgbouncer.py):
task code and enqueues go through the pooler, the engine's own connections go to the server
directly (``TASKENGINE["DIRECT_DATABASE_URL"]``). PgBouncer refuses to run as root: as root it
runs as the ``postgres`` user.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

import psycopg

from .pgcluster import _free_port, _program


def _binary() -> str | None:
    return _program("pgbouncer", "/usr/sbin/pgbouncer")


class Bouncer:
    """``pgbouncer`` on a free port, in front of the server at ``host:port``."""

    def __init__(
        self, host: str, port: int, *, pool_mode: str = "transaction", pool_size: int = 2
    ) -> None:
        self.upstream = (host, port)
        self.port = _free_port()
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.root = tempfile.mkdtemp(prefix="taskengine-pgbouncer-")
        self.log = os.path.join(self.root, "pgbouncer.log")
        self._as_postgres = os.geteuid() == 0
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if _binary() is None:
            return "pgbouncer is not installed (Debian package pgbouncer)"
        if os.geteuid() == 0 and not shutil.which("runuser"):
            return "running as root without runuser to start pgbouncer as another user"
        return None

    def url(self, dbname: str, user: str = "postgres") -> str:
        return f"postgres://{user}@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout: float = 15.0) -> None:
        host, port = self.upstream
        config = os.path.join(self.root, "pgbouncer.ini")
        users = os.path.join(self.root, "users.txt")
        with open(users, "w") as out:
            out.write('"postgres" ""\n')
        with open(config, "w") as out:
            out.write(
                "[databases]\n"
                f"* = host={host} port={port}\n"
                "[pgbouncer]\n"
                "listen_addr = 127.0.0.1\n"
                f"listen_port = {self.port}\n"
                "unix_socket_dir =\n"
                "auth_type = trust\n"
                f"auth_file = {users}\n"
                f"pool_mode = {self.pool_mode}\n"
                f"default_pool_size = {self.pool_size}\n"
                "max_client_conn = 500\n"
                # Django's connection may send these at start; PgBouncer would refuse them.
                "ignore_startup_parameters = extra_float_digits,options\n"
                f"logfile = {self.log}\n"
            )
        command = [str(_binary()), config]
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            for path in (config, users):
                shutil.chown(path, "postgres", "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        self._proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pgbouncer did not start: {self.log_text()}") from None
                time.sleep(0.1)

    def log_text(self) -> str:
        try:
            with open(self.log) as log:
                return log.read()[-4000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            # The process group: runuser and the pgbouncer it started.
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
