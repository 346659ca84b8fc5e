"""The code blocks of the documentation's Markdown pages, and what each one is.

The convention the documentation follows (and ``tests/integration/test_docs.py`` enforces):

- every `````python`` block is executed, in page order, in one namespace per page;
- a block whose first line is a comment naming a module of the user's project
  (``# myapp/tasks.py``) is that module: it is written into a temporary package directory on
  ``sys.path`` and imported, which registers its tasks; later blocks import from it;
- a ``# settings.py`` block is executed on its own and its ``TASKENGINE`` (and ``TASKS``) are
  checked with Django's system checks;
- a ``# tests/….py`` block defines tests: it is executed and each ``test_*`` function it defines
  is called;
- in a `````console`` block, ``$ python manage.py taskengine …`` commands are run with
  ``call_command`` (a next line starting ``CommandError:`` says the command must fail), and
  ``$ python manage.py run_workers … --burst`` runs a real worker process (without ``--burst``,
  its options are parsed by the command's parser, since it would run until stopped); other commands
  (``pip``, ``migrate``, ``systemctl``…) are shown only; an upper-case word that names a variable
  of the page's Python (``JOB_ID``) is replaced with its value;
- a block that cannot run is preceded by ``<!-- not-executed: the reason -->``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<info>[^\n`]*)$")
_SKIP = re.compile(r"<!--\s*not-executed:\s*(?P<reason>.+?)\s*-->")
_FILE = re.compile(r"^#\s*(?P<path>[\w./-]+\.(py|yml|yaml|txt|service))\b")


@dataclass
class Block:
    page: str
    line: int
    language: str
    code: str
    skip_reason: str | None

    @property
    def file(self) -> str | None:
        """The project file the block shows, from its first line's comment, if any."""
        first = self.code.lstrip().splitlines()[0] if self.code.strip() else ""
        match = _FILE.match(first)
        return match["path"] if match else None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def pages() -> list[Path]:
    """Every Markdown page of the site, in a stable order."""
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, in order."""
    lines = page.read_text().splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, info, indent = match["fence"], match["info"].strip(), len(match["indent"])
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            body.append(lines[i][indent:])
            i += 1
        i += 1
        language = info.split()[0] if info else ""
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        skip = _SKIP.search(previous)
        found.append(
            Block(
                page=str(page.relative_to(DOCS)),
                line=start + 1,
                language=language,
                code="\n".join(body) + "\n",
                skip_reason=skip["reason"] if skip else None,
            )
        )
    return found


def commands(block: Block) -> list[tuple[str, str | None]]:
    """A console block's ``$ `` commands, each with the output line that follows it (or None)."""
    lines = block.code.splitlines()
    result = []
    for index, line in enumerate(lines):
        if line.startswith("$ "):
            following = lines[index + 1] if index + 1 < len(lines) else None
            if following is not None and following.startswith("$ "):
                following = None
            result.append((line[2:].split("  #")[0].strip(), following))
    return result
