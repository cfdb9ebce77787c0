"""Local sandbox confinement: which method a host gets (pure), the plan across a hub restart,
and the rlimit fallback in a real child. The cgroups themselves: test_cgroups.py."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from hub_ext.spawners.cgroups import delegated_v2
from hub_ext.spawners.os_limits import (
    Hierarchy,
    LimitPlan,
    Limits,
    apply_in_child,
    detect,
    pick_cpus,
    plan_limits,
    prepare,
    release,
)

MiB, GiB = 1024**2, 1024**3


@pytest.mark.parametrize(
    "cpu, available, count",
    [
        (1, [0, 1, 2, 3], 1),
        (0.1, [0, 1, 2, 3], 1),
        (0, [0, 1, 2, 3], 1),  # at least one core
        (1.5, [0, 1, 2, 3], 2),
        (2, [0, 1, 2, 3], 2),
        (2.01, [0, 1, 2, 3], 3),
        (4, [0, 1, 2, 3], 4),
        (64, [0, 1, 2, 3], 4),  # never more than there are
        (3, [5, 9, 2, 7, 11], 3),
        (1, [6], 1),
    ],
)
def test_pick_cpus(cpu, available, count):
    for salt in ("alice", "bob/gpu", "", "x" * 100):
        picked = pick_cpus(cpu, available, salt)
        assert len(picked) == count
        assert len(set(picked)) == count
        assert set(picked) <= set(available)
        assert list(picked) == sorted(picked)
        assert pick_cpus(cpu, list(reversed(available)), salt) == picked  # order-independent
        assert pick_cpus(cpu, available, salt) == picked  # deterministic


def test_pick_cpus_takes_a_contiguous_window_and_spreads_by_salt():
    available = list(range(8))
    picks = {pick_cpus(2, available, f"user-{i}") for i in range(40)}
    assert len(picks) > 1  # different sandboxes land on different cores
    for picked in picks:
        a, b = picked
        assert (b - a) % 8 == 1 or (a - b) % 8 == 1  # neighbours, wrapping around


@pytest.mark.parametrize("cpu", [0.5, 1, 8])
def test_pick_cpus_without_cpus(cpu):
    assert pick_cpus(cpu, [], "alice") == ()


def fake_cgroup_root(path: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    """A directory laid out like a delegated cgroup v2 root."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "cgroup.controllers").write_text(controllers + "\n")
    (path / "cgroup.subtree_control").write_text("memory cpu pids\n")
    (path / "cgroup.procs").write_text("")
    return path


def test_delegated_cgroup_found(tmp_path):
    root = fake_cgroup_root(tmp_path / "cg")
    assert delegated_v2(str(root)) == str(root)


