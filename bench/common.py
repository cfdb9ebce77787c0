"""Helpers shared by the benchmarks: statistics, machine facts, CPU contention, output."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """n, min, p50, p90, p99, max and mean of ``values`` (same unit as the input)."""
    return {
        "n": len(values),
        "min": min(values) if values else math.nan,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
        "mean": sum(values) / len(values) if values else math.nan,
    }


def _pkg(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _proc_ticks(with_parent: bool = False) -> dict[int, tuple[str, int]]:
    """pid -> (command name, utime + stime ticks) for every process we can read."""
    out: dict[int, tuple[str, int]] = {}
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = raw[raw.find("(") + 1 : raw.rfind(")")]
        fields = raw[raw.rfind(")") + 2 :].split()
        out[int(entry)] = (name, int(fields[11]) + int(fields[12]))
        parents[int(entry)] = int(fields[1])
    if with_parent:
        _PARENTS.clear()
        _PARENTS.update(parents)
    return out


_PARENTS: dict[int, int] = {}


class OtherLoad:
    """CPU used by processes outside this benchmark's process tree while it runs.

    ``start()`` and ``stop()`` snapshot /proc; processes that both started and exited in
    between are not seen, so this is a lower bound.
    """

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.before = _proc_ticks()

    def stop(self) -> dict[str, Any]:
        try:
            after = _proc_ticks(with_parent=True)
        except OSError:
            return {"others_cpu": None, "top": []}
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        me = os.getpid()

        def mine(pid: int) -> bool:
            seen = set()
            while pid > 1 and pid not in seen:
                if pid == me:
                    return True
                seen.add(pid)
                pid = _PARENTS.get(pid, 0)
            return False

        hz = os.sysconf("SC_CLK_TCK")
        top = []
        total = 0.0
        for pid, (name, ticks) in after.items():
            if mine(pid):
                continue
            used = (ticks - self.before.get(pid, (name, 0))[1]) / hz / elapsed
            if used > 0:
                total += used
                top.append({"pid": pid, "name": name, "cpu": round(used, 2)})
        top.sort(key=lambda p: -p["cpu"])
        return {"others_cpu": round(total, 2), "seconds": round(elapsed, 1), "top": top[:5]}


def _cpu_ticks() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields), idle


def cpu_contention(seconds: float = 1.0) -> dict[str, Any]:
    """How busy the machine is *before* a benchmark: busy fraction and top other processes.

    The benchmark itself is idle while this samples, so anything busy here is someone else
    (another test run, a build); it is recorded so results can be read with that in mind.
    """
    try:
        before_total, before_idle = _cpu_ticks()
        before = _proc_ticks()
        time.sleep(seconds)
        after_total, after_idle = _cpu_ticks()
        after = _proc_ticks()
    except OSError:  # not Linux
        return {"busy_fraction": None, "top": [], "loadavg": None}
    total = max(after_total - before_total, 1)
    busy = 1 - (after_idle - before_idle) / total
    hz = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    top = []
    for pid, (name, ticks) in after.items():
        if pid == me or pid not in before:
            continue
        used = (ticks - before[pid][1]) / hz / seconds
        if used >= 0.05:
            top.append({"pid": pid, "name": name, "cpu": round(used, 2)})
    top.sort(key=lambda p: -p["cpu"])
    return {
        "busy_fraction": round(busy, 3),
        "top": top[:5],
        "loadavg": list(os.getloadavg()),
    }


def source_state(paths: Sequence[str] = ("hub_ext", "jupyterhub_config.py")) -> dict[str, Any]:
    """The commit and any uncommitted change to the code under test (read-only git calls)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "--no-optional-locks", *args],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    diff = git("diff", "HEAD", "--", *paths)
    return {
        "commit": git("rev-parse", "--short", "HEAD").strip() or None,
        "modified": git("diff", "--name-only", "HEAD", "--", *paths).split(),
        "diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12] if diff else None,
    }


def machine_info(paths: Sequence[str] | None = None) -> dict[str, Any]:
    """Machine facts plus the state of the code under test (``paths``; default hub_ext)."""
    return {
        "source": source_state(*([paths] if paths else [])),
        "nproc": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "jupyterhub": _pkg("jupyterhub"),
        "sqlalchemy": _pkg("sqlalchemy"),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def contention_note(contention: dict[str, Any], during: dict[str, Any] | None = None) -> str:
    """One line for the table: empty when the machine was quiet before and during the run."""
    parts = []
    busy = contention.get("busy_fraction")
    if busy is not None and busy >= 0.15:
        names = ", ".join(f"{p['name']}({p['cpu']:.0%})" for p in contention.get("top", [])[:3])
        parts.append(f"machine {busy:.0%} busy before the run: {names}")
    others = (during or {}).get("others_cpu")
    if others is not None and others >= 0.15:
        names = ", ".join(f"{p['name']}({p['cpu']:.0%})" for p in during.get("top", [])[:3])
        parts.append(f"other processes used {others:.2f} CPUs on average during it: {names}")
    return "; ".join(parts)


def result_header(
    name: str, params: dict[str, Any], contention: dict[str, Any], others: OtherLoad
) -> dict[str, Any]:
    """End the run's watch on other load, print its note, and return the fields every
    result starts with (name, machine, contention before and during, params)."""
    during = others.stop()
    note = contention_note(contention, during)
    if note:
        print(f"note: {note}")
    return {
        "name": name,
        "machine": machine_info(),
        "contention_before": contention,
        "contention_during": during,
        "params": params,
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return path


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
