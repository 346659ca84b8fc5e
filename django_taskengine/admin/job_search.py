"""The job list's search: exact matches served by their indexes (a job id, a dedup key, a task
name) or the words of the jobs' arguments and errors.

What an operator types first is an argument value (an email address, an order id) or a piece of
an error ("ConnectionRefusedError", "timed out"). A job matches when every word of the term is a
word of its arguments, keyword arguments or error:

* on PostgreSQL through the words of the 'simple' text search vector of the three (words are
  split as PostgreSQL's text search splits them, so "PaymentDeclined" does not find
  "myapp.errors.PaymentDeclined", but the whole dotted name does, and a word is never matched by
  a part of it). Jobs at rest (paused or finished) are found through
  ``taskengine_job_search_idx``, a GIN index over that vector (migration 0028) which holds them
  only, so that a job is indexed once, when it finishes, and enqueues and claims pay nothing.
  Queued and running jobs are read through their status indexes, their vectors computed: a
  cost that grows with the backlog, not with the table. The two reads collect matching ids
  without an order (so the planner reads those indexes rather than walk the table by id,
  testing every row), and the newest :data:`IDS_MAX` become the list's condition;
* on SQLite, each word is looked for with ``LIKE '%word%'`` in their text: a scan of the table,
  fine at development sizes, and it matches parts of words too.

The conditions are SQL blocks (``store/sql/search.sql``) rendered by :class:`JobTextMatch`, so
the search combines with the list's filters, its ordering by ``-id`` and its paginator.
"""

from __future__ import annotations

import re
from functools import reduce
from operator import and_
from typing import Any

from django.db import connections
from django.db.models import BooleanField, Expression, Q, QuerySet
from django.db.models.sql.compiler import SQLCompiler

from ..core.limits import JOB_ID_MAX
from ..core.statuses import JobStatus
from ..job_indexes import ANY_STATUS, AT_REST, status_in
from ..models import Job
from ..registry import registered_tasks
from ..store.sql import query
from .paginator import EstimatedCountPaginator

#: A term longer than this is cut: nobody types more, and a pasted traceback is not a query.
TERM_MAX = 200
#: At most this many words of a term are looked for (each is one LIKE on SQLite).
WORDS_MAX = 8
_WORD = re.compile(r"\S+")
#: Runs of letters and digits: each is inside the text of every job the term's words match.
_RUN = re.compile(r"\w+")
#: The newest matches the list shows: as many as its paginator counts, and one more.
IDS_MAX = EstimatedCountPaginator.count_cap + 1
#: Each read collects at most this many matching ids (a word in every job's arguments).
READ_MAX = 200_000
#: Queued and running jobs, as their partial indexes serve them.
ACTIVE = status_in(JobStatus.QUEUED, JobStatus.RUNNING)


