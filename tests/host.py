"""What the host must offer for the isolation tests: root, writable cgroup v1 controllers, a
cgroup2 mount. Missing locally: the test is skipped with the reason; under CI it fails,
since CI runs on machines that have them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hub_ext.spawners import cgroups


def missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI machines have this, but here: {reason}")
    pytest.skip(reason)


def require_root_cgroups() -> dict[str, str]:
    """The writable cgroup v1 mounts (memory, cpu, pids, devices) of this machine."""
    if os.geteuid() != 0:
        missing("needs root (accounts, cgroups, device nodes)")
    mounts = cgroups.writable_v1(cgroups.v1_mounts(Path("/proc/self/mounts").read_text()))
    if mounts is None or "devices" not in mounts:
        missing("needs writable cgroup v1 controllers memory, cpu, pids and devices")
    assert mounts is not None
    return mounts


def require_unified_hierarchy() -> str:
    """A cgroup2 mount where a child group can be created (for the BPF device filter)."""
    if os.geteuid() != 0:
        missing("needs root")
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "cgroup2" and os.access(parts[1], os.W_OK):
            return parts[1]
    missing("needs a writable cgroup2 mount")
    raise AssertionError("unreachable")
