"""Draw a ``soak.py`` result: one column per run (each soak rate, the held horizon), rows for
throughput against the offered rate, enqueue → start p50/p99, table and index sizes, dead
tuples, the claim statement's mean execution time and the backlog; the held transaction shaded.

    python benchmarks/plot_soak.py soak.json docs/soak.png

``soak.py --plot`` runs it with whichever python has matplotlib. Only matplotlib and the
standard library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MB = 1048576


def _claim_points(samples: list[dict], key: str = "claim") -> tuple[list[float], list[float]]:
    """Mean claim (or ``key``: completion) execution time between consecutive samples
    (pg_stat_statements), or the timed EXPLAIN ANALYZE samples of the claim."""
    xs, ys = [], []
    for before, after in zip(samples, samples[1:], strict=False):
        if key in after and key in before:
            calls = after[key]["calls"] - before[key]["calls"]
            if calls > 0:
                xs.append(after["t"])
                ys.append((after[key]["total_ms"] - before[key]["total_ms"]) / calls)
        elif key == "claim" and after.get("claim_sample_ms") is not None:
            xs.append(after["t"])
            ys.append(after["claim_sample_ms"])
    return xs, ys


def plot(payload: dict, out: Path) -> None:
    runs = payload.get("runs") or []
    if not runs:
        raise SystemExit("no runs to plot")
    rows = 6
    fig, axes = plt.subplots(
        rows, len(runs), figsize=(5.2 * len(runs), 2.3 * rows), sharex="col", squeeze=False
    )
    for col, run in enumerate(runs):
        ax = [axes[r][col] for r in range(rows)]
        fine = run["fine"]
        t = [b["t"] for b in fine]
        throughput = [b["throughput"] for b in fine]
        ax[0].step(t, throughput, where="post", label="jobs started /s")
        ax[0].axhline(run["offered"], color="grey", linestyle=":", label="offered")
        # Headroom: a run that keeps up draws on the offered line, which autoscaling put on
        # the top of the frame, where neither could be seen.
        ax[0].set_ylim(0, max([*throughput, run["offered"]]) * 1.15)
        ax[0].set_title(f"{run['name']} — {run['offered']:,.0f} jobs/s offered", fontsize=10)
        ax[1].plot(t, [b["p50_ms"] for b in fine], "o-", markersize=3, label="p50")
        ax[1].plot(t, [b["p99_ms"] for b in fine], "o-", markersize=3, label="p99")
        ax[1].set_yscale("log")
        ax[1].set_ylabel("enqueue → start ms")
        samples = run["samples"]
        st = [s["t"] for s in samples]
        for table, short in (("taskengine_job", "job"), ("taskengine_attempt", "attempt")):
            ax[2].plot(
                st,
                [s["tables"].get(table, {}).get("heap_bytes", 0) / MB for s in samples],
                label=f"{short} heap",
            )
            ax[2].plot(
                st,
                [s["tables"].get(table, {}).get("index_bytes", 0) / MB for s in samples],
                linestyle="--",
                label=f"{short} indexes",
            )
            ax[3].plot(
                st, [s["tables"].get(table, {}).get("dead", 0) for s in samples], label=short
            )
        ax[2].set_ylabel("MB")
        ax[3].set_ylabel("dead tuples")
        cx, cy = _claim_points(samples)
        ax[4].plot(cx, cy, "o-", markersize=3, color="tab:purple", label="claim")
        dx, dy = _claim_points(samples, "complete")
        if dx:
            ax[4].plot(dx, dy, "o-", markersize=3, color="tab:brown", label="write outcomes")
            ax[4].legend(fontsize=7, loc="upper left")
        ax[4].set_ylabel("statement ms (mean)")
        ax[4].set_ylim(bottom=0)
        light = run["light"]
        ax[5].plot([s["t"] for s in light], [s["backlog"] for s in light], color="tab:red")
        ax[5].set_ylabel("queued jobs")
        ax[5].set_xlabel("seconds since the warm-up ended (before 0: warm-up)")
        hold = run.get("hold")
        for a in ax:
            a.grid(alpha=0.3)
            if hold and hold.get("opened") is not None and hold.get("closed") is not None:
                a.axvspan(hold["opened"], hold["closed"], color="orange", alpha=0.15)
        for a in ax[:4]:
            a.legend(fontsize=7, loc="upper left")
    machine = payload.get("machine", {})
    settings = machine.get("server_settings", {})
    where = "private cluster" if machine.get("private_cluster") else "server"
    fig.suptitle(
        f"django-taskengine soak on {machine.get('nproc', '?')} CPUs, PostgreSQL "
        f"{settings.get('server_version', '?')}\n({where}: "
        f"fsync {settings.get('fsync', '?')}, autovacuum {settings.get('autovacuum', '?')}); "
        f"max drain {payload.get('max_rate', 0):,.0f} jobs/s — {payload.get('timestamp', '')[:16]}",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))


if __name__ == "__main__":
    main()
