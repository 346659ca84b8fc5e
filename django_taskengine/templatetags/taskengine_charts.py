"""``{% queue_charts name %}``: a queue's charts on its admin page (``includes/charts.html``)."""

from __future__ import annotations

from typing import Any

from django import template

from ..admin.chart_data import charts_context

register = template.Library()


@register.inclusion_tag("admin/django_taskengine/includes/charts.html", takes_context=True)
def queue_charts(context: dict[str, Any], queue: str) -> dict[str, Any]:
    """The charts of ``queue`` for the period the page's ``?charts=`` names (the last hour by
    default)."""
    return charts_context(context["request"], queue=queue)
