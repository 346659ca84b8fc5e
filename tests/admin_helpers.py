"""Shared by the admin tests: staff users with chosen permissions, URLs, and messages."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

#: The custom permissions of django_taskengine.
OPERATOR_PERMISSIONS = ("pause_queue", "limit_queue", "pause_job", "retry_job", "cancel_job")


def staff_client(*codenames: str, username: str = "operator") -> Client:
    """A logged-in client for a staff user (not a superuser) holding only ``codenames`` of
    django_taskengine."""
    user = User.objects.create_user(username=username, password="unused", is_staff=True)
    permissions = list(
        Permission.objects.filter(
            content_type__app_label="django_taskengine", codename__in=codenames
        )
    )
    assert {p.codename for p in permissions} == set(codenames), "unknown permission codename"
    user.user_permissions.add(*permissions)
    client = Client()
    client.force_login(user)
    return client


def admin_url(name: str, *args: Any, query: str = "") -> str:
    """``admin_url("queue_pause", "emails")`` -> /admin/django_taskengine/queue/emails/pause/."""
    from django.contrib.admin.utils import quote

    url = reverse(f"admin:django_taskengine_{name}", args=[quote(a) for a in args])
    return f"{url}?{query}" if query else url


def messages_of(response: Any) -> list[str]:
    """The messages shown on a page reached with ``follow=True``."""
    return [str(message) for message in response.context["messages"]]


def content(response: Any) -> str:
    return str(response.content.decode())
