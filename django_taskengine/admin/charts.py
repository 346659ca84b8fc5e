"""Charts drawn on the server as SVG: no script and no library, Django admin's look.

Colours come from CSS classes (``te-c-*`` in admin.css) that use Django admin's variables, and
lines and text use ``currentColor``, so Django's dark mode applies. Each chart is an image for
assistive technology (``role="img"`` with a ``<title>`` and a ``<desc>`` that sums it up), and
each time slot carries a ``<title>`` with its numbers, which browsers show on hover. Every text
is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

#: The drawing's size in SVG units; it scales to the width of its box.
WIDTH, HEIGHT = 360, 160
LEFT, RIGHT, TOP, BOTTOM = 46, 8, 10, 26
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

#: Ticks of the logarithmic axis of durations: (seconds, label).
DURATION_TICKS: tuple[tuple[float, str], ...] = (
    (0.001, "1 ms"),
    (0.01, "10 ms"),
    (0.1, "100 ms"),
    (1, "1 s"),
    (10, "10 s"),
    (60, "1 min"),
    (600, "10 min"),
    (3600, "1 h"),
    (36000, "10 h"),
)


@dataclass(frozen=True)
class Series:
    """One series of a chart: a value per time slot (None: nothing to show there)."""

    label: str
    #: The CSS class that colours it (``te-c-ok``, ``te-c-fail``…).
    css: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Axis:
    """The time axis: a hover label per slot, and the slots that get a tick label."""

    slots: Sequence[str]
    ticks: Sequence[tuple[int, str]]


def _parts(parts: Sequence[SafeString]) -> SafeString:
    # Every part was built by format_html (escaped): joining them keeps them safe.
    return mark_safe("".join(parts))  # noqa: S308


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at or above ``value`` (1 for nothing)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return float(step * power)
    return float(10 * power)


def format_number(value: float) -> str:
    """A count or a mean for a label: whole numbers without decimals."""
    if abs(value - round(value)) < 1e-9:
        return f"{int(round(value)):,}"
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def format_wait(seconds: float) -> str:
    """A wait for a label: 420 ms, 3.2 s, 4.5 min, 2.0 h."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class _Frame:
    """The plot area and the mapping of slots and values to SVG coordinates."""

    def __init__(self, slots: int, y_of: Callable[[float], float]) -> None:
        self.slots = max(1, slots)
        self.y_of = y_of

    def x(self, slot: float) -> float:
        """The left edge of ``slot`` (fractions allowed: 0.5 is the first slot's middle)."""
        return LEFT + slot * PLOT_W / self.slots

    @property
    def slot_w(self) -> float:
        return PLOT_W / self.slots

    def y(self, value: float) -> float:
        return TOP + PLOT_H * (1 - self.y_of(value))


def _svg(
    chart_id: str, title: str, summary: str, body: Sequence[SafeString], empty: bool
) -> SafeString:
    note = (
        format_html(
            '<text class="te-chart-empty" x="{}" y="{}" text-anchor="middle">No data yet</text>',
            LEFT + PLOT_W / 2,
            TOP + PLOT_H / 2,
        )
        if empty
        else SafeString("")
    )
    return format_html(
        '<svg class="te-chart-svg" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-t {}-d">'
        '<title id="{}-t">{}</title><desc id="{}-d">{}</desc>{}{}</svg>',
        WIDTH,
        HEIGHT,
        chart_id,
        chart_id,
        chart_id,
        title,
        chart_id,
        summary,
        _parts(body),
        note,
    )


def _time_axis(frame: _Frame, axis: Axis) -> list[SafeString]:
    parts = [
        format_html(
            '<line class="te-chart-axis" x1="{}" y1="{}" x2="{}" y2="{}"/>',
            LEFT,
            TOP + PLOT_H,
            LEFT + PLOT_W,
            TOP + PLOT_H,
        )
    ]
    for slot, label in axis.ticks:
        x = round(frame.x(slot + 0.5), 1)
        parts.append(
            format_html(
                '<line class="te-chart-axis" x1="{}" y1="{}" x2="{}" y2="{}"/>'
                '<text class="te-chart-label" x="{}" y="{}" text-anchor="middle">{}</text>',
                x,
                TOP + PLOT_H,
                x,
                TOP + PLOT_H + 3,
                x,
                HEIGHT - 8,
                label,
            )
        )
    return parts


def _value_axis(frame: _Frame, ticks: Sequence[tuple[float, str]], unit: str) -> list[SafeString]:
    parts = [
        format_html(
            '<text class="te-chart-label" x="4" y="{}" transform="rotate(-90 4 {})" '
            'text-anchor="middle" dominant-baseline="hanging">{}</text>',
            TOP + PLOT_H / 2,
            TOP + PLOT_H / 2,
            unit,
        )
    ]
    for value, label in ticks:
        y = round(frame.y(value), 1)
        parts.append(
            format_html(
                '<line class="te-chart-grid" x1="{}" y1="{}" x2="{}" y2="{}"/>'
                '<text class="te-chart-label" x="{}" y="{}" text-anchor="end" '
                'dominant-baseline="middle">{}</text>',
                LEFT,
                y,
                LEFT + PLOT_W,
                y,
                LEFT - 4,
                y,
                label,
            )
        )
    return parts


