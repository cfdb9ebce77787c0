"""Sandbox cgroups for real: the v1 hierarchy of this machine enforces memory for the whole
sandbox, a CPU quota, a task limit and a device allow-list; the v2 device filter (BPF) runs on
the machine's real cgroup2 mount. Plans are pure and checked as tables first."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub_ext.spawners import cgroups
from hub_ext.spawners.cgroups import CgroupPlan, Limits, cpu_max, plan_v1, plan_v2, v1_mounts
from hub_ext.spawners.devices import DEFAULT_RULES, DeviceRule, bpf_program, sandbox_rules

from .host import require_root_cgroups, require_unified_hierarchy

MiB = 1024**2
MOUNTS = """\
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/devices cgroup rw,relatime,devices 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
proc /proc proc rw 0 0
"""


# --- pure ------------------------------------------------------------------------------------


def test_v1_mounts_are_read_from_proc_mounts() -> None:
    assert v1_mounts(MOUNTS) == {
        "cpu": "/sys/fs/cgroup/cpu",
        "cpuacct": "/sys/fs/cgroup/cpuacct",
        "memory": "/sys/fs/cgroup/memory",
        "devices": "/sys/fs/cgroup/devices",
        "pids": "/sys/fs/cgroup/pids",
    }
    comounted = "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"
    assert v1_mounts(comounted) == {"cpu": "/sys/fs/cgroup/cpu,cpuacct",
                                    "cpuacct": "/sys/fs/cgroup/cpu,cpuacct"}  # fmt: skip


@pytest.mark.parametrize(
    ("cpu", "expected"),
    [(1, "100000 100000"), (1.5, "150000 100000"), (0.5, "50000 100000"),
     (0.001, "1000 100000"), (0, "1000 100000"), (1 / 3, "33333 100000")],
)  # fmt: skip
def test_cpu_max(cpu: float, expected: str) -> None:
    assert cpu_max(cpu) == expected


def test_plan_v1_writes_every_limit_for_the_whole_sandbox() -> None:
    rules = (*DEFAULT_RULES, DeviceRule("c", 195, 1))
    plan = plan_v1(Limits(512 * MiB, 0.5, 64, rules), "dsp-alice-default", v1_mounts(MOUNTS))
    base = "/sys/fs/cgroup/{}/dsplatform/dsp-alice-default"
    assert plan.method == "cgroup-v1"
    assert plan.groups == tuple(base.format(c) for c in cgroups.V1_CONTROLLERS)
    writes = dict(plan.writes[:5])
    assert writes == {
        base.format("memory") + "/memory.limit_in_bytes": str(512 * MiB),
        "?" + base.format("memory") + "/memory.memsw.limit_in_bytes": str(512 * MiB),
        base.format("cpu") + "/cpu.cfs_period_us": "100000",
        base.format("cpu") + "/cpu.cfs_quota_us": "50000",
        base.format("pids") + "/pids.max": "64",
    }
    devices = [v for f, v in plan.writes if f.startswith(base.format("devices"))]
    assert devices[0] == "a"  # deny everything, then the allow-list
    assert devices[1:] == [r.v1() for r in rules] and "c 195:1 rwm" in devices
    assert plan.usage_file == base.format("cpuacct") + "/cpuacct.usage"
    assert CgroupPlan.from_state(plan.to_state()) == plan


def test_plan_v2_one_group_with_a_bpf_device_filter() -> None:
    rules = (DeviceRule("c", 1, 3),)
    plan = plan_v2(Limits(2 * 1024 * MiB, 1.5, 256, rules), "dsp-bob-gpu", "/sys/fs/cgroup/dsp")
    group = "/sys/fs/cgroup/dsp/dsplatform-dsp-bob-gpu"
    assert plan.groups == (group,)
    assert dict(plan.writes) == {
        f"{group}/memory.max": str(2 * 1024 * MiB),
        f"?{group}/memory.swap.max": "0",
        f"{group}/cpu.max": "150000 100000",
        f"{group}/pids.max": "256",
    }
    assert plan.bpf_devices == rules and plan.usage_file == f"{group}/cpu.stat"
    assert CgroupPlan.from_state(plan.to_state()) == plan


def test_v2_limits_are_written_into_a_delegated_directory(tmp_path: Path) -> None:
    """cgroup v2's memory/cpu/pids controllers are bound to v1 on this machine: the file
    writes are checked against a directory laid out like a delegated v2 root."""
    root = tmp_path / "cg"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "cgroup.subtree_control").write_text("cpu memory pids\n")
    assert cgroups.delegated_v2(str(root)) == str(root)
    (root / "cgroup.subtree_control").write_text("cpu memory\n")
    assert cgroups.delegated_v2(str(root)) is None  # no pids: not enough to confine
    (root / "cgroup.subtree_control").write_text("cpu memory pids\n")
    plan = plan_v2(Limits(MiB * 100, 2, 10, None), "x", str(root))
    cgroups.create(plan)
    group = Path(plan.groups[0])
    assert (group / "memory.max").read_text() == str(MiB * 100)
    assert (group / "cpu.max").read_text() == "200000 100000"
    assert (group / "pids.max").read_text() == "10"


def test_sandbox_rules_allow_only_the_granted_gpus(tmp_path: Path) -> None:
    require_root_cgroups()
    nodes = make_gpu_nodes(tmp_path)
    rules = sandbox_rules(["1"], str(tmp_path / "nvidia{id}"), [str(nodes["ctl"])])
    assert rules[: len(DEFAULT_RULES)] == DEFAULT_RULES
    assert DeviceRule("c", 195, 1) in rules and DeviceRule("c", 195, 255) in rules
    assert DeviceRule("c", 195, 0) not in rules
    assert sandbox_rules([], str(tmp_path / "nvidia{id}"), [str(nodes["ctl"])]) == DEFAULT_RULES
    # demo device ids without nodes (no driver): nothing more is allowed
    assert sandbox_rules(["7"], str(tmp_path / "nvidia{id}"), []) == DEFAULT_RULES


def test_the_bpf_program_is_a_sequence_of_whole_instructions() -> None:
    program = bpf_program((DeviceRule("c", 1, 3), DeviceRule("c", 136, None)))
    assert len(program) % 8 == 0
    # 4 loads, rule one: 3 checks + 2, rule two: 2 checks + 2, the final deny: 2
    assert len(program) // 8 == 4 + 5 + 4 + 2


# --- real: cgroup v1 on this machine ---------------------------------------------------------


def make_gpu_nodes(base: Path) -> dict[str, Path]:
    """Character devices with the NVIDIA major (195) and no driver behind them: opening one
    that the cgroup allows fails with ENXIO, one it denies with EPERM."""
    nodes = {"0": base / "nvidia0", "1": base / "nvidia1", "ctl": base / "nvidiactl"}
    for name, path in nodes.items():
        minor = 255 if name == "ctl" else int(name)
        if not path.exists():
            os.mknod(path, 0o666 | 0o020000, os.makedev(195, minor))
        path.chmod(0o666)  # mknod obeys the umask; sandboxes open them as other accounts
    return nodes


@pytest.fixture
def sandbox_group(tmp_path: Path) -> Iterator[callable]:
    """``make(limits) -> plan``: real v1 cgroups for a test sandbox, removed afterwards."""
    require_root_cgroups()
    made: list[CgroupPlan] = []
    mounts = cgroups.writable_v1(v1_mounts(Path("/proc/self/mounts").read_text()))
    assert mounts is not None

    def make(limits: Limits) -> CgroupPlan:
        plan = plan_v1(limits, f"test-{uuid.uuid4().hex[:8]}", mounts)
        cgroups.create(plan)
        made.append(plan)
        return plan

    yield make
    for plan in made:
        cgroups.remove(plan)
        assert not any(Path(g).exists() for g in plan.groups)


def run_in(plan: CgroupPlan, code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        preexec_fn=lambda: cgroups.join(plan),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


HOLD = """
import mmap, os, sys, time
size = int(sys.argv[1])
buf = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
for i in range(0, size, 4096):
    buf[i] = 1  # touch every page: it is charged to the cgroup
