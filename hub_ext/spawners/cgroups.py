"""A cgroup per sandbox: memory, CPU, tasks and devices for the whole sandbox, not per process.

Two hierarchies, one plan:

* **cgroup v2** (a delegated, writable directory with the ``memory``, ``cpu`` and ``pids``
  controllers, as systemd gives a service with ``Delegate=yes``): one group per sandbox with
  ``memory.max``, ``memory.swap.max``, ``cpu.max``, ``pids.max``, and a BPF device filter.
* **cgroup v1** (writable ``/sys/fs/cgroup/<controller>/`` mounts, as many hosts and
  container runtimes have): one group per controller, ``memory.limit_in_bytes`` (and
  ``memory.memsw.limit_in_bytes``), ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, ``pids.max``,
  ``devices.deny``/``devices.allow``; ``cpuacct`` for accounting.

:func:`plan_v1` and :func:`plan_v2` are pure (what to create and write); :func:`create`,
:func:`join`, :func:`remove` do it. Memory over the grant OOM-kills inside that sandbox
only; the quota bounds all of its processes together, whatever their CPU affinity.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub_ext.spawners.devices import DeviceRule, attach_bpf_filter

CPU_PERIOD_US = 100_000
PARENT = "dsplatform"  # v1: /sys/fs/cgroup/<controller>/dsplatform/<sandbox>
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "devices")
V1_REQUIRED = ("memory", "cpu", "pids")


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use, in total."""

    memory: int  # bytes
    cpu: float  # CPUs (fractional)
    tasks: int  # processes and threads
    devices: tuple[DeviceRule, ...] | None = None  # None: no device filter


@dataclass(frozen=True)
class CgroupPlan:
    """The groups of one sandbox and the files written in them, in order."""

    method: str  # "cgroup-v1" or "cgroup-v2"
    groups: tuple[str, ...]  # directories; the sandbox's processes join each
    writes: tuple[tuple[str, str], ...]  # (file, value); optional files start with "?"
    bpf_devices: tuple[DeviceRule, ...] | None = None  # v2: the filter on groups[0]
    usage_file: str = ""  # CPU time: v1 cpuacct.usage (ns), v2 cpu.stat usage_usec
    parents: tuple[str, ...] = field(default_factory=tuple)  # created once, never removed

    def to_state(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "groups": list(self.groups),
            "writes": [list(w) for w in self.writes],
            "bpf_devices": None
            if self.bpf_devices is None
            else [r.to_state() for r in self.bpf_devices],
            "usage_file": self.usage_file,
            "parents": list(self.parents),
        }

    @classmethod
    def from_state(cls, data: Mapping[str, Any]) -> CgroupPlan:
        bpf = data.get("bpf_devices")
        return cls(
            method=str(data["method"]),
            groups=tuple(data["groups"]),
            writes=tuple((str(a), str(b)) for a, b in data.get("writes", ())),
            bpf_devices=None if bpf is None else tuple(DeviceRule.from_state(r) for r in bpf),
            usage_file=str(data.get("usage_file", "")),
            parents=tuple(data.get("parents", ())),
        )


def cpu_quota(cpu: float, period: int = CPU_PERIOD_US) -> int:
    """Microseconds per period for ``cpu`` CPUs (the kernel's minimum is 1000)."""
    return max(round(cpu * period), 1000)


def cpu_max(cpu: float, period: int = CPU_PERIOD_US) -> str:
    """The v2 ``cpu.max`` line for ``cpu`` CPUs: ``"150000 100000"`` for 1.5."""
    return f"{cpu_quota(cpu, period)} {period}"


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:200]


def plan_v1(limits: Limits, name: str, mounts: Mapping[str, str]) -> CgroupPlan:
    """The v1 groups and files for sandbox ``name`` (``mounts``: controller -> mount point)."""
    leaf = safe_name(name)
    dirs: dict[str, str] = {}
    for controller in V1_CONTROLLERS:
        if controller in mounts:
            dirs[controller] = os.path.join(mounts[controller], PARENT, leaf)
    writes: list[tuple[str, str]] = [
        (os.path.join(dirs["memory"], "memory.limit_in_bytes"), str(limits.memory)),
        # no swapping beyond the grant either (absent without swap accounting)
        ("?" + os.path.join(dirs["memory"], "memory.memsw.limit_in_bytes"), str(limits.memory)),
        (os.path.join(dirs["cpu"], "cpu.cfs_period_us"), str(CPU_PERIOD_US)),
        (os.path.join(dirs["cpu"], "cpu.cfs_quota_us"), str(cpu_quota(limits.cpu))),
        (os.path.join(dirs["pids"], "pids.max"), str(limits.tasks)),
    ]
    if limits.devices is not None and "devices" in dirs:
        writes.append((os.path.join(dirs["devices"], "devices.deny"), "a"))
        writes += [(os.path.join(dirs["devices"], "devices.allow"), r.v1()) for r in limits.devices]
    accounting = dirs.get("cpuacct", dirs["cpu"])
    groups = tuple(dict.fromkeys(dirs.values()))  # cpu and cpuacct may share a mount
    return CgroupPlan(
        method="cgroup-v1",
        groups=groups,
        writes=tuple(writes),
        usage_file=os.path.join(accounting, "cpuacct.usage"),
        parents=tuple(dict.fromkeys(os.path.dirname(g) for g in groups)),
    )


