"""Every SQL statement the engine sends, kept in ``.sql`` files beside this module.

Each file holds named blocks::

    -- name: claim_jobs
    -- What the statement does, for a reader of the file.
    WITH picked AS (...)
    UPDATE ...

:func:`query` returns a block's text by name (names are unique across the files); the files are
read once, at first use. The comment lines that open a block are for readers and are not sent.
Statements hold ``%`` only as placeholders (psycopg reads them).

A line ``-- include: <name>`` inside a block stands for the text of the block ``<name>``: a part
several statements share (the conditions that make a job claimable) is written once.

A reader greps this folder to see every statement the engine sends: no ``.py`` file of the
package holds SQL but this loader and the migrations that load from it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import migrations

_HERE = Path(__file__).resolve().parent
_NAME = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_INCLUDE = re.compile(r"^[ \t]*-- include: ([a-z_][a-z0-9_]*)[ \t]*$", re.MULTILINE)


class UnknownQuery(LookupError):
    """No ``.sql`` file beside the loader has a block of that name."""


@functools.cache
def _queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(_HERE.glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        marks = list(_NAME.finditer(text))
        for mark, following in zip(marks, [*marks[1:], None], strict=True):
            name = mark.group(1)
            if name in queries:
                raise ValueError(f"{path.name}: the query name {name!r} is used twice")
            end = following.start() if following else len(text)
            lines = text[mark.end() : end].strip().splitlines()
            # The comment lines that open a block describe it; the server need not see them.
            while lines and lines[0].startswith("--"):
                lines.pop(0)
            queries[name] = "\n".join(lines).strip()
    return {name: _expand(queries, name, ()) for name in queries}


def _expand(queries: dict[str, str], name: str, outer: tuple[str, ...]) -> str:
    """The block ``name`` with its ``-- include:`` lines replaced by the blocks they name."""
    if name in outer:
        raise ValueError(f"SQL block {name!r} includes itself: {' -> '.join((*outer, name))}")
    if name not in queries:
        raise ValueError(f"SQL block {outer[-1]!r} includes {name!r}, which no file defines")
    return _INCLUDE.sub(lambda mark: _expand(queries, mark.group(1), (*outer, name)), queries[name])


def query(name: str) -> str:
    """The SQL text of the block ``-- name: <name>``."""
    try:
        return _queries()[name]
    except KeyError:
        raise UnknownQuery(
            f"no SQL block named {name!r} in {_HERE} (blocks start with '-- name: {name}')"
        ) from None


def run_on_postgresql(forward: str, backward: str) -> migrations.RunPython:
    """A migration operation that runs the block ``forward`` (and ``backward`` to reverse it)
    on PostgreSQL, and nothing on other databases."""

    def run(name: str) -> Callable[[Any, Any], None]:
        def operation(apps: Any, schema_editor: Any) -> None:
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(query(name))

        return operation

    return migrations.RunPython(run(forward), run(backward))


class AddIndexConcurrently(migrations.AddIndex):
    """``AddIndex`` that builds the index with ``CREATE INDEX CONCURRENTLY`` on PostgreSQL, so
    that enqueues, claims and finishes go on while it is built (the migration must say
    ``atomic = False``), and with a plain ``CREATE INDEX`` on other databases. An invalid index
    of the same name, left by an interrupted build, is dropped first and built again."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor != "postgresql":
            schema_editor.add_index(model, self.index)
            return
        if schema_editor.connection.in_atomic_block:
            raise RuntimeError(
                f"{self.index.name} is built CONCURRENTLY: its migration must be atomic = False"
            )
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(query("index_is_invalid"), [self.index.name])
            (invalid,) = cursor.fetchone()
        if invalid:
            schema_editor.remove_index(model, self.index, concurrently=True)
        schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.remove_index(model, self.index, concurrently=True)
        else:
            schema_editor.remove_index(model, self.index)


def names() -> list[str]:
    """Every block's name, sorted."""
    return sorted(_queries())
