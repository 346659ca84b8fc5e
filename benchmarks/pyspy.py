"""Where worker processes spend their CPU: ``py-spy record`` attached to a supervisor and its
worker processes, and a summary of its samples by thread and by function.

py-spy samples without changing the code it watches (``pip install py-spy``). Only samples of
threads that hold the GIL are kept (``--gil``): the Python work that a worker process does on
one core at a time. Waits (a blocking read from Redis, a query in the server, a thread that is
runnable but has no CPU on a loaded machine) release the GIL and are left out.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

#: A thread's name without its number: the runner threads of a process count as one.
_NUMBERED = re.compile(r"[-_ ]?\d+$")


def binary() -> str | None:
    """py-spy beside this interpreter (installed in its virtualenv), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record`` of ``pid`` and its subprocesses into ``output`` (raw, collapsed
    stacks), from :meth:`start` until :meth:`stop`."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = binary()
        if exe is None:
            raise RuntimeError("py-spy is not installed: pip install py-spy")
        self._proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(self.pid),
                "--subprocesses",
                "--threads",
                "--nonblocking",
                "--gil",
                "--function",
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--output",
                str(self.output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        """Stop sampling; py-spy writes its file on SIGINT."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if not self.output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")


def _parse(line: str) -> tuple[str, str, list[str], int] | None:
    """(process, thread group, frames outermost first, samples) of one raw line."""
    stack, _, count = line.rstrip().rpartition(" ")
    if not stack or not count.isdigit():
        return None
    process, thread = "", "?"
    frames: list[str] = []
    for part in stack.split(";"):
        if part.startswith("process ") and not frames:
            process = part.split(":", 1)[0].removeprefix("process ")
        elif part.startswith("thread (") and not frames:
            name = part.split("): ", 1)[1] if "): " in part else part
            thread = _NUMBERED.sub("", name) or name
        else:
            frames.append(part)
    return process, thread, frames, int(count)


def _module(frame: str) -> str:
    """``package/module.py`` of a frame ``function (package/module.py:line)``."""
    return frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]


def summarize(path: Path, *, supervisor: int | None = None, top: int = 12) -> dict[str, Any]:
    """Samples by thread; the functions most often on the CPU themselves (self); and, for the
    engine's code, its innermost function on each stack (inclusive of the libraries it calls:
    psycopg, redis, json): where the engine spends its CPU."""
    threads: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    engine: Counter[str] = Counter()
    libraries: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        parsed = _parse(line)
        if parsed is None:
            continue
        process, thread, frames, count = parsed
        role = "supervisor" if supervisor is not None and process == str(supervisor) else "worker"
        total += count
        threads[f"{role}: {thread}"] += count
        if not frames:
            continue
        leaves[frames[-1]] += count
        libraries[_module(frames[-1]).split("/")[0].removesuffix(".py")] += count
        inner = next((f for f in reversed(frames) if "django_taskengine/" in _module(f)), None)
        engine[inner or "(outside the engine)"] += count

    def shares(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, v / max(total, 1)) for k, v in counter.most_common(n)]

    return {
        "samples": total,
        "threads": shares(threads, top),
        "self": shares(leaves, top),
        "engine": shares(engine, top),
        "by_package": shares(libraries, top),
    }


def print_summary(title: str, summary: dict[str, Any]) -> None:
    print(f"\n{title}: {summary['samples']:,} samples holding the GIL")
    for heading, key in (
        ("by thread", "threads"),
        ("by package of the function on the CPU", "by_package"),
        ("the engine's innermost function (with what it calls)", "engine"),
        ("functions on the CPU themselves", "self"),
    ):
        print(f"  {heading}:")
        for name, share in summary[key]:
            print(f"    {share:6.1%}  {name}")