def plan_v2(limits: Limits, name: str, root: str) -> CgroupPlan:
    """The v2 group and files for sandbox ``name`` under the delegated ``root``."""
    group = os.path.join(root, f"dsplatform-{safe_name(name)}")
    writes = (
        (os.path.join(group, "memory.max"), str(limits.memory)),
        ("?" + os.path.join(group, "memory.swap.max"), "0"),
        (os.path.join(group, "cpu.max"), cpu_max(limits.cpu)),
        (os.path.join(group, "pids.max"), str(limits.tasks)),
    )
    return CgroupPlan(
        method="cgroup-v2",
        groups=(group,),
        writes=writes,
        bpf_devices=limits.devices,
        usage_file=os.path.join(group, "cpu.stat"),
    )


# --- finding a hierarchy -----------------------------------------------------------------


def v1_mounts(mounts_text: str) -> dict[str, str]:
    """Controller -> mount point of the cgroup v1 mounts in ``/proc/self/mounts`` (pure)."""
    found: dict[str, str] = {}
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[2] != "cgroup":
            continue
        options = set(parts[3].split(","))
        for controller in V1_CONTROLLERS:
            if controller in options:
                found.setdefault(controller, parts[1])
    return found


def writable_v1(mounts: Mapping[str, str]) -> dict[str, str] | None:
    """The v1 mounts if memory, cpu and pids are there and writable by us, else None."""
    if not all(c in mounts for c in V1_REQUIRED):
        return None
    for controller, path in mounts.items():
        if controller in V1_REQUIRED and not os.access(path, os.W_OK):
            return None
    if not os.path.exists(os.path.join(mounts["memory"], "memory.limit_in_bytes")):
        return None
    return dict(mounts)


def delegated_v2(root: str) -> str | None:
    """``root`` if it is a writable cgroup v2 directory whose children get memory, cpu and
    pids (``cgroup.subtree_control``), else None."""
    base = Path(root)
    try:
        if not (base / "cgroup.controllers").is_file():
            return None
        enabled = set((base / "cgroup.subtree_control").read_text().split())
    except OSError:
        return None
    if not {"memory", "cpu", "pids"} <= enabled or not os.access(base, os.W_OK):
        return None
    return str(base)


# --- doing it ---------------------------------------------------------------------------------


def create(plan: CgroupPlan) -> None:
    """Create the groups and write the limits (in the hub, before the sandbox starts).

    Raises:
        OSError: a required file could not be written; nothing is left behind.
    """
    try:
        for group in (*plan.parents, *plan.groups):
            os.makedirs(group, exist_ok=True)
            # a sandbox may read its own usage (root owns the limit files: read-only to it)
            os.chmod(group, 0o755)
        for target, value in plan.writes:
            optional = target.startswith("?")
            try:
                with open(target.lstrip("?"), "w") as f:
                    f.write(value)
            except OSError:
                if not optional:
                    raise
        if plan.bpf_devices is not None:
            attach_bpf_filter(Path(plan.groups[0]), plan.bpf_devices)
    except BaseException:
        remove(plan)
        raise


def join(plan: CgroupPlan, pid: int = 0) -> None:
    """Move process ``pid`` (0: the calling one) into every group of the plan.

    Runs in the forked child before it drops its privileges and executes the sandbox.
    """
    me = str(pid or os.getpid())
    for group in plan.groups:
        with open(os.path.join(group, "cgroup.procs"), "w") as f:
            f.write(me)


def members(plan: CgroupPlan) -> set[int]:
    """The processes in the sandbox's groups now."""
    pids: set[int] = set()
    for group in plan.groups:
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in Path(group, "cgroup.procs").read_text().split())
    return pids


def kill_all(plan: CgroupPlan, timeout: float = 10.0) -> None:
    """SIGKILL every process of the sandbox (its kernels and strays too) and wait."""
    kill_file = Path(plan.groups[0], "cgroup.kill")
    deadline = time.monotonic() + timeout
    while (left := members(plan)) and time.monotonic() < deadline:
        if plan.method == "cgroup-v2" and kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        else:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def remove(plan: CgroupPlan) -> None:
    """Kill what is left in the sandbox's groups and remove them (idempotent)."""
    kill_all(plan)
    for group in plan.groups:
        for _ in range(50):
            try:
                os.rmdir(group)
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY while the last processes exit
                time.sleep(0.05)


def cpu_seconds(plan: CgroupPlan) -> float:
    """CPU time used by the whole sandbox so far."""
    text = Path(plan.usage_file).read_text()
    if plan.method == "cgroup-v1":
        return int(text.strip()) / 1e9
    usage = dict(line.split() for line in text.splitlines() if line.strip())
    return int(usage["usage_usec"]) / 1e6


def oom_kills(plan: CgroupPlan) -> int:
    """How many processes of the sandbox the kernel OOM-killed at its memory limit."""
    name = "memory.oom_control" if plan.method == "cgroup-v1" else "memory.events"
    for group in plan.groups:
        path = Path(group, name)
        if path.exists():
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return 0
