"""Who owns a running job: the fields an attempt holds while it runs, and their released values.

A claim sets them; every write that ends an attempt (finish, rescue, shutdown) releases them
all at once. The SQL statements that do the same spell these columns out; this module is what
the ORM stores and the tests use.
"""

from __future__ import annotations

from typing import Any

#: The running attempt's ownership: worker process, fencing token, lease (databases without
#: advisory locks), and an operator's pending stop request for that attempt.
OWNERSHIP_FIELDS = ("worker_id", "token", "lease_expires_at", "stop_requested")

#: The values that release a job from its attempt.
RELEASED: dict[str, Any] = {
    "worker_id": None,
    "token": None,
    "lease_expires_at": None,
    "stop_requested": "",
}
