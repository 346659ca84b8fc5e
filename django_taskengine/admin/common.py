"""Pieces every page of the admin shares: POST-only operator views, the pause form, redirects
back to where the operator was, and short human-readable times."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, TypedDict

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString

from ..audit_trail import AuditSource

#: Path of the stylesheet every page of the admin loads (through ``ModelAdmin.Media``).
STYLESHEET = "django_taskengine/admin.css"
#: Path of the script every page of the admin loads: live refresh and the console's controls.
SCRIPT = "django_taskengine/console.js"

#: Choices of the pause duration select: value, label, length (None = until resumed).
PAUSE_DURATIONS: list[tuple[str, str, dt.timedelta | None]] = [
    ("", "until resumed", None),
    ("15m", "for 15 minutes", dt.timedelta(minutes=15)),
    ("1h", "for 1 hour", dt.timedelta(hours=1)),
    ("4h", "for 4 hours", dt.timedelta(hours=4)),
]
#: The same, as (value, label) for a select.
PAUSE_DURATION_CHOICES = [(value, label) for value, label, _ in PAUSE_DURATIONS]


def operator_view(
    permission: str | None,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Wrap a ModelAdmin method as a state-changing view: POST only (a GET is answered 405 and
    changes nothing) and refused with 403 unless the user holds ``permission`` (a codename of
    this app, e.g. ``"pause_queue"``). Login, staff status and CSRF come from
    ``AdminSite.admin_view``, which ``get_urls`` wraps around it."""

    def decorate(method: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(method)
        def view(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            if permission is not None and not has_app_permission(request, permission):
                raise PermissionDenied
            return method(self, request, *args, **kwargs)

        return view

    return decorate


def has_app_permission(request: HttpRequest, codename: str) -> bool:
    """Whether the user holds ``django_taskengine.<codename>``."""
    return bool(request.user.has_perm(f"django_taskengine.{codename}"))


def redirect_back(request: HttpRequest, fallback: str) -> HttpResponseRedirect:
    """Redirect to the ``next`` URL the form carried, if it points into this site; else to
    ``fallback``."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(fallback)


class Acting(TypedDict):
    """The ``by`` and ``source`` keyword arguments of every operation."""

    by: str
    source: str


def acting(request: HttpRequest) -> Acting:
    """Who acts, for the operations: the user's name (recorded as "paused by" and in the audit
    trail), from the admin."""
    return {"by": str(request.user.get_username()), "source": AuditSource.ADMIN}


class PauseForm(forms.Form):
    """Why and for how long: the optional fields of every pause (queue, task type, engine).
    An end time (``until``, from a datetime-local input) is read in the current time zone,
    which every form names beside the input (:func:`time_zone_name`)."""

    reason = forms.CharField(required=False, max_length=1000)
    duration = forms.ChoiceField(required=False, choices=PAUSE_DURATION_CHOICES)
    until = forms.DateTimeField(required=False)
    #: Queues and task types: also ask their running jobs to pause at their next checkpoint.
    stop_running = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        until = cleaned.get("until")
        if until is not None:
            if cleaned.get("duration"):
                raise forms.ValidationError("Choose a duration or an end time, not both.")
            if until <= timezone.now():
                raise forms.ValidationError(
                    f"The end time {exact_time_text(until)} has already passed (it is "
                    f"{exact_time_text(timezone.now())} now); choose a time in the future."
                )
        return cleaned

    def pause_until(self) -> dt.datetime | dt.timedelta | None:
        """The ``until`` argument for the pause operations (None: until resumed)."""
        if self.cleaned_data.get("until"):
            until: dt.datetime = self.cleaned_data["until"]
            return until
        lengths = {value: length for value, _, length in PAUSE_DURATIONS}
        return lengths[self.cleaned_data.get("duration") or ""]

    def error_text(self) -> str:
        """All errors as one sentence, for the messages framework."""
        parts: list[str] = []
        for field, errors in self.errors.items():
            label = "" if field == "__all__" else f"{field}: "
            parts.extend(f"{label}{error}" for error in errors)
        return "Nothing was paused. " + " ".join(parts)


def describe_pause(by: str, at: dt.datetime | None, reason: str, until: dt.datetime | None) -> str:
    """'by alice 10 min ago: "smtp outage"; until 14:05 (in 12 min)' — plain text, for log
    entries and messages (templates escape it)."""
    text = f"by {by}" if by else "by an unknown user"
    if at is not None:
        text += f" {format_age(timezone.now() - at)} ago"
    if reason:
        text += f': "{reason}"'
    if until is not None:
        text += "; " + describe_until(until)
    return text


def describe_until(until: dt.datetime) -> str:
    """'until 2024-05-01 14:05:00 UTC (in 12 min)', or 'ended at …' for a timed pause that is
    over."""
    moment = exact_time_text(until)
    remaining = until - timezone.now()
    if remaining <= dt.timedelta(0):
        return f"ended at {moment}"
    return f"until {moment} (in {format_age(remaining)})"


def format_age(delta: dt.timedelta | None) -> str:
    """A short duration: '42 s', '12 min', '3 h 5 min', '2 d 4 h'."""
    if delta is None:
        return "—"
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def relative_time(moment: dt.datetime, now: dt.datetime | None = None) -> str:
    """'3 min ago', 'in 12 s', or 'now' (within a second)."""
    delta = moment - (now or timezone.now())
    if abs(delta) < dt.timedelta(seconds=1):
        return "now"
    if delta > dt.timedelta(0):
        return f"in {format_age(delta)}"
    return f"{format_age(-delta)} ago"


def exact_time_text(moment: dt.datetime) -> str:
    """'2026-12-01 19:37:57 UTC': to the second, in the current time zone, named."""
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or timezone.get_current_timezone_name()}"


def exact_time(moment: dt.datetime | None, *, relative: bool = True) -> SafeString | str:
    """A moment as every page of the admin shows it: exact, with seconds and the zone's name,
    and how long ago (or how soon) beside it, inside a ``<time>`` element; '—' for None."""
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    if not relative:
        return format_html(
            '<time datetime="{}">{}</time>', local.isoformat(), exact_time_text(local)
        )
    return format_html(
        '<time datetime="{}">{}</time> <span class="te-relative">({})</span>',
        local.isoformat(),
        exact_time_text(local),
        relative_time(moment),
    )


def exact_time_column(name: str, description: str) -> Callable[[Any, Any], SafeString | str]:
    """A ModelAdmin display method that shows the datetime field ``name`` as
    :func:`exact_time` does (Django's default shows it to the minute, without the zone)."""

    @admin.display(description=description, ordering=name)
    def show(model_admin: Any, obj: Any) -> SafeString | str:
        return exact_time(getattr(obj, name))

    return show


def time_zone_name() -> str:
    """The zone times are entered in ('Europe/Paris'), for the label of every time input."""
    return timezone.get_current_timezone_name()


def format_seconds(seconds: float | None) -> str:
    """A run time: '0.25 s', '42.0 s', '3 min 5 s', '2 h 1 min'."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """An admin whose rows change only through :mod:`django_taskengine.operations` (or the
    workers), never through a form: no add, change or delete unless a subclass allows it."""

    class Media:
        css = {"all": [STYLESHEET]}
        js = [SCRIPT]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        # The page's own context, from the object Django already loaded and checked access to.
        if obj is not None:
            context = {**self._page_context(request, obj), **context}
        return super().render_change_form(
            request, context, add=add, change=change, form_url=form_url, obj=obj
        )

    def _page_context(self, request: HttpRequest, obj: Any) -> dict[str, Any]:
        """What an object's page shows besides its fields (state, buttons, links)."""
        return {}

    def _url(self, name: str, key: Any = None) -> str:
        """This admin's URL ``name`` ("changelist", "change", "pause"…), for the row ``key``
        when the URL takes one."""
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_{name}",
            args=[] if key is None else [quote(key)],
        )
