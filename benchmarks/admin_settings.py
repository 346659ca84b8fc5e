"""Django settings for the admin page timings (benchmarks/admin_pages.py): the benchmarks'
settings (benchmarks/settings.py: PostgreSQL from ``DATABASE_URL``, the engine's defaults,
``DEBUG`` off) plus what Django's admin needs, as a project that mounts it has."""

from __future__ import annotations

from benchmarks.settings import *  # noqa: F403 - the same database, engine and logging settings
from benchmarks.settings import INSTALLED_APPS as BENCH_APPS

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    *BENCH_APPS,
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
ROOT_URLCONF = "benchmarks.admin_urls"
STATIC_URL = "/static/"
ALLOWED_HOSTS = ["testserver"]
