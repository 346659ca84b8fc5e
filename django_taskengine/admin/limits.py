"""A queue's fleet-wide limits in the admin: the "Limits" column of the queue list, the limits
panel of the queue's page, and its form that sets them at runtime (a POST, for users holding
``limit_queue``), through :func:`django_taskengine.operations.set_queue_limits`.

The form sends each knob as the operator wants it (a value, blank for no limit, or "use the
setting") with the value the page showed: only the knobs the operator changed are set, so a
form submitted after someone else changed the other knob does not undo that change.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.formats import localize

from .. import operations
from ..conf import taskengine_settings
from ..core.flow import check_concurrency, parse_rate
from ..flow_report import in_force, knobs_text, usage_text
from ..flow_status import ScopeUsage
from ..models import Queue
from .common import acting, format_age, has_app_permission, operator_view, redirect_back

LIMIT_PERMISSION = "limit_queue"
#: What a knob's field sends for "use the setting" (and what the page showed for it).
USE_SETTING = "setting"
#: The form's knobs: (field name, label, what to type).
KNOB_FIELDS = (
    ("concurrency", "Concurrency", "jobs running at once, e.g. 5"),
    ("rate_limit", "Rate", "starts, e.g. 14/s, 100/m, 5000/h"),
)


def _db() -> str:
    return taskengine_settings.DATABASE


def limits_cell(scope: ScopeUsage | None) -> str:
    """The queue list's "Limits" cell: the limits in force with what they count, or "—"."""
    return usage_text(scope) if scope is not None else "—"


def _shown(queue: Queue, knob: str) -> str:
    """A knob as the form shows it: its runtime value ("" for no limit), or "setting"."""
    if knob not in queue.runtime_limits:
        return USE_SETTING
    value = queue.runtime_limits[knob]
    return "" if value is None else str(value)


def _setting(queue: Queue, knob: str) -> str:
    value = queue.settings_limits.get(knob)
    return "no limit" if value is None or value == "" else str(value)


def limits_context(
    request: HttpRequest, queue: Queue, scope: ScopeUsage | None, url: str
) -> dict[str, Any]:
    """What the queue's page shows of its limits, and its form's fields."""
    changed = ""
    if queue.limits_changed_at is not None:
        by = f"by {queue.limits_changed_by} " if queue.limits_changed_by else ""
        moment = localize(timezone.localtime(queue.limits_changed_at))
        changed = f"{by}{format_age(timezone.now() - queue.limits_changed_at)} ago ({moment})"
    fields = []
    for knob, label, hint in KNOB_FIELDS:
        shown = _shown(queue, knob)
        fields.append(
            {
                "name": knob,
                "label": label,
                "hint": hint,
                "value": "" if shown == USE_SETTING else shown,
                "use_setting": shown == USE_SETTING,
                "shown": shown,
                "setting": _setting(queue, knob),
            }
        )
    return {
        "te_limits": {
            "in_force": in_force(queue).describe(),
            "settings": knobs_text(queue.settings_limits),
            "runtime": knobs_text(queue.runtime_limits),
            "changed": changed,
            "usage": usage_text(scope) if scope is not None else "",
        },
        "te_can_limit": has_app_permission(request, LIMIT_PERMISSION),
        "te_limit_url": url,
        "te_limit_fields": fields,
    }


class QueueLimitsForm(forms.Form):
    """Each knob: a value (blank: no limit) or "use the setting", and what the page showed."""

    concurrency = forms.CharField(required=False, max_length=12)
    concurrency_setting = forms.BooleanField(required=False)
    concurrency_shown = forms.CharField(required=False)
    rate_limit = forms.CharField(required=False, max_length=32)
    rate_limit_setting = forms.BooleanField(required=False)
    rate_limit_shown = forms.CharField(required=False)
    reason = forms.CharField(required=False, max_length=1000)

    def clean_concurrency(self) -> int | None:
        text = self.cleaned_data["concurrency"].strip().lower()
        if text in ("", "none"):
            return None
        try:
            return check_concurrency(int(text))
        except ValueError:
            raise forms.ValidationError(
                f"{text!r} is not a number of jobs: give a whole number, at least 1 (blank: "
                "no limit)."
            ) from None

    def clean_rate_limit(self) -> str | None:
        try:
            rate = parse_rate(self.cleaned_data["rate_limit"].strip(), "the rate")
        except ValueError as exc:
            raise forms.ValidationError(f"{exc} (blank: no limit).") from None
        return None if rate is None else str(rate)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for knob, label, _ in KNOB_FIELDS:
            value = cleaned.get(knob)
            typed = "" if value is None else str(value)
            # The page leaves the value of a knob on its setting blank: a value typed there
            # with "use the setting" still ticked is a slip, not a choice.
            if cleaned.get(f"{knob}_setting") and typed not in ("", self._shown(knob)):
                raise forms.ValidationError(
                    f"{label}: give a value or tick “use the setting”, not both."
                )
        return cleaned

    def _shown(self, knob: str) -> str:
        return str(self.cleaned_data.get(f"{knob}_shown") or "").strip()

    def changes(self) -> dict[str, Any]:
        """The knobs to set (``operations.SETTING``, None or a value): those the operator
        changed from what the page showed."""
        changes: dict[str, Any] = {}
        for knob, _, _ in KNOB_FIELDS:
            if self.cleaned_data[f"{knob}_setting"]:
                wanted, value = USE_SETTING, operations.SETTING
            else:
                value = self.cleaned_data[knob]
                wanted = "" if value is None else str(value)
            if wanted != self._shown(knob):
                changes[knob] = value
        return changes

    def error_text(self) -> str:
        """All errors as one sentence, for the messages framework."""
        parts = [
            str(error) if field == "__all__" else f"{field}: {error}"
            for field, errors in self.errors.items()
            for error in errors
        ]
        return "Nothing was changed. " + " ".join(parts)


class QueueLimitViews:
    """The queue page's "Set limits" view (a ModelAdmin mixin: it uses ``message_user``,
    ``log_change`` and ``_url``)."""

    message_user: Any
    log_change: Any
    _url: Any

    @operator_view(LIMIT_PERMISSION)
    def limit_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST: set one queue's concurrency and rate limits at runtime."""
        name = unquote(object_id)
        back = redirect_back(request, self._url("changelist"))
        queue = Queue.objects.using(_db()).filter(name=name).first()
        if queue is None:
            self.message_user(request, f"No queue named “{name}”; nothing changed.", messages.ERROR)
            return back
        form = QueueLimitsForm(request.POST)
        if not form.is_valid():
            self.message_user(request, form.error_text(), messages.ERROR)
            return back
        changes = form.changes()
        if not changes:
            self.message_user(
                request,
                f"The limits of queue “{name}” were left as they were: no value changed.",
                messages.WARNING,
            )
            return back
        queue = operations.set_queue_limits(
            name, **changes, **acting(request), reason=form.cleaned_data["reason"], using=_db()
        )
        runtime = knobs_text(queue.runtime_limits)
        limits = in_force(queue).describe()
        self.log_change(
            request, queue, f"Set the limits of queue {name}: {limits} (runtime values: {runtime})."
        )
        self.message_user(
            request,
            f"Limits of queue “{name}” now: {limits}. Every worker applies them from its next "
            "claim.",
            messages.SUCCESS,
        )
        return back
