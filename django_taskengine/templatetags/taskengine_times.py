"""``{{ moment|te_exact_time }}``: a time as every page of the admin shows it (to the second,
with the zone's name, and how long ago beside it)."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils.safestring import SafeString

from ..admin.common import exact_time

register = template.Library()


@register.filter
def te_exact_time(moment: dt.datetime | None) -> SafeString | str:
    return exact_time(moment)
