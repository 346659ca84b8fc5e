"""The release: the sdist and the wheel build, their metadata passes ``twine check``, and the
wheel, installed (not editable) in a fresh virtualenv, runs the example project's demo.

Once per suite run, on its SQLite pass (the demo's database); it needs the package registry for
the build's setuptools and the wheel's dependencies, as installing the test extras did.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest
from django.db import connection

import django_taskengine
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    if connection.vendor != "sqlite":
        pytest.skip("once per suite run: on its SQLite pass, the demo's database")
    out = tmp_path_factory.mktemp("dist")
    # A copy of the tree without build leftovers, so the build sees only what the repository has.
    tree = out / "tree"
    shutil.copytree(
        REPO_ROOT,
        tree,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".ci", "*.egg-info", "build", "dist", "__pycache__", "*.sqlite3"
        ),
    )
    _run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(tree)])
    return out


def _run(command: list[str], **kwargs) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=480, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_the_version_is_single_sourced():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", django_taskengine.__version__)
    assert f"## {django_taskengine.__version__} " in (REPO_ROOT / "CHANGELOG.md").read_text()


def test_the_distributions_hold_the_package_and_pass_twine_check(dist):
    version = django_taskengine.__version__
    wheel = _one(dist, f"django_taskengine-{version}-py3-none-any.whl")
    sdist = _one(dist, f"django_taskengine-{version}.tar.gz")
    _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "django_taskengine/py.typed",
        "django_taskengine/store/sql/postgres.sql",
        "django_taskengine/migrations/0001_initial.py",
        "django_taskengine/templates/admin/django_taskengine/workflow/change_form.html",
        "django_taskengine/static/django_taskengine/admin.css",
        f"django_taskengine-{version}.dist-info/licenses/LICENSE",
    ):
        assert needed in names, needed
    assert not any(name.startswith(("tests/", "benchmarks/", "example_project/")) for name in names)
    metadata = zipfile.ZipFile(wheel).read(f"django_taskengine-{version}.dist-info/METADATA")
    assert b"License-Expression: BSD-3-Clause" in metadata
    with tarfile.open(sdist) as archive:
        members = {member.split("/", 1)[-1] for member in archive.getnames()}
    assert {"LICENSE", "README.md", "pyproject.toml"} <= members


def test_the_wheel_installed_in_a_fresh_virtualenv_runs_the_demo(dist, tmp_path):
    wheel = _one(dist, "django_taskengine-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)])
    project = tmp_path / "example_project"
    shutil.copytree(
        REPO_ROOT / "example_project",
        project,
        ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3*"),
    )
    # Nothing of the checkout on the path: the package comes from the virtualenv.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "VIRTUAL_ENV")
    }
    where = _run(
        [str(python), "-c", "import django_taskengine; print(django_taskengine.__file__)"],
        cwd=project,
        env=env,
    )
    assert str(env_dir) in where and str(REPO_ROOT) not in where, where

    def manage(*args: str) -> str:
        return _run([str(python), "manage.py", *args], cwd=project, env=env)

    manage("migrate", "--noinput")
    manage("enqueue_demo")
    manage("run_workers", "--burst", "--processes", "2", "--concurrency", "4")
    report = manage("demo_report")
    summary = re.search(r"^(\d+) jobs: (.*)$", report, re.MULTILINE)
    assert summary, report
    assert "succeeded" in summary.group(2) and "not finished" not in report, report