def _hover(
    frame: _Frame, axis: Axis, series: Sequence[Series], fmt: Callable[[float], str]
) -> list[SafeString]:
    """A transparent column per slot whose ``<title>`` tells its numbers."""
    parts = []
    for slot, when in enumerate(axis.slots):
        numbers = "; ".join(
            f"{item.label} {fmt(value) if value is not None else '—'}"
            for item in series
            for value in [item.values[slot] if slot < len(item.values) else None]
        )
        # Built by hand, not by format_html: a chart has a hundred of these, and only the
        # text needs escaping (the coordinates are numbers).
        parts.append(
            SafeString(
                f'<rect class="te-chart-hover" x="{frame.x(slot):.2f}" y="{TOP}" '
                f'width="{frame.slot_w:.2f}" height="{PLOT_H}">'
                f"<title>{escape(f'{when}: {numbers}')}</title></rect>"
            )
        )
    return parts


def bar_chart(
    chart_id: str, title: str, unit: str, axis: Axis, series: Sequence[Series], summary: str
) -> SafeString:
    """Stacked bars, one column per slot (the series drawn from the bottom up)."""
    totals = [
        sum(item.values[slot] or 0 for item in series if slot < len(item.values))
        for slot in range(len(axis.slots))
    ]
    top = nice_ceiling(max(totals, default=0))
    frame = _Frame(len(axis.slots), lambda value: value / top)
    body = _value_axis(
        frame, [(0, "0"), (top / 2, format_number(top / 2)), (top, format_number(top))], unit
    )
    width = max(frame.slot_w * 0.8, 0.5)
    classes = [escape(item.css) for item in series]
    for slot in range(len(axis.slots)):
        base = 0.0
        for item, css in zip(series, classes, strict=True):
            value = item.values[slot] if slot < len(item.values) else None
            if not value:
                continue
            y0, y1 = frame.y(base), frame.y(base + value)
            # By hand, as the hover columns: numbers and an escaped class only.
            body.append(
                SafeString(
                    f'<rect class="te-chart-bar {css}" x="{frame.x(slot) + frame.slot_w * 0.1:.2f}"'
                    f' y="{y1:.2f}" width="{width:.2f}" height="{max(y0 - y1, 0.5):.2f}"/>'
                )
            )
            base += value
    body += _time_axis(frame, axis)
    body += _hover(frame, axis, series, format_number)
    return _svg(chart_id, title, summary, body, empty=not any(totals))


def line_chart(
    chart_id: str,
    title: str,
    unit: str,
    axis: Axis,
    series: Sequence[Series],
    summary: str,
    *,
    durations: bool = False,
    area: bool = False,
) -> SafeString:
    """Lines, one point per slot; gaps where a value is None. ``durations``: a logarithmic
    axis of seconds (waits span milliseconds to hours); ``area``: the first series filled."""
    present = [v for item in series for v in item.values if v is not None]
    fmt: Callable[[float], str] = format_wait if durations else format_number
    if durations:
        low = min((v for v in present if v > 0), default=0.001)
        high = max(present, default=1.0)
        lo = 10 ** math.floor(math.log10(max(low, 0.001)))
        hi = max(10 ** math.ceil(math.log10(max(high, 0.001))), lo * 10)
        span = math.log10(hi) - math.log10(lo)

        def y_of(value: float) -> float:
            return (math.log10(min(max(value, lo), hi)) - math.log10(lo)) / span

        ticks = [(s, label) for s, label in DURATION_TICKS if lo <= s <= hi]
    else:
        top = nice_ceiling(max(present, default=0))

        def y_of(value: float) -> float:
            return value / top

        ticks = [(0, "0"), (top / 2, format_number(top / 2)), (top, format_number(top))]
    frame = _Frame(len(axis.slots), y_of)
    body = _value_axis(frame, ticks, unit)
    for index, item in enumerate(series):
        runs: list[list[tuple[float, float]]] = [[]]
        for slot, value in enumerate(item.values):
            if value is None:
                runs.append([])
            else:
                runs[-1].append((round(frame.x(slot + 0.5), 2), round(frame.y(value), 2)))
        for run in (r for r in runs if r):
            points = " ".join(f"{x},{y}" for x, y in run)
            if len(run) == 1:
                body.append(
                    format_html(
                        '<circle class="te-chart-point {}" cx="{}" cy="{}" r="2.5"/>',
                        item.css,
                        run[0][0],
                        run[0][1],
                    )
                )
                continue
            if area and index == 0:
                body.append(
                    format_html(
                        '<polygon class="te-chart-area {}" points="{},{} {} {},{}"/>',
                        item.css,
                        run[0][0],
                        TOP + PLOT_H,
                        points,
                        run[-1][0],
                        TOP + PLOT_H,
                    )
                )
            body.append(
                format_html('<polyline class="te-chart-line {}" points="{}"/>', item.css, points)
            )
    body += _time_axis(frame, axis)
    body += _hover(frame, axis, series, fmt)
    return _svg(chart_id, title, summary, body, empty=not present)
