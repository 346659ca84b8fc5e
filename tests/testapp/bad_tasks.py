"""Task code that misbehaves: transactions left open, BaseExceptions from the task body."""

from __future__ import annotations

import os

from django.db import connection, transaction

from django_taskengine import task

from .models import LedgerEntry


def _write(ctx, label: str) -> None:
    LedgerEntry.objects.create(job_id=ctx.job_id, attempt=ctx.attempt, label=label, pid=os.getpid())


@task(takes_context=True, max_attempts=3)
def leaves_atomic_open(ctx):
    transaction.atomic().__enter__()
    _write(ctx, "inside an atomic block never exited")


@task(takes_context=True, max_attempts=3)
def leaves_raw_begin_open(ctx):
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
    _write(ctx, "after a raw BEGIN never committed")


@task(takes_context=True, max_attempts=3)
def turns_autocommit_off(ctx):
    transaction.set_autocommit(False)
    _write(ctx, "with autocommit off, never committed")


@task(takes_context=True, atomic=True, max_attempts=3)
def atomic_leaves_inner_open(ctx):
    _write(ctx, "in the task's transaction")
    transaction.atomic().__enter__()
    _write(ctx, "in an inner block never exited")


@task(max_attempts=1)
def raises_system_exit(code=3):
    raise SystemExit(code)


@task(max_attempts=1)
def raises_keyboard_interrupt():
    raise KeyboardInterrupt
