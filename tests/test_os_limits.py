"""Local sandbox confinement: planning (pure), cgroup v2 files, and rlimits in a real child."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from hub_ext.spawners.os_limits import (
    LimitPlan,
    apply_in_child,
    cpu_max,
    delegated_cgroup,
    pick_cpus,
    plan_limits,
    prepare_cgroup,
    remove_cgroup,
)

MiB, GiB = 1024**2, 1024**3


@pytest.mark.parametrize(
    "cpu, period, expected",
    [
        (1, 100_000, "100000 100000"),
        (1.5, 100_000, "150000 100000"),
        (0.5, 100_000, "50000 100000"),
        (16, 100_000, "1600000 100000"),
        (0.25, 200_000, "50000 200000"),
        (0.015, 100_000, "1500 100000"),
        (0.001, 100_000, "1000 100000"),  # the kernel's minimum quota is 1000us
        (0, 100_000, "1000 100000"),
        (1 / 3, 100_000, "33333 100000"),
    ],
)
def test_cpu_max(cpu, period, expected):
    assert cpu_max(cpu, period) == expected


def test_cpu_max_default_period():
    assert cpu_max(2) == "200000 100000"


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
    (path / "cgroup.subtree_control").write_text("memory cpu\n")
    (path / "cgroup.procs").write_text("")
    return path


def test_delegated_cgroup_found(tmp_path):
    root = fake_cgroup_root(tmp_path / "cg")
    assert delegated_cgroup(str(root)) == root


@pytest.mark.parametrize(
    "files",
    [
        {},  # cgroup v1 or not a cgroup at all
        {"cgroup.controllers": "cpu memory"},
        {"cgroup.subtree_control": "memory cpu"},
        {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": "memory"},
        {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": "cpu io pids"},
        {"cgroup.controllers": "cpu memory", "cgroup.subtree_control": ""},
    ],
)
def test_delegated_cgroup_missing(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert delegated_cgroup(str(tmp_path)) is None


def test_delegated_cgroup_nonexistent(tmp_path):
    assert delegated_cgroup(str(tmp_path / "nope")) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_delegated_cgroup_not_writable(tmp_path):
    root = fake_cgroup_root(tmp_path / "ro")
    root.chmod(0o555)
    try:
        assert delegated_cgroup(str(root)) is None
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
def test_plan_limits_cgroup(tmp_path, name, directory):
    root = fake_cgroup_root(tmp_path / "cg")
    plan = plan_limits(cpu=1.5, memory=2 * GiB, name=name, cgroup_root=root, available=[0, 1])
    assert plan == LimitPlan("cgroup-v2", 2 * GiB, 1.5, cgroup=str(root / directory))
    assert Path(plan.cgroup).parent == root  # never outside the delegated root
    assert plan.cpus == ()


@pytest.mark.parametrize(
    "cpu, available, expected_count",
    [(1, [0, 1, 2, 3], 1), (2.5, [0, 1, 2, 3], 3), (8, [0, 1], 2), (1, [], 0)],
)
def test_plan_limits_rlimit(cpu, available, expected_count):
    plan = plan_limits(
        cpu=cpu, memory=512 * MiB, name="alice", cgroup_root=None, available=available
    )
    assert plan.method == "rlimit"
    assert (plan.memory, plan.cpu, plan.cgroup) == (512 * MiB, cpu, None)
    assert plan.cpus == pick_cpus(cpu, available, "alice")
    assert len(plan.cpus) == expected_count


def test_prepare_cgroup_writes_limits(tmp_path):
    root = fake_cgroup_root(tmp_path / "cg")
    plan = plan_limits(cpu=1.5, memory=2 * GiB, name="alice", cgroup_root=root, available=[])
    prepare_cgroup(plan)
    group = root / "dsplatform-alice"
    assert (group / "memory.max").read_text() == str(2 * GiB)
    assert (group / "cpu.max").read_text() == "150000 100000"
    # a second start of the same server reuses the group and rewrites the limits
    plan2 = plan_limits(cpu=0.5, memory=512 * MiB, name="alice", cgroup_root=root, available=[])
    prepare_cgroup(plan2)
    assert (group / "memory.max").read_text() == str(512 * MiB)
    assert (group / "cpu.max").read_text() == "50000 100000"


def test_remove_cgroup(tmp_path):
    root = fake_cgroup_root(tmp_path / "cg")
    plan = plan_limits(cpu=1, memory=GiB, name="bob", cgroup_root=root, available=[])
    Path(plan.cgroup or "").mkdir()
    remove_cgroup(plan)
    assert not (root / "dsplatform-bob").exists()
    remove_cgroup(plan)  # already gone: no error
    prepare_cgroup(plan)  # a plain directory with files cannot be rmdir'ed: no error either
    remove_cgroup(plan)
    remove_cgroup(None)
    remove_cgroup(LimitPlan("rlimit", GiB, 1))


def test_prepare_cgroup_ignores_rlimit_plans(tmp_path):
    prepare_cgroup(LimitPlan("rlimit", GiB, 1, cpus=(0,)))
    assert list(tmp_path.iterdir()) == []


def test_apply_in_child_joins_the_cgroup(tmp_path):
    """The child writes itself ("0") into the group's cgroup.procs before exec."""
    root = fake_cgroup_root(tmp_path / "cg")
    plan = plan_limits(cpu=1, memory=GiB, name="carol", cgroup_root=root, available=[])
    prepare_cgroup(plan)
    subprocess.run(
        [sys.executable, "-c", "pass"],
        preexec_fn=lambda: apply_in_child(plan),
        check=True,
        timeout=60,
    )
    assert (Path(plan.cgroup or "") / "cgroup.procs").read_text() == "0"


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
    plan = plan_limits(cpu=1, memory=GiB, name="dave", cgroup_root=None, available=available)
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
