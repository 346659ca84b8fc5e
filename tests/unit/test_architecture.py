"""The package's shape, checked: no import cycle, a core that imports nothing of the engine, no
SQL outside the SQL files, no module too long to hold in one's head."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "django_taskengine"
NAME = "django_taskengine"
#: A module longer than this is doing more than one thing.
MAX_MODULE_LINES = 400
#: What the core may import of the package: the settings, and itself.
CORE_MAY_IMPORT = {f"{NAME}.conf"}
#: The SQL loader's module (the only .py file that may hold SQL keywords in strings).
SQL_LOADER = PACKAGE / "store" / "sql" / "__init__.py"
_SQL = re.compile(
    r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
    r"CREATE\s+(OR\s+REPLACE\s+)?(INDEX|FUNCTION|TABLE)|DROP\s+(INDEX|FUNCTION|TABLE)|"
    r"pg_advisory|pg_notify|LISTEN\s)",
    re.DOTALL,
)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Package modules ``module`` imports at run time, at any depth (inside functions too; not
    under ``if TYPE_CHECKING``)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(base: str) -> None:
        while base and base not in known:
            base = base.rpartition(".")[0]
        if base and base != module:
            found.add(base)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(NAME):
                    resolve(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            if base.startswith(NAME):
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    resolve(target if target in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_package_has_no_import_cycle_even_counting_imports_inside_functions():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_imports_nothing_of_the_package_but_the_settings():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith(f"{NAME}.core"):
            outside = {t for t in targets if not t.startswith(f"{NAME}.core")}
            assert outside <= CORE_MAY_IMPORT, f"{module} imports {sorted(outside)}"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def sql_in(path: Path) -> list[str]:
    """String literals (not docstrings) of ``path`` that hold SQL."""
    tree = ast.parse(path.read_text())
    skipped = _docstrings(tree)
    # The literal parts of an f-string are read with it, not again on their own.
    skipped |= {
        id(part)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for part in node.values
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(
                part.value
                for part in node.values
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            )
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in skipped:
                continue
            text = node.value
        else:
            continue
        if _SQL.search(text):
            found.append(f"line {node.lineno}: {text[:60]!r}")
    return found


def test_no_python_module_holds_sql_but_the_loader():
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in modules().values()
        if path != SQL_LOADER and (found := sql_in(path))
    }
    assert offenders == {}


def test_the_sql_finder_finds_sql_in_strings_and_not_in_docstrings(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Claims with SELECT … FROM job FOR UPDATE SKIP LOCKED."""\n'
        'STATEMENT = "UPDATE taskengine_job SET status = %s"\n'
        'note = f"DELETE FROM {table}"\n'
    )
    assert [found[:7] for found in sql_in(sample)] == ["line 2:", "line 3:"]


def test_every_sql_block_the_code_names_exists():
    from django_taskengine.store.sql import names

    named = set(names())
    used = set()
    for path in modules().values():
        used.update(re.findall(r"""\bquery\(\s*["']([a-z0-9_]+)["']""", path.read_text()))
    assert used - named == set()


def test_an_included_block_stands_in_for_its_include_line_and_bad_includes_are_refused(
    tmp_path, monkeypatch
):
    from django_taskengine.store import sql

    def load(text: str) -> dict[str, str]:
        (tmp_path / "blocks.sql").write_text(text)
        monkeypatch.setattr(sql, "_HERE", tmp_path)
        sql._queries.cache_clear()
        try:
            return sql._queries()
        finally:
            sql._queries.cache_clear()

    blocks = load(
        "-- name: outer\n-- Reads.\nSELECT 1\nWHERE true\n  -- include: part\n\n"
        "-- name: part\n-- A shared condition.\nAND x = %(x)s\n"
    )
    assert blocks["outer"] == "SELECT 1\nWHERE true\nAND x = %(x)s"
    with pytest.raises(ValueError, match="includes itself"):
        load("-- name: a\nSELECT\n-- include: b\n\n-- name: b\n1\n-- include: a\n")
    with pytest.raises(ValueError, match="which no file defines"):
        load("-- name: a\nSELECT\n-- include: nowhere\n")
    monkeypatch.undo()
    assert "claimable_now" in set(sql.names())


def test_no_module_is_longer_than_the_limit():
    too_long = {
        str(path.relative_to(PACKAGE)): lines
        for path in modules().values()
        if "migrations" not in path.parts
        and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert too_long == {}
