"""Who owns a running job: the fields an attempt holds while it runs, and their released values.

A claim sets them; every write that ends an attempt (finish, rescue, shutdown) releases them
all at once. The SQL statements that do the same spell these columns out; this module is what
the ORM stores and the tests use.

An operator's pending stop request (``stop_requested``) is not among them: it belongs to the
job, not the attempt, and lasts until it is carried out — across a failed attempt, a worker's
death and a rescue. The write that ends an attempt sets it to what the outcome leaves
(:attr:`~.lifecycle.Outcome.stop_requested_after`), fenced on the request the outcome was
decided with.
"""

from __future__ import annotations

from typing import Any

#: The running attempt's ownership: worker process, fencing token, and lease (databases
#: without advisory locks).
OWNERSHIP_FIELDS = ("worker_id", "token", "lease_expires_at")

#: The values that release a job from its attempt.
RELEASED: dict[str, Any] = {
    "worker_id": None,
    "token": None,
    "lease_expires_at": None,
}
