"""Playwright driving the system's Chromium (Debian package ``chromium``) for browser tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Screenshots land here (one folder per test) for a reviewer to look at.
OUTPUT_DIR = Path(os.environ.get("TASKENGINE_TEST_OUTPUT", REPO_ROOT / "test-output"))

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return (
        os.environ.get("TASKENGINE_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


# Named apart from the fixture, so a test module imports it without its ``page`` parameters
# shadowing the import.
@pytest.fixture(name="page")
def browser_page() -> Iterator[object]:
    """A fresh browser page. Without Chromium the test is skipped, except in CI, where it fails."""
    executable = chromium_path()
    if executable is None:
        message = "Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install it")
        pytest.skip(message)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[test]'")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # ordinary blocking calls that Django would otherwise refuse next to a running loop.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.set_default_timeout(15_000)
            try:
                yield context.new_page()
            finally:
                context.close()
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def screenshot_dir(request: pytest.FixtureRequest) -> Path:
    folder = OUTPUT_DIR / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(page: Any, live_server: Any) -> None:
    """Log in to the admin through its login form, as the ``operator`` fixture's user
    (tests/browser/conftest.py)."""
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "s3cret-pass")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
