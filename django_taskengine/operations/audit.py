"""The audit trail: every operator action that changed something, whoever asked and from where.

Each operation calls :meth:`Actor.record` inside the transaction of its change, so an entry
exists if and only if the change committed. An action that is refused, or that finds nothing
to change (resuming what is not paused), writes nothing: the operator was told at once, the
engine is as it was, and a trail of non-events would bury the changes an operator looks for (a
script retrying a refused action every minute would write one entry a minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..audit_trail import AuditEntry, AuditObject, AuditSource
from ..core.limits import ACTOR_MAX

#: Latest entries shown on a queue's, job's or schedule's admin page.
PAGE_ENTRIES = 10


@dataclass(frozen=True)
class Actor:
    """Who asks for an operator action, why, and from where; checked before anything changes."""

    by: str = ""
    source: str = AuditSource.PYTHON
    reason: str = ""

    def __post_init__(self) -> None:
        if self.source not in AuditSource.values:
            raise ValueError(
                f"source must be one of {', '.join(AuditSource.values)}, not {self.source!r}"
            )
        if not isinstance(self.by, str) or len(self.by) > ACTOR_MAX:
            raise ValueError(f"by is a name of at most {ACTOR_MAX} characters, not {self.by!r}")
        if not isinstance(self.reason, str):
            raise ValueError(f"reason is text, not {self.reason!r}")

    def record(
        self,
        action: str,
        kind: str,
        target: object = "",
        *,
        detail: dict[str, Any] | None = None,
        using: str,
    ) -> AuditEntry:
        """Write one entry; call it inside the transaction of the change it records."""
        return AuditEntry.objects.using(using).create(
            action=action,
            object_kind=kind,
            object_id="" if kind == AuditObject.ENGINE else str(target),
            actor=self.by,
            source=self.source,
            reason=self.reason,
            detail=detail or {},
        )


def audit_entries(
    kind: str | None = None,
    target: object = None,
    *,
    limit: int = 50,
    using: str,
) -> list[AuditEntry]:
    """The latest entries, newest first: all of them, or those of one object."""
    entries = AuditEntry.objects.using(using).order_by("-at", "-id")
    if kind is not None:
        entries = entries.filter(object_kind=kind)
        if target is not None:
            entries = entries.filter(object_id=str(target))
    return list(entries[:limit])
