"""Settings for the test suite. ``TASKENGINE_TEST_DB`` picks the database: ``postgres`` (the
default; ``DATABASE_URL`` names the server) or ``sqlite``; ``TASKENGINE_TEST_DISPATCH`` the dispatch
backend (``redis-streams``; PostgreSQL's by default). Worker processes started by the tests
use these settings too, with ``TASKENGINE_TEST_DB_NAME`` naming the test database."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import dj_database_url

#: Test databases are named per checkout, so two checkouts can run the suite at the same time
#: without sharing a database (``TASKENGINE_TEST_NAME`` overrides the name).
CHECKOUT = hashlib.sha1(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:8]
TEST_NAME = os.environ.get("TASKENGINE_TEST_NAME") or f"test_taskengine_{CHECKOUT}"

BACKEND = os.environ.get("TASKENGINE_TEST_DB", "postgres")
# Worker subprocesses connect to the test database the pytest process created.
TEST_DB_NAME = os.environ.get("TASKENGINE_TEST_DB_NAME")

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if BACKEND == "sqlite":
    sqlite_dir = Path(os.environ.get("TASKENGINE_SQLITE_DIR", tempfile.gettempdir()))
    sqlite_path = str(sqlite_dir / f"{TEST_NAME}.sqlite3")
    # The test tasks include atomic ones without a timeout; the tests that run them wait for
    # SQLite's write lock on purpose (its busy timeout is 30 s below).
    SILENCED_SYSTEM_CHECKS = ["taskengine.W002"]
    DATABASES: dict[str, dj_database_url.DBConfig] = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": TEST_DB_NAME or sqlite_path,
            "OPTIONS": {
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
            },
            # A file, not memory: worker processes must see the same database.
            "TEST": {"NAME": sqlite_path},
        }
    }
else:
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
        )
    }
    DATABASES["default"]["TEST"] = {"NAME": TEST_NAME}
    if TEST_DB_NAME:
        DATABASES["default"]["NAME"] = TEST_DB_NAME
    if os.environ.get("TASKENGINE_TEST_POOLED"):
        # DATABASE_URL is a transaction-mode pooler (tests/worker/test_pgbouncer.py): a server
        # cursor would not outlive its transaction's server connection.
        DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_taskengine",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# Django's Tasks framework (Django ≥ 6.0, or the django-tasks backport) enqueues into the job
# table: tests/test_backend.py.
TASKS = {
    "default": {
        "BACKEND": "django_taskengine.backends.TaskEngineBackend",
        "QUEUES": ["default", "emails"],
    }
}

# Short intervals so crash-recovery tests finish in seconds.
TASKENGINE: dict[str, Any] = {
    "POLL_INTERVAL": 0.2,
    "HEARTBEAT_INTERVAL": 0.25,
    "RESCUE_GRACE": 1.5,
    "RESCUE_INTERVAL": 0.25,
    "LEASE_SECONDS": 2.0,
    "SHUTDOWN_TIMEOUT": 10.0,
}
# The suite runs under Redis Streams dispatch too (a CI leg): TASKENGINE_TEST_DISPATCH. On
# PostgreSQL only: Redis dispatch relays from it (check E030 refuses it on SQLite, on which
# `./dev test` runs its pre-test checks).
if os.environ.get("TASKENGINE_TEST_DISPATCH") == "redis-streams" and BACKEND != "sqlite":
    TASKENGINE["DISPATCH"] = {
        "BACKEND": "redis-streams",
        "URL": os.environ.get("TASKENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    }
# Worker processes started by a test may get other values (JSON in this variable).
TASKENGINE.update(json.loads(os.environ.get("TASKENGINE_TEST_OVERRIDES", "{}")))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {"django_taskengine": {"handlers": ["console"], "level": "INFO"}},
}