print("holding", flush=True)
time.sleep(30)
"""


def test_memory_is_limited_for_the_whole_sandbox_not_per_process(sandbox_group) -> None:
    """Two processes that each take 70 % of the grant (shared anonymous mappings, which
    RLIMIT_DATA never counted) cannot both hold it: the kernel kills inside the sandbox."""
    grant = 256 * MiB
    plan = sandbox_group(Limits(grant, 2, 64))
    share = str(int(grant * 0.7))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD, share],
            preexec_fn=lambda: cgroups.join(plan),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.2)
        codes = [p.poll() for p in procs]
        assert -signal.SIGKILL in codes, codes  # one was OOM-killed
        assert cgroups.oom_kills(plan) >= 1
    finally:
        for p in procs:
            p.kill()
            p.wait()
    # a single process under the grant is fine
    ok = run_in(plan, f"b = bytearray({int(grant * 0.5)}); print('ok')")
    assert ok.stdout.strip() == "ok", ok.stderr


def test_a_busy_sandbox_gets_its_cpu_quota(sandbox_group) -> None:
    """0.5 CPU: a busy loop in two processes (and any affinity they set) gets about half a
    core in total, from the cgroup's own accounting (asserted loosely: machines are noisy)."""
    plan = sandbox_group(Limits(512 * MiB, 0.5, 64))
    before, started = cgroups.cpu_seconds(plan), time.monotonic()
    run_in(
        plan,
        """
        import os, time
        os.sched_setaffinity(0, os.sched_getaffinity(1) or {0})  # widening affinity: no help
        if os.fork() == 0:
            end = time.monotonic() + 3
            while time.monotonic() < end: pass
            os._exit(0)
        end = time.monotonic() + 3
        while time.monotonic() < end: pass
        os.wait()
    """,
    )
    share = (cgroups.cpu_seconds(plan) - before) / (time.monotonic() - started)
    assert 0.2 < share < 0.8, share  # unconfined, two busy processes would use ~2


