"""Draw ``docs/benchmarks.png`` from a ``run.py`` result: throughput against worker processes and
concurrency (with the peers of ``--compare`` as reference lines) and against backlog size
(``--scale``).

    python benchmarks/plot.py results.json docs/benchmarks.png

``run.py --plot`` runs it with whichever python has matplotlib (its own, else the comparison
venv's). Only matplotlib and the standard library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _drains(payload: dict) -> dict[int, list[tuple[int, float, float]]]:
    """processes -> [(concurrency, wall jobs/s, steady jobs/s)] of the drain sweep."""
    by_processes: dict[int, list[tuple[int, float, float]]] = {}
    for row in payload.get("results", []):
        extra = row.get("extra") or {}
        if not row["name"].startswith("drain_") or row.get("value") is None or "runs" not in extra:
            continue
        by_processes.setdefault(extra["processes"], []).append(
            (extra["concurrency"], extra["drain"], extra["drain_steady"])
        )
    return {p: sorted(v) for p, v in sorted(by_processes.items())}


def plot(payload: dict, out: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    machine = payload.get("machine", {})

    drains = _drains(payload)
    colors = {1: "tab:blue", 2: "tab:green"}
    for processes, points in drains.items():
        xs = [c for c, _, _ in points]
        color = colors.get(processes, None)
        left.plot(
            xs,
            [w for _, w, _ in points],
            "o-",
            color=color,
            label=f"taskengine, {processes} process{'es' if processes > 1 else ''}",
        )
        left.plot(
            xs,
            [s for _, _, s in points],
            "o--",
            color=color,
            alpha=0.5,
            label="  steady (first start → last finish)",
        )
    compare = payload.get("compare") or {}
    ours = (compare.get("values", {}).get("taskengine") or {}).get("drain")
    if ours and compare.get("config"):
        processes, concurrency = compare["config"]
        left.plot(
            [concurrency],
            [ours],
            "*",
            color="black",
            markersize=12,
            label=f"taskengine, {processes} × {concurrency}, in the comparison rounds",
        )
    for peer, style in (("pgqueuer", "tab:orange"), ("procrastinate", "tab:red")):
        value = (compare.get("values", {}).get(peer) or {}).get("drain")
        if value:
            config = (compare.get("configs") or {}).get(peer) or peer
            left.axhline(value, color=style, linestyle=":", label=f"{config}")
    left.set_xlabel("threads per worker process (--concurrency)")
    left.set_ylabel("jobs/s (10,000 no-op jobs, start → all done)")
    left.set_title("Drain throughput vs concurrency")
    if drains:
        left.set_xticks(sorted({c for pts in drains.values() for c, _, _ in pts}))
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    left.legend(fontsize=7, loc="lower right")

    scale = payload.get("scale") or {}
    cases = scale.get("cases") or []
    backlog = [c for c in cases if not c.get("finished")]
    if backlog:
        xs = [c["backlog"] for c in backlog]
        right.plot(
            xs, [c["drain_steady"] for c in backlog], "o-", color="tab:green", label="steady rate"
        )
        right.plot(
            xs,
            [c["drain"] for c in backlog],
            "o--",
            color="tab:green",
            alpha=0.5,
            label="start → exit (incl. start-up)",
        )
        base = backlog[0]["drain_steady"]
        right.axhline(0.8 * base, color="grey", linestyle=":", label="80% of the 10k rate (target)")
        for c in cases:
            if c.get("finished"):
                right.plot(
                    [c["backlog"]],
                    [c["drain_steady"]],
                    "s",
                    color="tab:purple",
                    label=f"{c['name']} (steady)",
                )
        right.set_xscale("log")
        right.set_xticks(xs)
        right.set_xticklabels([f"{x:,}" for x in xs])
        right.set_ylim(bottom=0)
        right.legend(fontsize=7, loc="lower left")
        processes = scale.get("processes")
        right.set_title(
            f"Drain vs backlog size ({processes} process{'es' if processes != 1 else ''}"
            f" × {scale.get('concurrency')} threads; first {backlog[-1]['drained']:,} "
            "of each)",
            fontsize=10,
        )
    else:
        right.text(
            0.5,
            0.5,
            "run with --scale for this panel",
            ha="center",
            va="center",
            transform=right.transAxes,
        )
        right.set_title("Drain vs backlog size")
    right.set_xlabel("jobs waiting when the workers start")
    right.set_ylabel("jobs/s")
    right.grid(alpha=0.3)

    fig.suptitle(
        f"django-taskengine on {machine.get('nproc', '?')} CPUs ({machine.get('cpu', '?')}), "
        f"{(machine.get('postgresql') or '').split(' on ')[0]} on the same machine — "
        f"{payload.get('timestamp', '')[:10]}",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))


if __name__ == "__main__":
    main()
