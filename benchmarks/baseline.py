#!/usr/bin/env python
"""Compare this tree's engine with an earlier commit's, on the same workload, in one run.

    python benchmarks/baseline.py REV [--rounds 3] [--only enqueue_single,enqueue_bulk,drain]
    python benchmarks/baseline.py REV [--rounds 8] --flow queue_limit,rate_limit [--jobs 30000]

REV (a commit, tag or branch) is checked out into a temporary git worktree. Both trees' own
``benchmarks/run.py`` then run the chosen benchmarks in interleaved rounds (baseline, current,
baseline, current, ...), one drain each per round, on the same server and with the same
virtualenv; each tree's ``run.py`` puts its own package first on ``sys.path``, so each measures
its own engine. Each tree has a database of its own (the baseline's is ``DATABASE_URL``'s name
with ``_baseline`` added, dropped at the start and made again), migrated by its own migrations:
one tree's indexes must not serve the other's statements. The table gives each figure's
median per tree and a ratio that is above 1.0 when the current tree does better
(current/baseline for rates, baseline/current for times and memory). This machine is noisy:
only ratios from one run count.

``--flow CASES`` runs the flow benchmark's cases instead (``benchmarks/flow.py``: its plain drain
and each case, one round per tree per round, options after it such as ``--jobs`` passed on):
each case's steady rate, its ratio to the plain drain of the same tree's round, and the workers'
CPU time per job. A change to the flow claim moves a case by a few percent, less than this
machine's drift from one invocation to the next: against the tree before it, interleaved, it
shows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ONLY = "enqueue_single,enqueue_bulk,drain_p1_c1,drain_p2_c4"


#: Units of figures where less is better (times, memory, CPU per job); for the rest more is
#: better.
LOWER_IS_BETTER = {"ms", "s", "MB", "µs/job"}


DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/taskengine_bench"


def database_url_of(label: str) -> str:
    """The database of one tree: ``DATABASE_URL``'s, with ``_baseline`` added for the
    baseline."""
    url = urlsplit(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    if label == "baseline":
        url = url._replace(path=url.path.rstrip("/") + "_baseline")
    return urlunsplit(url)


def fresh_database(database_url: str) -> None:
    """Drop the database at ``database_url`` (the baseline tree's run.py creates and migrates it
    again). One left by a run against another commit holds that commit's schema: a newer
    commit's indexes, columns and functions, which the baseline's statements would run against
    (its migrate does not undo migrations it does not know)."""
    import psycopg
    from psycopg import sql

    url = urlsplit(database_url)
    name = url.path.lstrip("/")
    if "bench" not in name:
        raise SystemExit(f"refusing to drop {name!r}: a benchmark database's name holds 'bench'")
    with psycopg.connect(urlunsplit(url._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _run_json(tree: Path, args: list[str], database_url: str) -> Any:
    """``tree``'s ``benchmarks/run.py`` with ``args`` on ``database_url``: its JSON output."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        command = [sys.executable, str(tree / "benchmarks" / "run.py"), *args, "--json", out.name]
        env = {**os.environ, "DATABASE_URL": database_url}
        subprocess.run(command, check=True, cwd=tree, stdout=subprocess.DEVNULL, env=env)
        return json.loads(Path(out.name).read_text())


def run_flow_tree(
    tree: Path, cases: str, extra: list[str], database_url: str
) -> dict[str, tuple[float, str]]:
    """One round of ``tree``'s flow benchmark (the plain drain and ``cases``): figure name →
    (value, unit)."""
    payload = _run_json(
        tree,
        ["--flow", "--cases", f"plain,{cases}", "--rounds", "1", "--database-url", *extra],
        database_url,
    )
    figures: dict[str, tuple[float, str]] = {}
    for case, f in payload["figures"].items():
        figures[f"{case}_steady"] = (f["steady"], "jobs/s")
        if case != "plain" and f.get("ratio") is not None:
            figures[f"{case}_vs_plain"] = (f["ratio"], "×")
        if f.get("worker_cpu") is not None:
            figures[f"{case}_worker_cpu"] = (f["worker_cpu"], "µs/job")
    return figures


def run_tree(
    tree: Path, only: str, extra: list[str], database_url: str
) -> dict[str, tuple[float, str]]:
    """One run of ``tree``'s benchmarks: figure name → (value, unit); failed ones left out."""
    results = _run_json(tree, ["--only", only, "--repeat", "1", *extra], database_url)["results"]
    figures = {r["name"]: (r["value"], r["unit"]) for r in results if r["value"] is not None}
    # A drain's steady rate (first start to last finish) too: its wall rate includes start-up.
    for r in results:
        steady = (r.get("extra") or {}).get("drain_steady")
        if r["value"] is not None and steady:
            figures[f"{r['name']}_steady"] = (steady, r["unit"])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the commit to compare with (e.g. HEAD~3, a tag, main)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--only", default=DEFAULT_ONLY, help=f"benchmarks (default {DEFAULT_ONLY})")
    parser.add_argument(
        "--flow",
        metavar="CASES",
        help="the flow benchmark's cases instead (e.g. queue_limit,rate_limit), each against the "
        "plain drain of the same round",
    )
    opts, extra = parser.parse_known_args(argv)
    if opts.rounds < 1:
        parser.error("--rounds must be at least 1")
    fresh_database(database_url_of("baseline"))
    with tempfile.TemporaryDirectory(prefix="taskengine-baseline-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", "-q", str(base), opts.rev],
            check=True,
        )
        try:
            figures: dict[str, dict[str, list[float]]] = {"baseline": {}, "current": {}}
            units: dict[str, str] = {}
            for round_ in range(1, opts.rounds + 1):
                for label, tree in (("baseline", base), ("current", REPO_ROOT)):
                    print(f"round {round_}/{opts.rounds}: {label}", file=sys.stderr, flush=True)
                    database_url = database_url_of(label)
                    if opts.flow:
                        got = run_flow_tree(tree, opts.flow, extra, database_url)
                    else:
                        got = run_tree(tree, opts.only, extra, database_url)
                    for name, (value, unit) in got.items():
                        figures[label].setdefault(name, []).append(value)
                        units[name] = unit
        finally:
            subprocess.run(
                ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(base)],
                check=False,
            )
    print(f"\nbaseline {opts.rev} vs current tree, medians of {opts.rounds} interleaved rounds")
    print(f"{'figure':<28}{'unit':>8}{'baseline':>14}{'current':>14}{'better ×':>10}")
    for name in sorted(set(figures["baseline"]) & set(figures["current"])):
        before = statistics.median(figures["baseline"][name])
        after = statistics.median(figures["current"][name])
        unit = units.get(name, "")
        better, worse = (before, after) if unit in LOWER_IS_BETTER else (after, before)
        ratio = better / worse if worse else float("nan")
        shown = ",.3f" if max(abs(before), abs(after)) < 10 else ",.1f"
        print(f"{name:<28}{unit:>8}{before:>14{shown}}{after:>14{shown}}{ratio:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