@pytest.mark.parametrize(
    "files",
    [
        {},  # cgroup v1 or not a cgroup at all
        {"cgroup.controllers": "cpu memory"},
        {"cgroup.subtree_control": "memory cpu"},
        {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": "memory"},
        {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": "cpu io pids"},
        {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": ""},
        {"cgroup.controllers": "cpu memory pids", "cgroup.subtree_control": "cpu memory"},
    ],
)
def test_delegated_cgroup_missing(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert delegated_v2(str(tmp_path)) is None


def test_delegated_cgroup_nonexistent(tmp_path):
    assert delegated_v2(str(tmp_path / "nope")) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_delegated_cgroup_not_writable(tmp_path):
    root = fake_cgroup_root(tmp_path / "ro")
    root.chmod(0o555)
    try:
        assert delegated_v2(str(root)) is None
    finally:
        root.chmod(0o755)


@pytest.mark.parametrize(
    "name, directory",
    [
        ("alice", "dsplatform-alice"),
        ("alice-gpu", "dsplatform-alice-gpu"),
        ("alice/train", "dsplatform-alice_train"),
        ("bob@example.com", "dsplatform-bob_example.com"),
        ("../../etc", "dsplatform-.._.._etc"),
        ("a b", "dsplatform-a_b"),
    ],
)
def test_plan_limits_cgroup_v2(tmp_path, name, directory):
    root = fake_cgroup_root(tmp_path / "cg")
    plan = plan_limits(Limits(2 * GiB, 1.5, 100), name, Hierarchy(v2_root=str(root)), [0, 1])
    assert (plan.method, plan.memory, plan.cpu, plan.cpus) == ("cgroup-v2", 2 * GiB, 1.5, ())
    assert plan.cgroup is not None and plan.cgroup.groups == (str(root / directory),)
    assert Path(plan.cgroup.groups[0]).parent == root  # never outside the delegated root


def test_plan_limits_prefers_v2_then_v1_then_rlimit(tmp_path):
    v1 = {c: f"/sys/fs/cgroup/{c}" for c in ("memory", "cpu", "pids", "devices")}
    limits = Limits(GiB, 1, 64)
    both = Hierarchy(v2_root=str(fake_cgroup_root(tmp_path / "cg")), v1_mounts=v1)
    assert plan_limits(limits, "a", both, [0]).method == "cgroup-v2"
    assert plan_limits(limits, "a", Hierarchy(v1_mounts=v1), [0]).method == "cgroup-v1"
    assert plan_limits(limits, "a", Hierarchy(), [0]).method == "rlimit"


def test_this_machine_offers_cgroup_v1_to_root():
    hierarchy = detect("/sys/fs/cgroup")
    if os.geteuid() == 0 and Path("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists():
        assert hierarchy.method == "cgroup-v1"
        assert set(hierarchy.v1_mounts or {}) >= {"memory", "cpu", "pids", "devices"}
    else:
        assert hierarchy.method in ("rlimit", "cgroup-v2")


@pytest.mark.parametrize(
    "cpu, available, expected_count",
    [(1, [0, 1, 2, 3], 1), (2.5, [0, 1, 2, 3], 3), (8, [0, 1], 2), (1, [], 0)],
)
def test_plan_limits_rlimit(cpu, available, expected_count):
    plan = plan_limits(Limits(512 * MiB, cpu, 64), "alice", Hierarchy(), available)
    assert plan.method == "rlimit"
    assert (plan.memory, plan.cpu, plan.cgroup) == (512 * MiB, cpu, None)
    assert plan.cpus == pick_cpus(cpu, available, "alice")
    assert len(plan.cpus) == expected_count


def test_a_plan_survives_a_hub_restart_in_the_spawner_state(tmp_path):
    root = fake_cgroup_root(tmp_path / "cg")
    for hierarchy in (Hierarchy(v2_root=str(root)), Hierarchy()):
        plan = plan_limits(Limits(GiB, 0.5, 64), "alice", hierarchy, [0, 1])
        assert LimitPlan.from_state(json.loads(json.dumps(plan.to_state()))) == plan


def test_prepare_and_release_write_and_remove_a_v2_group(tmp_path):
    root = fake_cgroup_root(tmp_path / "cg")
    plan = plan_limits(Limits(2 * GiB, 1.5, 100), "alice", Hierarchy(v2_root=str(root)), [])
    prepare(plan)
    group = root / "dsplatform-alice"
    assert (group / "memory.max").read_text() == str(2 * GiB)
    assert (group / "cpu.max").read_text() == "150000 100000"
    assert (group / "pids.max").read_text() == "100"
    # a second start of the same server reuses the group and rewrites the limits
    prepare(plan_limits(Limits(512 * MiB, 0.5, 100), "alice", Hierarchy(v2_root=str(root)), []))
    assert (group / "memory.max").read_text() == str(512 * MiB)
    release(None)
    release(LimitPlan("rlimit", GiB, 1))  # nothing to remove


CHILD = r"""
import json, os, resource
out = {
    "affinity": sorted(os.sched_getaffinity(0)),
    "rlimit_data": list(resource.getrlimit(resource.RLIMIT_DATA)),
}
try:
    small = bytearray(100 * 1024 * 1024)
    small[-1] = 1
    out["100MiB"] = "ok"
    del small
except MemoryError:
    out["100MiB"] = "MemoryError"
try:
    big = bytearray(1024 * 1024 * 1024)
    out["1GiB"] = "ok"
except MemoryError:
    out["1GiB"] = "MemoryError"
print(json.dumps(out))
"""


def test_rlimit_plan_confines_a_real_child():
    first_cpu = min(os.sched_getaffinity(0))
    plan = LimitPlan("rlimit", memory=512 * MiB, cpu=1, cpus=(first_cpu,))
    parent_affinity = os.sched_getaffinity(0)
    parent_rlimit = resource.getrlimit(resource.RLIMIT_DATA)

    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        preexec_fn=lambda: apply_in_child(plan),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    out = json.loads(result.stdout)
    assert out["rlimit_data"] == [512 * MiB, 512 * MiB]
    assert out["100MiB"] == "ok"
    assert out["1GiB"] == "MemoryError"
    assert set(out["affinity"]) == set(plan.cpus)
    # the hub itself is untouched
    assert os.sched_getaffinity(0) == parent_affinity
    assert resource.getrlimit(resource.RLIMIT_DATA) == parent_rlimit


def test_planned_rlimit_child_gets_the_planned_cpus():
    available = sorted(os.sched_getaffinity(0))
    plan = plan_limits(Limits(GiB, 1, 64), "dave", Hierarchy(), available)
    result = subprocess.run(
        [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        preexec_fn=lambda: apply_in_child(plan),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(result.stdout) == list(plan.cpus)
    assert len(plan.cpus) == 1