def test_a_fork_loop_stops_at_the_task_limit(sandbox_group) -> None:
    plan = sandbox_group(Limits(512 * MiB, 1, 24))
    out = run_in(
        plan,
        """
        import os, time
        children = []
        try:
            for _ in range(200):  # bounded: the test never forks more than this
                pid = os.fork()
                if pid == 0:
                    time.sleep(20)
                    os._exit(0)
                children.append(pid)
        except OSError as e:
            print("stopped", len(children), e.errno)
        for pid in children:
            os.kill(pid, 9)
    """,
    )
    words = out.stdout.split()
    assert words[0] == "stopped", out.stdout + out.stderr
    assert int(words[1]) < 24  # python itself is one of the 24 tasks


def test_a_sandbox_opens_only_its_granted_gpu_nodes(sandbox_group, tmp_path: Path) -> None:
    nodes = make_gpu_nodes(tmp_path)
    rules = sandbox_rules(["1"], str(tmp_path / "nvidia{id}"), [str(nodes["ctl"])])
    plan = sandbox_group(Limits(256 * MiB, 1, 64, rules))
    out = run_in(
        plan,
        f"""
        import errno, os
        for name in ("nvidia0", "nvidia1", "nvidiactl"):
            try:
                os.close(os.open({str(tmp_path)!r} + "/" + name, os.O_RDWR))
                print(name, "opened")
            except OSError as e:
                print(name, errno.errorcode[e.errno])
        os.close(os.open("/dev/null", os.O_RDWR)); print("null opened")
    """,
    )
    assert out.stdout.split("\n")[:4] == [
        "nvidia0 EPERM",  # another sandbox's GPU: the cgroup refuses it
        "nvidia1 ENXIO",  # its own: allowed (there is no driver behind it here)
        "nvidiactl ENXIO",
        "null opened",
    ], out.stdout + out.stderr


def test_removing_the_group_kills_what_is_left(sandbox_group) -> None:
    plan = sandbox_group(Limits(256 * MiB, 1, 64))
    stray = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             preexec_fn=lambda: cgroups.join(plan))  # fmt: skip
    time.sleep(0.3)
    assert stray.pid in cgroups.members(plan)
    cgroups.remove(plan)
    assert stray.wait(10) == -signal.SIGKILL
    assert not any(Path(g).exists() for g in plan.groups)


# --- real: the cgroup v2 device filter on this machine's cgroup2 mount ------------------------


def test_the_v2_bpf_filter_allows_only_the_granted_gpu(tmp_path: Path) -> None:
    root = require_unified_hierarchy()
    nodes = make_gpu_nodes(tmp_path)
    rules = sandbox_rules(["1"], str(tmp_path / "nvidia{id}"), [str(nodes["ctl"])])
    plan = CgroupPlan("cgroup-v2", (os.path.join(root, f"dsp-test-{uuid.uuid4().hex[:8]}"),),
                      (), bpf_devices=rules)  # fmt: skip
    cgroups.create(plan)  # only the device filter: this mount has no other controllers
    try:
        out = run_in(
            plan,
            f"""
            import errno, os
            for path in ({str(nodes["0"])!r}, {str(nodes["1"])!r}, "/dev/null", "/dev/zero"):
                try:
                    os.close(os.open(path, os.O_RDWR)); print("opened")
                except OSError as e:
                    print(errno.errorcode[e.errno])
        """,
        )
        assert out.stdout.split() == ["EPERM", "ENXIO", "opened", "opened"], out.stderr
    finally:
        cgroups.remove(plan)
