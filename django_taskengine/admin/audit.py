"""The audit trail in the admin: a read-only list of every operator action (admin, command line,
Python), and the latest entries of one queue, job or schedule for that object's page.

Entries are written only by :mod:`django_taskengine.operations`; here they can be viewed (the
``view_auditentry`` permission), never added, changed or deleted.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from ..audit_trail import AuditEntry, AuditObject
from ..conf import taskengine_settings
from ..operations import audit_entries
from ..operations.audit import PAGE_ENTRIES
from .common import ReadOnlyModelAdmin, exact_time_column
from .job_list import job_change_url


def _db() -> str:
    return taskengine_settings.DATABASE


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyModelAdmin):
    list_display = ("at_label", "actor", "source", "action", "object_link", "detail_text", "reason")
    list_filter = ("action", "source", "object_kind")
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("actor", "object_id", "reason")
    list_per_page = 100
    fields = (
        "at_label",
        "actor",
        "source",
        "action",
        "object_kind",
        "object_id",
        "reason",
        "detail_text",
    )
    readonly_fields = fields
    at_label = exact_time_column("at", "at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEntry]:
        return super().get_queryset(request).using(_db())

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # An object's page links to its own entries: ?object_kind__exact=…&object_id__exact=…
        return lookup == "object_id__exact" or super().lookup_allowed(lookup, value, request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return super().changelist_view(
            request, {"title": "Audit trail of operator actions", **(extra_context or {})}
        )

    @admin.display(description="object")
    def object_link(self, entry: AuditEntry) -> SafeString | str:
        if entry.object_kind == AuditObject.JOB and entry.object_id.isdigit():
            url = job_change_url(self.admin_site.name, int(entry.object_id))
            return format_html('<a href="{}">{}</a>', url, entry.object_label)
        return entry.object_label

    @admin.display(description="detail")
    def detail_text(self, entry: AuditEntry) -> str:
        return ", ".join(f"{key}: {value}" for key, value in sorted(entry.detail.items()))


def object_entries(
    request: HttpRequest, kind: str, target: object, site_name: str = "admin"
) -> dict[str, Any]:
    """The page context of an object's latest audit entries: ``te_audit`` (None when the user
    may not view the audit trail) and ``te_audit_url``, the full list filtered to the object."""
    if not request.user.has_perm("django_taskengine.view_auditentry"):
        return {"te_audit": None}
    url = reverse(f"{site_name}:django_taskengine_auditentry_changelist")
    query = urlencode({"object_kind__exact": kind, "object_id__exact": str(target)})
    return {
        "te_audit": audit_entries(kind, target, limit=PAGE_ENTRIES, using=_db()),
        "te_audit_url": f"{url}?{query}",
    }
