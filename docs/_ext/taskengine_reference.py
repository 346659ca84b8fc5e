"""Reference tables generated from the package at build time, so they cannot drift from it.

- ``{taskengine-settings}``: every ``TASKENGINE`` key of ``django_taskengine/conf.py``'s
  ``DEFAULTS``, with its default and the comment written above it.
- ``{taskengine-cli}``: the subcommands and options of ``manage.py taskengine`` (from
  ``django_taskengine/cli/arguments.py``) and of ``manage.py run_workers``.

A page asks for one with an empty fenced block whose language is ``{taskengine-settings}`` or
``{taskengine-cli}``; the block is replaced with the generated Markdown as the page is read.
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parents[2] / "django_taskengine"


def setting_rows() -> list[tuple[str, str, str]]:
    """``(key, default, meaning)`` for every key of ``DEFAULTS`` in conf.py, in its order.

    The meaning is the comment block just above the key; a key without one shares the comment
    of the group it follows ("Defaults for @task options.").
    """
    source = (PACKAGE / "conf.py").read_text()
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    tree = ast.parse(source)
    defaults = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == "DEFAULTS"
    )
    assert isinstance(defaults, ast.Dict)
    rows = []
    last_meaning = ""
    for key_node, value_node in zip(defaults.keys, defaults.values, strict=True):
        assert isinstance(key_node, ast.Constant)
        lines = []
        line = key_node.lineno - 1
        while line in comments:
            lines.insert(0, comments[line])
            line -= 1
        meaning = " ".join(lines) or last_meaning
        last_meaning = meaning
        default = ast.get_source_segment(source, value_node) or ""
        rows.append((str(key_node.value), " ".join(default.split()), meaning))
    return rows


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def settings_markdown() -> list[str]:
    rows = [(f"`{key}`", f"`{default}`", meaning) for key, default, meaning in setting_rows()]
    return _table(("key", "default", "meaning"), rows)


def _django() -> None:
    """Configure a minimal Django, enough to build the commands' parsers (no database use)."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=[
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django_taskengine",
            ],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            USE_TZ=True,
        )
        django.setup()


def _option_rows(parser: argparse.ArgumentParser) -> list[tuple[str, ...]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.dest in {"verbosity", "settings", "pythonpath", "traceback", "no_color"}:
            continue
        if action.dest in {"force_color", "skip_checks", "version"}:
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + (action.metavar or action.dest.upper())
        else:
            name = str(action.metavar or action.dest)
            if action.nargs in ("*", "+"):
                name += " …"
        help_text = (action.help or "").replace("%%", "%")
        if not help_text and not action.option_strings:
            help_text = "one or more" if action.nargs == "+" else "zero or more"
            if action.nargs not in ("*", "+"):
                help_text = "required"
        if action.choices and not isinstance(action.choices, dict):
            help_text += " One of: " + ", ".join(str(c) for c in action.choices) + "."
        rows.append((f"`{name}`", " ".join(help_text.split())))
    return rows


def cli_markdown() -> list[str]:
    _django()
    from django.core.management import load_command_class

    lines: list[str] = []
    for command in ("run_workers", "taskengine"):
        parser = load_command_class("django_taskengine", command).create_parser(
            "manage.py", command
        )
        lines += [f"## `manage.py {command}`", "", " ".join((parser.description or "").split())]
        lines += [""]
        own = _option_rows(parser)
        if own:
            lines += _table(("argument", "meaning"), own) + [""]
        for action in parser._actions:
            if not isinstance(action, argparse._SubParsersAction):
                continue
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                lines += [f"### `taskengine {name}`", ""]
                lines += [" ".join((sub.description or helps.get(name) or "").split()), ""]
                rows = _option_rows(sub)
                if rows:
                    lines += _table(("argument", "meaning"), rows) + [""]
        if parser.epilog:
            lines += [" ".join(parser.epilog.split()), ""]
    return lines


#: The placeholder blocks a page writes, and the Markdown each is replaced with.
GENERATORS = {
    "taskengine-settings": settings_markdown,
    "taskengine-cli": cli_markdown,
}


def _substitute(app: Any, docname: str, source: list[str]) -> None:
    """Replace each placeholder block with its generated Markdown, before the page is parsed
    (so generated headings become sections of the page)."""
    text = source[0]
    for name, generate in GENERATORS.items():
        placeholder = f"```{{{name}}}\n```"
        if placeholder in text:
            text = text.replace(placeholder, "\n".join(generate()))
    source[0] = text


def setup(app: Any) -> dict[str, Any]:
    app.connect("source-read", _substitute)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