class JobTextMatch(Expression):
    """A condition on the job table: the words of ``term`` are among the words of the job's
    arguments and error (PostgreSQL), or the one word ``term`` is inside their text (SQLite)."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, term: str) -> None:
        super().__init__()
        self.term = term

    def as_sql(self, compiler: SQLCompiler, connection: Any) -> tuple[str, tuple[str, ...]]:
        if connection.vendor == "postgresql":
            return query("job_text_matches_postgresql"), (self.term,)
        return query("job_text_matches_sqlite"), (f"%{_escape_like(self.term)}%",)


class JobTextContains(JobTextMatch):
    """On PostgreSQL, a cheap condition every match meets: one run of letters and digits of the
    term is inside the text of the job's arguments and error, in any case. The planner tests it
    before the costly words (a function of cost 100 against 1), so the search of queued and
    running jobs computes the words of those that contain the term only."""

    def as_sql(self, compiler: SQLCompiler, connection: Any) -> tuple[str, tuple[str, ...]]:
        return query("job_text_contains_postgresql"), (f"%{_escape_like(self.term)}%",)


class JobIdIn(Expression):
    """On PostgreSQL, a condition on the job table: the id is one of ``ids``, sent as one array
    parameter (``pk__in`` binds one parameter per id: for ten thousand matches, most of the
    page's time)."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, ids: list[int]) -> None:
        super().__init__()
        self.ids = ids

    def as_sql(self, compiler: SQLCompiler, connection: Any) -> tuple[str, Any]:
        # The array's text form, cast by the SQL: the driver's adaptation of a list of ten
        # thousand ints, element by element, cost more than the query.
        return query("job_id_in_postgresql"), ("{" + ",".join(map(str, self.ids)) + "}",)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def text_condition(term: str, vendor: str) -> Q:
    """The condition "``term`` is in the job's arguments or error" for a database ``vendor``."""
    if vendor == "postgresql":
        return Q(JobTextMatch(term))
    words = _WORD.findall(term)[:WORDS_MAX]
    condition = Q()
    for word in words:
        condition &= Q(JobTextMatch(word))
    return condition


def search_jobs(queryset: QuerySet[Job], search_term: str) -> QuerySet[Job]:
    """Jobs whose arguments or error hold every word of the term, or matched exactly by it: a
    job id, a dedup key, a task name — or the registered tasks whose name contains the term
    (matched in Python, not by a LIKE scan). Every arm is served by an index on PostgreSQL."""
    return search(queryset, search_term)[0]


def search(queryset: QuerySet[Job], search_term: str) -> tuple[QuerySet[Job], list[int] | None]:
    """:func:`search_jobs`, and the ids of the jobs it finds, newest first, when they are known
    without reading them again (on PostgreSQL, when the term names no registered task: the
    matches are then a list of ids, all of them jobs of ``queryset``); None otherwise."""
    term = search_term.strip()[:TERM_MAX]
    if not term:
        return queryset, None
    # A task name no process registers any more: its finished and paused jobs (an index
    # serves those); its queued ones through the list's task filter. Asking for its active
    # jobs here would visit every queued job for each search of a word.
    exact = Q(dedup_key=term) | Q(task_name=term, status__in=AT_REST)
    lowered = term.lower()
    similar = [name for name in registered_tasks() if lowered in name.lower()]
    tasks = Q(task_name__in=similar) & ANY_STATUS if similar else None
    number = term.removeprefix("#")
    job_id = int(number) if number.isdigit() and int(number) <= JOB_ID_MAX else None
    vendor = connections[queryset.db].vendor
    if vendor != "postgresql":
        matches = exact | text_condition(term, vendor)
        for arm in (tasks, Q(pk=job_id) if job_id is not None else None):
            if arm is not None:
                matches |= arm
        return queryset.filter(matches), None
    # PostgreSQL: the exact matches and the text matches become one list of ids, so that the
    # list's count and page read the primary key's index only (an OR of conditions made them
    # visit every matching row). The list's own filters still apply to it.
    ids = set(matching_ids(queryset, term))
    ids.update(queryset.filter(exact).order_by().values_list("pk", flat=True)[:READ_MAX])
    if job_id is not None and queryset.filter(pk=job_id).exists():
        ids.add(job_id)
    newest = sorted(ids, reverse=True)[:IDS_MAX]
    condition = Q(JobIdIn(newest)) if newest else Q(pk__in=[])
    if tasks is not None:
        return queryset.filter(condition | tasks), None
    return queryset.filter(condition), newest


def matching_ids(queryset: QuerySet[Job], term: str) -> list[int]:
    """The ids of the newest :data:`IDS_MAX` jobs of ``queryset`` whose arguments or error hold
    every word of ``term`` (PostgreSQL): those at rest through the search index, the others
    through their status indexes."""
    match = Q(JobTextMatch(term))
    # The longest run of the term first (the likeliest to be rare): one text test per job,
    # and the words computed only for those that pass it. Testing every run repeated the
    # costly part, the arguments' text, once per run.
    runs = sorted(_RUN.findall(term)[:WORDS_MAX], key=len, reverse=True)[:1]
    prefilter = [Q(JobTextContains(run)) for run in runs]
    ids: list[int] = []
    for arm, condition in (
        (Q(status__in=AT_REST), match),
        (ACTIVE, reduce(and_, prefilter, match)),
    ):
        rows = queryset.filter(arm, condition).order_by().values_list("pk", flat=True)
        ids += rows[:READ_MAX]
    return sorted(ids, reverse=True)[:IDS_MAX]
