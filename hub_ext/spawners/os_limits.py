"""Resource limits a single machine can enforce on a local sandbox process.

Two methods, chosen per host and reported to the sandbox as ``DSPLATFORM_LIMITS``:

* ``cgroup-v2`` - when a writable cgroup v2 hierarchy with the ``memory`` and ``cpu``
  controllers is delegated to the hub: a child group per server with ``memory.max`` (hard
  memory limit, OOM-kill inside the sandbox only) and ``cpu.max`` (fractional CPU quota).
* ``rlimit`` - otherwise: ``RLIMIT_DATA`` caps the private writable memory of each process
  (heap and anonymous mappings; allocations beyond it fail with MemoryError), and the CPU
  share is bounded by pinning the process tree to ``ceil(cpu)`` cores.

The planning functions are pure; :func:`apply_in_child` runs in the forked child before
``exec`` so the sandbox never runs unconfined.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import zlib
from dataclasses import dataclass
from pathlib import Path

CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class LimitPlan:
    method: str  # "cgroup-v2" or "rlimit"
    memory: int
    cpu: float
    cgroup: str | None = None  # directory of the server's cgroup (cgroup-v2)
    cpus: tuple[int, ...] = ()  # CPU affinity (rlimit)


def cpu_max(cpu: float, period: int = CPU_PERIOD_US) -> str:
    """The ``cpu.max`` line for ``cpu`` CPUs: ``"150000 100000"`` for 1.5."""
    return f"{max(round(cpu * period), 1000)} {period}"


def pick_cpus(cpu: float, available: list[int], salt: str) -> tuple[int, ...]:
    """``ceil(cpu)`` cores out of ``available``, rotated by ``salt`` to spread sandboxes."""
    if not available:
        return ()
    wanted = min(max(math.ceil(cpu), 1), len(available))
    ordered = sorted(available)
    start = zlib.crc32(salt.encode()) % len(ordered)
    return tuple(sorted(ordered[(start + i) % len(ordered)] for i in range(wanted)))


def delegated_cgroup(root: str = "/sys/fs/cgroup") -> Path | None:
    """The cgroup v2 directory the hub may create children in, or None."""
    base = Path(root)
    controllers = base / "cgroup.controllers"
    subtree = base / "cgroup.subtree_control"
    try:
        if not controllers.is_file() or not subtree.is_file():
            return None
        enabled = set(subtree.read_text().split())
        if not {"memory", "cpu"} <= enabled or not os.access(base, os.W_OK):
            return None
    except OSError:
        return None
    return base


def plan_limits(
    *, cpu: float, memory: int, name: str, cgroup_root: Path | None, available: list[int]
) -> LimitPlan:
    """Decide how to confine a sandbox of ``cpu`` CPUs and ``memory`` bytes (pure)."""
    if cgroup_root is not None:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return LimitPlan("cgroup-v2", memory, cpu, cgroup=str(cgroup_root / f"dsplatform-{safe}"))
    return LimitPlan("rlimit", memory, cpu, cpus=pick_cpus(cpu, available, name))


def prepare_cgroup(plan: LimitPlan) -> None:
    """Create the server's cgroup and write its limits (in the hub, before fork)."""
    if plan.cgroup is None:
        return
    group = Path(plan.cgroup)
    group.mkdir(exist_ok=True)
    (group / "memory.max").write_text(str(plan.memory))
    (group / "cpu.max").write_text(cpu_max(plan.cpu))


def remove_cgroup(plan: LimitPlan | None) -> None:
    if plan is None or plan.cgroup is None:
        return
    with contextlib.suppress(OSError):
        Path(plan.cgroup).rmdir()


def apply_in_child(plan: LimitPlan) -> None:
    """Confine the current (forked, not yet exec'd) process according to ``plan``."""
    if plan.cgroup is not None:
        with open(os.path.join(plan.cgroup, "cgroup.procs"), "w") as f:
            f.write("0")
        return
    if plan.memory:
        resource.setrlimit(resource.RLIMIT_DATA, (plan.memory, plan.memory))
    if plan.cpus:
        os.sched_setaffinity(0, set(plan.cpus))
