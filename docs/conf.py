"""Sphinx configuration for the django-taskengine documentation (pages in Markdown, MyST)."""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path[:0] = [str(DOCS / "_ext"), str(DOCS.parent)]

project = "django-taskengine"
author = "django-taskengine contributors"
copyright = "django-taskengine contributors"  # noqa: A001 - Sphinx's name for it


def _version() -> str:
    # Read without importing the package, as the packaging metadata does.
    for line in (DOCS.parent / "django_taskengine" / "__init__.py").read_text().splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise RuntimeError("django_taskengine/__init__.py has no __version__")


release = version = _version()

extensions = ["myst_parser", "taskengine_reference"]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "screenshots/README*"]
html_theme = "alabaster"
html_title = f"django-taskengine {release}"
html_static_path: list[str] = []
# Nothing is fetched at build time: no intersphinx, no remote images.
