"""A throwaway PostgreSQL cluster: ``initdb`` in a temporary folder, ``pg_ctl`` on a free port.

The tests use it to restart a server safely (``fsync`` off: its data is thrown away); the
benchmarks use it so that their figures do not depend on how the machine's own server is
configured (``benchmarks/cluster.py`` passes production-like settings).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping

import psycopg

#: What a cluster whose data is thrown away needs: no waiting for the disk.
THROWAWAY_SETTINGS: dict[str, str] = {"fsync": "off"}


def _bindir() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if candidates:
        return os.path.dirname(candidates[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _program(name: str, debian_path: str) -> str | None:
    """A server program the tests start: on the PATH, or where its Debian package puts it
    (``/usr/sbin`` is not on every user's PATH)."""
    found = shutil.which(name)
    if found is None and os.access(debian_path, os.X_OK):
        found = debian_path
    return found


class PrivateCluster:
    """``initdb`` + ``pg_ctl`` in a temporary folder, on a free port of 127.0.0.1.

    ``settings`` (server parameters, ``name -> value``) are written to the cluster's
    ``postgresql.conf`` by :meth:`init`; the default is :data:`THROWAWAY_SETTINGS`.
    """

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        self.bindir = _bindir()
        self.port = _free_port()
        self.root = tempfile.mkdtemp(prefix="taskengine-pg-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self.settings = dict(THROWAWAY_SETTINGS if settings is None else settings)
        self._as_postgres = os.geteuid() == 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if _bindir() is None:
            return "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
        if os.geteuid() == 0 and not shutil.which("runuser"):
            return "running as root without runuser to start PostgreSQL as another user"
        return None

    def _run(self, *args: str) -> None:
        command = list(args)
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(
            f"{self.bindir}/initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        if self.settings:
            # Appended: the last occurrence of a parameter in postgresql.conf wins.
            with open(os.path.join(self.data, "postgresql.conf"), "a") as conf:
                conf.write("\n# PrivateCluster settings\n")
                for name, value in self.settings.items():
                    conf.write(f"{name} = '{value}'\n")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(
            f"{self.bindir}/pg_ctl",
            action,
            "-D",
            self.data,
            "-l",
            self.log,
            "-w",
            "-o",
            options,
            *extra,
        )

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._pg_ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        deadline = time.monotonic() + 30
        while True:
            try:
                return psycopg.connect(
                    host="127.0.0.1",
                    port=self.port,
                    user="postgres",
                    dbname=dbname,
                    autocommit=True,
                )
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
