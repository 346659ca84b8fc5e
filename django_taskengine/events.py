"""Events: ``send_event(name, payload)`` and what ``ctx.wait_for_event(name)`` reads.

An event is kept (table ``taskengine_event``, until retention's ``events`` age) and counts for
every job waiting for its name that was enqueued before it was sent: jobs parked on it are
made due at once (in the sender's transaction: nothing happens unless it commits), and a job
that asks later, within its wait, gets it at once. The models and the store are imported when
used: ``django_taskengine`` itself is importable before Django's apps are ready.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .conf import taskengine_settings
from .core.limits import EVENT_NAME_MAX, check_name
from .serialization import dump_event_payload


def send_event(name: str, payload: Any = None, *, using: str | None = None) -> int:
    """Send the event ``name`` with a JSON ``payload``; return its id.

    Runs in the caller's transaction (the database ``using``, by default the engine's): the
    event is sent, and the jobs waiting for it made due, only if that transaction commits.
    A bad name raises ``ValueError``; a payload that is not JSON, ``NotJSONError``.
    """
    from .store import get_store

    check_name(name, "send_event(name)", max_length=EVENT_NAME_MAX)
    payload_json = dump_event_payload(payload)
    return get_store(using or taskengine_settings.DATABASE).send_event(name, payload_json)


def first_event(name: str, job_id: int, until: float) -> tuple[bool, Any]:
    """Whether an event ``name`` counts for job ``job_id``'s wait that ends at ``until``
    (seconds since the epoch): the first one sent after the job was enqueued and no later than
    ``until``; and its payload."""
    from django.db.models import Subquery

    from .models import Event, Job

    alias = taskengine_settings.DATABASE
    enqueued = Job.objects.using(alias).filter(pk=job_id).values("created_at")[:1]
    found = (
        Event.objects.using(alias)
        .filter(
            name=name,
            sent_at__gte=Subquery(enqueued),
            sent_at__lte=dt.datetime.fromtimestamp(until, tz=dt.UTC),
        )
        .order_by("sent_at", "id")
        .values_list("id", "payload")
        .first()
    )
    return (False, None) if found is None else (True, found[1])
