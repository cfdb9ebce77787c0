"""Which device nodes a sandbox may open: an allow-list, enforced by the kernel.

A sandbox may open the usual pseudo-devices (the container runtimes' default list: null,
zero, full, random, urandom, tty, console, ptmx, pseudo-terminals), the NVIDIA control
nodes it needs, and the device nodes of *its granted GPUs*; every other device (another
sandbox's GPU, disks, ...) is refused with EPERM whatever ``CUDA_VISIBLE_DEVICES`` says.

Enforced by the cgroup v1 ``devices`` controller (``devices.deny``/``devices.allow`` lines)
or, on cgroup v2, by a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program attached to the sandbox's
cgroup (what runc and systemd's ``DeviceAllow=`` do). The rules and the BPF bytecode are
built by pure functions; :func:`attach_bpf_filter` loads and attaches them.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DeviceRule:
    """Allow all access (read, write, mknod) to devices of ``kind`` ``major:minor``."""

    kind: str  # "c" (character) or "b" (block)
    major: int | None  # None: any
    minor: int | None  # None: any

    def v1(self) -> str:
        """The line for ``devices.allow`` (cgroup v1)."""
        major = "*" if self.major is None else str(self.major)
        minor = "*" if self.minor is None else str(self.minor)
        return f"{self.kind} {major}:{minor} rwm"

    def to_state(self) -> list[object]:
        return [self.kind, self.major, self.minor]

    @classmethod
    def from_state(cls, data: Sequence[object]) -> DeviceRule:
        kind, major, minor = data
        return cls(str(kind), None if major is None else int(str(major)),
                   None if minor is None else int(str(minor)))  # fmt: skip


# what docker/runc allow every container (without mknod of arbitrary devices)
DEFAULT_RULES = (
    DeviceRule("c", 1, 3),  # /dev/null
    DeviceRule("c", 1, 5),  # /dev/zero
    DeviceRule("c", 1, 7),  # /dev/full
    DeviceRule("c", 1, 8),  # /dev/random
    DeviceRule("c", 1, 9),  # /dev/urandom
    DeviceRule("c", 5, 0),  # /dev/tty
    DeviceRule("c", 5, 1),  # /dev/console
    DeviceRule("c", 5, 2),  # /dev/ptmx
    DeviceRule("c", 136, None),  # /dev/pts/* (JupyterLab terminals)
)
NVIDIA_CONTROL_NODES = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
)


def node_rule(path: str | os.PathLike[str]) -> DeviceRule | None:
    """The rule allowing exactly the device node at ``path`` (None if it is not one)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        return None
    return DeviceRule(kind, os.major(st.st_rdev), os.minor(st.st_rdev))


def sandbox_rules(
    granted: Iterable[str], node_template: str, control_nodes: Iterable[str]
) -> tuple[DeviceRule, ...]:
    """The allow-list of a sandbox granted GPU device ids ``granted``.

    ``node_template`` names a GPU's node (``"/dev/nvidia{id}"``); nodes that do not exist
    (a machine without the driver, demo device ids) add nothing.
    """
    rules = list(DEFAULT_RULES)
    paths = [*control_nodes] if granted else []
    paths += [node_template.format(id=device) for device in granted]
    for path in paths:
        rule = node_rule(path)
        if rule is not None and rule not in rules:
            rules.append(rule)
    return tuple(rules)


# --- cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program ----------------------------------------

# struct bpf_cgroup_dev_ctx { __u32 access_type; __u32 major; __u32 minor; };
# access_type = (BPF_DEVCG_ACC_* << 16) | BPF_DEVCG_DEV_* (block 1, char 2)
_DEV_TYPE = {"b": 1, "c": 2}
_LDX_W, _AND_K, _JNE_K, _MOV_K, _EXIT = 0x61, 0x57, 0x55, 0xB7, 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def bpf_program(rules: Sequence[DeviceRule]) -> bytes:
    """Bytecode that returns 1 (allow) for a device matching one of ``rules``, else 0."""
    code = [
        _insn(_LDX_W, dst=2, src=1, off=0),  # r2 = ctx->access_type
        _insn(_AND_K, dst=2, imm=0xFFFF),  # r2 = device type
        _insn(_LDX_W, dst=3, src=1, off=4),  # r3 = ctx->major
        _insn(_LDX_W, dst=4, src=1, off=8),  # r4 = ctx->minor
    ]
    for rule in rules:
        checks = [(2, _DEV_TYPE[rule.kind])]
        if rule.major is not None:
            checks.append((3, rule.major))
        if rule.minor is not None:
            checks.append((4, rule.minor))
        block = len(checks) + 2  # the checks, r0 = 1, exit
        for i, (register, value) in enumerate(checks):
            code.append(_insn(_JNE_K, dst=register, off=block - i - 1, imm=value))
        code += [_insn(_MOV_K, dst=0, imm=1), _insn(_EXIT)]
    code += [_insn(_MOV_K, dst=0, imm=0), _insn(_EXIT)]
    return b"".join(code)


_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine, 321)
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_BPF_PROG_TYPE_CGROUP_DEVICE, _BPF_CGROUP_DEVICE = 15, 6


class _ProgLoad(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("rest", ctypes.c_char * 80),
    ]


class _ProgAttach(ctypes.Structure):
    _fields_ = [
        ("target_fd", ctypes.c_uint32),
        ("attach_bpf_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("rest", ctypes.c_char * 80),
    ]


def attach_bpf_filter(group: Path, rules: Sequence[DeviceRule]) -> None:
    """Load the allow-list program and attach it to the cgroup v2 directory ``group``.

    The attachment holds the program: it stays in force until the cgroup is removed.

    Raises:
        OSError: the kernel refused to load or attach it (the verifier's log included).
    """
    libc = ctypes.CDLL(None, use_errno=True)
    program = bpf_program(rules)
    insns = ctypes.create_string_buffer(program, len(program))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(1 << 16)
    load = _ProgLoad(
        prog_type=_BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt=len(program) // 8,
        insns=ctypes.addressof(insns),
        license=ctypes.addressof(license_),
        log_level=1,
        log_size=len(log),
        log_buf=ctypes.addressof(log),
    )
    prog_fd = libc.syscall(_SYS_BPF, _BPF_PROG_LOAD, ctypes.byref(load), ctypes.sizeof(load))
    if prog_fd < 0:
        err = ctypes.get_errno()
        verifier = log.value.decode(errors="replace").strip()
        raise OSError(err, f"cannot load the device filter: {os.strerror(err)} {verifier}")
    try:
        cgroup_fd = os.open(group, os.O_RDONLY | os.O_DIRECTORY)
        try:
            attach = _ProgAttach(
                target_fd=cgroup_fd, attach_bpf_fd=prog_fd, attach_type=_BPF_CGROUP_DEVICE
            )
            if libc.syscall(_SYS_BPF, _BPF_PROG_ATTACH, ctypes.byref(attach),
                            ctypes.sizeof(attach)) != 0:  # fmt: skip
                err = ctypes.get_errno()
                raise OSError(err, f"cannot attach the device filter to {group}")
        finally:
            os.close(cgroup_fd)
    finally:
        os.close(prog_fd)
