"""A workflow drawn as a graph, server-rendered SVG: each step a box coloured by its status and
linked to its job, each dependency an arrow, columns by depth (a step is one column right of
the deepest step it waits for). A column with more steps than fit is drawn as one box that
counts them by status, so a fan-out of thousands stays one readable picture. Every text is
escaped (``format_html``); nothing is loaded from elsewhere."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..inspection import StepNode, count_text
from .job_list import job_change_url

#: Boxes drawn one by one in a column; more are drawn as one box that counts them.
MOST_PER_COLUMN = 12
BOX_WIDTH, BOX_HEIGHT = 180, 38
COLUMN_GAP, ROW_GAP, MARGIN = 60, 14, 10
#: Characters of a line shown in a box (the whole text is its tooltip).
TEXT_SHOWN = 28

_STYLE = (
    ".te-node rect{stroke:#777;stroke-width:1;rx:4}"
    ".te-node text{font-size:11px;fill:#222}"
    ".te-node-current rect{stroke:#000;stroke-width:3}"
    ".te-edge{stroke:#999;fill:none;marker-end:url(#te-arrow)}"
    ".te-fill-queued rect{fill:#eef2f7}.te-fill-waiting rect{fill:#f6f6f6}"
    ".te-fill-running rect{fill:#cfe3fb}.te-fill-paused rect{fill:#f7e7b4}"
    ".te-fill-succeeded rect{fill:#cdebc5}.te-fill-failed rect{fill:#f5c2c0}"
    ".te-fill-cancelled rect{fill:#dddddd}.te-fill-many rect{fill:#ffffff}"
)


@dataclass(eq=False)
class Box:
    """One box of the picture: a step, or a column's steps counted."""

    column: int
    row: int
    steps: list[StepNode] = field(default_factory=list)

    @property
    def x(self) -> int:
        return MARGIN + self.column * (BOX_WIDTH + COLUMN_GAP)

    @property
    def y(self) -> int:
        return MARGIN + self.row * (BOX_HEIGHT + ROW_GAP)


def state(node: StepNode) -> str:
    """A step's state as the picture colours it ("waiting": queued for its dependencies)."""
    return "waiting" if node.job.blocked and node.job.status == "queued" else node.job.status


def layout(nodes: list[StepNode]) -> tuple[list[Box], list[tuple[Box, Box]]]:
    """The boxes and the arrows between them."""
    names = {node.job.step: node for node in nodes if node.job.step}
    depth: dict[int, int] = {}
    # Kahn's order over the edges inside the workflow (a cycle cannot be enqueued).
    waits = {n.job.pk: [names[a] for a in n.after if a in names] for n in nodes}
    waited_by: dict[int, list[StepNode]] = {n.job.pk: [] for n in nodes}
    for node in nodes:
        for other in waits[node.job.pk]:
            waited_by[other.job.pk].append(node)
    left = {n.job.pk: len(waits[n.job.pk]) for n in nodes}
    ready = deque(n for n in nodes if not left[n.job.pk])
    while ready:
        node = ready.popleft()
        depth[node.job.pk] = max((depth[o.job.pk] + 1 for o in waits[node.job.pk]), default=0)
        for other in waited_by[node.job.pk]:
            left[other.job.pk] -= 1
            if not left[other.job.pk]:
                ready.append(other)
    columns: dict[int, list[StepNode]] = {}
    for node in nodes:
        columns.setdefault(depth.get(node.job.pk, 0), []).append(node)
    box_of: dict[int, Box] = {}
    boxes: list[Box] = []
    for column, members in sorted(columns.items()):
        if len(members) > MOST_PER_COLUMN:
            groups = [members]
        else:
            groups = [[member] for member in members]
        for row, group in enumerate(groups):
            box = Box(column, row, group)
            boxes.append(box)
            for member in group:
                box_of[member.job.pk] = box
    arrows = list(
        dict.fromkeys(
            (box_of[other.job.pk], box_of[node.job.pk])
            for node in nodes
            for other in waits[node.job.pk]
        )
    )
    return boxes, arrows


def render(nodes: list[StepNode], site_name: str, current: int | None = None) -> SafeString:
    """The workflow's picture as an inline ``<svg>``; ``current``: the job to outline."""
    if not nodes:
        return format_html("{}", "No steps.")
    boxes, arrows = layout(nodes)
    width = max(box.x for box in boxes) + BOX_WIDTH + MARGIN
    height = max(box.y for box in boxes) + BOX_HEIGHT + MARGIN
    edges = format_html_join(
        "",
        '<path class="te-edge" d="M{} {} C{} {} {} {} {} {}"/>',
        (
            (
                a.x + BOX_WIDTH,
                a.y + BOX_HEIGHT // 2,
                a.x + BOX_WIDTH + COLUMN_GAP // 2,
                a.y + BOX_HEIGHT // 2,
                b.x - COLUMN_GAP // 2,
                b.y + BOX_HEIGHT // 2,
                b.x - 4,
                b.y + BOX_HEIGHT // 2,
            )
            for a, b in arrows
        ),
    )
    drawn = SafeString("".join(_box(box, site_name, current) for box in boxes))
    return format_html(
        '<svg class="te-graph" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" '
        'viewBox="0 0 {} {}" role="img" aria-label="{}"><style>{}</style><defs>'
        '<marker id="te-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="8" '
        'markerHeight="8" orient="auto"><path d="M0 0 L8 4 L0 8 z" fill="#999"/></marker>'
        "</defs>{}{}</svg>",
        width,
        height,
        width,
        height,
        f"workflow graph: {len(nodes)} steps",
        SafeString(_STYLE),
        edges,
        drawn,
    )


def _box(box: Box, site_name: str, current: int | None) -> str:
    if len(box.steps) > 1:
        summary = count_text(Counter(state(node) for node in box.steps))
        face = _face(box, f"{len(box.steps)} steps", summary)
        return str(
            format_html(
                '<g class="te-node te-fill-many" data-steps="{}"><title>{}</title>{}</g>',
                len(box.steps),
                summary,
                face,
            )
        )
    (node,) = box.steps
    label = node.job.step or str(node.job.pk)
    outline = " te-node-current" if node.job.pk == current else ""
    return str(
        format_html(
            '<a href="{}" data-step="{}"><g class="te-node te-fill-{}{}">'
            "<title>{} (job {}): {}</title>{}</g></a>",
            job_change_url(site_name, node.job.pk),
            label,
            state(node),
            outline,
            label,
            node.job.pk,
            state(node),
            _face(box, label, state(node)),
        )
    )


def _face(box: Box, first: str, second: str) -> SafeString:
    """A box's rectangle and its two lines of text, each cut to fit (the tooltip has all)."""
    return format_html(
        '<rect x="{}" y="{}" width="{}" height="{}"/>'
        '<text x="{}" y="{}">{}</text><text x="{}" y="{}">{}</text>',
        box.x,
        box.y,
        BOX_WIDTH,
        BOX_HEIGHT,
        box.x + 6,
        box.y + 15,
        _cut(first),
        box.x + 6,
        box.y + 30,
        _cut(second),
    )


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_SHOWN else text[: TEXT_SHOWN - 1] + "…"
