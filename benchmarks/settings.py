"""Django settings for the benchmarks: PostgreSQL from ``DATABASE_URL`` (default
``postgres://postgres@127.0.0.1:5432/taskengine_bench``), the engine's default ``TASKENGINE``
settings (what users get), and django_taskengine's logging at WARNING so the per-job INFO line
costs nothing. ``TASKENGINE_BENCH_RETENTION`` (an age, e.g. ``1m``) sets how long succeeded
jobs are kept: the soak (benchmarks/soak.py) sets it, for itself and its workers."""

from __future__ import annotations

import json
import os

import dj_database_url

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/taskengine_bench"

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS: list[str] = []
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {"default": dj_database_url.parse(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))}

INSTALLED_APPS = [
    "django_taskengine",
    "benchmarks.benchapp",
]

# The defaults: no TASKENGINE overrides, so every figure is what a user gets out of the box.
TASKENGINE: dict[str, object] = {}
if os.environ.get("TASKENGINE_BENCH_RETENTION"):
    TASKENGINE["RETENTION"] = {"succeeded": os.environ["TASKENGINE_BENCH_RETENTION"]}
if os.environ.get("TASKENGINE_BENCH_CONN_MAX_AGE"):
    # Persistent connections for task code (benchmarks/pooler.py): Django's default (0) opens
    # one per job that uses the database.
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["TASKENGINE_BENCH_CONN_MAX_AGE"])
if os.environ.get("TASKENGINE_BENCH_DIRECT_URL"):
    # DATABASE_URL is a transaction-mode pooler (benchmarks/pooler.py): the engine's own
    # connections go to the server directly.
    TASKENGINE["DIRECT_DATABASE_URL"] = os.environ["TASKENGINE_BENCH_DIRECT_URL"]
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True

if os.environ.get("TASKENGINE_BENCH_DISPATCH"):
    # The dispatch backend as JSON (benchmarks/dispatch.py: Redis Streams, with a key prefix of
    # the run's own).
    TASKENGINE["DISPATCH"] = json.loads(os.environ["TASKENGINE_BENCH_DISPATCH"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_taskengine": {"handlers": ["console"], "level": "WARNING", "propagate": False}
    },
}
