"""How this machine confines a local sandbox, chosen per host and told to the sandbox as
``DSPLATFORM_LIMITS``:

* ``cgroup-v2`` - a delegated cgroup v2 directory with memory, cpu and pids: one group per
  sandbox, devices through a BPF filter (:mod:`hub_ext.spawners.cgroups`).
* ``cgroup-v1`` - writable cgroup v1 controllers (``/sys/fs/cgroup/memory`` ...): the same
  limits, devices through the ``devices`` controller.
* ``rlimit`` - neither (a hub that is not root, e.g. a laptop demo): ``RLIMIT_DATA`` per
  process and CPU affinity to ``ceil(cpu)`` cores. Per process only, and bypassable: the
  hub says so at start-up.

:func:`plan_limits` is pure; :func:`prepare` (in the hub, before the sandbox starts),
:func:`apply_in_child` (in the forked child, before it drops privileges and executes) and
:func:`release` (on stop) act on the plan.
"""

from __future__ import annotations

import math
import os
import resource
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub_ext.spawners import cgroups
from hub_ext.spawners.cgroups import CgroupPlan, Limits

__all__ = ["LimitPlan", "Limits", "apply_in_child", "detect", "plan_limits", "prepare", "release"]


@dataclass(frozen=True)
class LimitPlan:
    method: str  # "cgroup-v2", "cgroup-v1" or "rlimit"
    memory: int
    cpu: float
    cgroup: CgroupPlan | None = None
    cpus: tuple[int, ...] = ()  # CPU affinity (rlimit)

    def to_state(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "memory": self.memory,
            "cpu": self.cpu,
            "cgroup": None if self.cgroup is None else self.cgroup.to_state(),
            "cpus": list(self.cpus),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> LimitPlan:
        group = data.get("cgroup")
        return cls(
            method=str(data["method"]),
            memory=int(data["memory"]),
            cpu=float(data["cpu"]),
            cgroup=None if group is None else CgroupPlan.from_state(group),
            cpus=tuple(int(c) for c in data.get("cpus", ())),
        )


@dataclass(frozen=True)
class Hierarchy:
    """The cgroup hierarchy the hub may use: a delegated v2 root, or v1 mounts, or none."""

    v2_root: str | None = None
    v1_mounts: Mapping[str, str] | None = None

    @property
    def method(self) -> str:
        if self.v2_root:
            return "cgroup-v2"
        return "cgroup-v1" if self.v1_mounts else "rlimit"


def detect(cgroup_root: str = "/sys/fs/cgroup") -> Hierarchy:
    """What this hub may use: cgroup v2 at ``cgroup_root`` if delegated, else the v1 mounts."""
    v2 = cgroups.delegated_v2(cgroup_root)
    if v2 is not None:
        return Hierarchy(v2_root=v2)
    try:
        mounts = cgroups.v1_mounts(Path("/proc/self/mounts").read_text())
    except OSError:
        mounts = {}
    return Hierarchy(v1_mounts=cgroups.writable_v1(mounts))


def pick_cpus(cpu: float, available: list[int], salt: str) -> tuple[int, ...]:
    """``ceil(cpu)`` cores out of ``available``, rotated by ``salt`` to spread sandboxes."""
    if not available:
        return ()
    wanted = min(max(math.ceil(cpu), 1), len(available))
    ordered = sorted(available)
    start = zlib.crc32(salt.encode()) % len(ordered)
    return tuple(sorted(ordered[(start + i) % len(ordered)] for i in range(wanted)))


def plan_limits(limits: Limits, name: str, hierarchy: Hierarchy, available: list[int]) -> LimitPlan:
    """Decide how to confine sandbox ``name`` to ``limits`` on this host (pure)."""
    if hierarchy.v2_root:
        plan = cgroups.plan_v2(limits, name, hierarchy.v2_root)
        return LimitPlan("cgroup-v2", limits.memory, limits.cpu, cgroup=plan)
    if hierarchy.v1_mounts:
        plan = cgroups.plan_v1(limits, name, hierarchy.v1_mounts)
        return LimitPlan("cgroup-v1", limits.memory, limits.cpu, cgroup=plan)
    return LimitPlan(
        "rlimit", limits.memory, limits.cpu, cpus=pick_cpus(limits.cpu, available, name)
    )


def prepare(plan: LimitPlan) -> None:
    """Create the sandbox's cgroups with their limits (a no-op for rlimit)."""
    if plan.cgroup is not None:
        cgroups.create(plan.cgroup)


def release(plan: LimitPlan | None) -> None:
    """Kill whatever is left of the sandbox and remove its cgroups (idempotent)."""
    if plan is not None and plan.cgroup is not None:
        cgroups.remove(plan.cgroup)


def apply_in_child(plan: LimitPlan) -> None:
    """Confine the current (forked, not yet exec'd) process according to ``plan``."""
    if plan.cgroup is not None:
        cgroups.join(plan.cgroup)
        return
    if plan.memory:
        resource.setrlimit(resource.RLIMIT_DATA, (plan.memory, plan.memory))
    if plan.cpus:
        os.sched_setaffinity(0, set(plan.cpus))
