"""Quota arithmetic (pure functions on plain data) and the ``QuotaPolicy`` configuration.

A user's limit for each key is the most generous of ``QuotaPolicy.default`` and the entries
of their groups; ``QuotaPolicy.users[name]`` overrides. Limits count running *and* pending
servers. ``group_pools`` cap what all members of a group hold at once; ``pools`` cap the
whole platform per GPU type. A key that appears nowhere is unlimited.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from traitlets import Dict
from traitlets.config import Configurable

from hub_ext.admission.options import Request
from hub_ext.admission.refusals import Refusal
from hub_ext.admission.units import (
    QuantityError,
    format_bytes,
    format_cpu,
    parse_bytes,
    parse_count,
    parse_cpu,
)
from hub_ext.errors import ConfigError

QUOTA_KEYS = ("servers", "cpu", "memory", "gpus", "gpu_hours_per_week")
POOL_KEYS = ("servers", "cpu", "memory", "gpus")


class QuotaPolicy(Configurable):
    """Per-user quotas, shared group pools and platform GPU pools."""

    default = Dict(
        {"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0, "gpu_hours_per_week": 0},
        help="""Limits for every user, counting running and pending servers.

        Keys: servers, cpu, memory (e.g. "4G"), gpus, gpu_hours_per_week. A key left out
        everywhere is unlimited; 0 means none.

            c.QuotaPolicy.default = {"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0,
                                     "gpu_hours_per_week": 0}
        """,
    ).tag(config=True)

    groups = Dict(
        {},
        help="""Limits for members of hub groups; a user gets the most generous of the
        default and each of their groups, key by key.

            c.QuotaPolicy.groups = {"ml-research": {"servers": 2, "cpu": 32, "memory": "128G",
                                                    "gpus": 4, "gpu_hours_per_week": 40}}
        """,
    ).tag(config=True)

    users = Dict(
        {},
        help="""Per-user overrides; they win over default and groups, key by key.

            c.QuotaPolicy.users = {"alice": {"gpus": 8}}
        """,
    ).tag(config=True)

    group_pools = Dict(
        {},
        help="""Resources shared by all members of a group at once (servers, cpu, memory,
        gpus). A member of several pooled groups counts in each of them.

            c.QuotaPolicy.group_pools = {"ml-research": {"gpus": 6}}
        """,
    ).tag(config=True)

    pools = Dict(
        {},
        help="""Whole-platform capacity per GPU type. In local mode the capacity is also
        bounded by the devices listed in c.LocalProfileSpawner.gpu_devices.

            c.QuotaPolicy.pools = {"nvidia-a100": 8}
        """,
    ).tag(config=True)


@dataclass(frozen=True)
class Limit:
    """A limit and where it comes from ("default quota", a group name, "user alice")."""

    value: float
    source: str


@dataclass
class Usage:
    """What a user (or a pooled group) holds: running plus pending servers."""

    servers: int = 0
    cpu: float = 0.0
    memory: int = 0
    gpus: int = 0

    def get(self, key: str) -> float:
        return float(getattr(self, key))

    def add(self, other: Usage, sign: int = 1) -> None:
        self.servers += sign * other.servers
        self.cpu = round(self.cpu + sign * other.cpu, 6)
        self.memory += sign * other.memory
        self.gpus += sign * other.gpus

    def as_dict(self) -> dict[str, Any]:
        return {
            "servers": self.servers,
            "cpu": self.cpu,
            "memory": format_bytes(self.memory),
            "gpus": self.gpus,
        }


KINDS = ("server", "job", "worker")  # what a grant holds resources for


def request_usage(request: Request, kind: str = "server") -> Usage:
    """What a grant of ``kind`` adds: interactive servers count against ``servers``; jobs and
    Dask workers only against CPU, memory and GPUs (and the GPU pool and GPU-hours)."""
    servers = 1 if kind == "server" else 0
    return Usage(servers=servers, cpu=request.cpu, memory=request.memory, gpus=request.gpus)


@dataclass(frozen=True)
class QuotaTables:
    """``QuotaPolicy`` validated into numbers (bytes for memory)."""

    default: Mapping[str, float] = field(default_factory=dict)
    groups: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    users: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    group_pools: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    pools: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_policy(cls, policy: QuotaPolicy) -> QuotaTables:
        return cls.from_raw(
            default=policy.default,
            groups=policy.groups,
            users=policy.users,
            group_pools=policy.group_pools,
            pools=policy.pools,
        )

    @classmethod
    def from_raw(
        cls,
        default: Mapping[str, Any] | None = None,
        groups: Mapping[str, Any] | None = None,
        users: Mapping[str, Any] | None = None,
        group_pools: Mapping[str, Any] | None = None,
        pools: Mapping[str, Any] | None = None,
    ) -> QuotaTables:
        """Validate raw admin dicts; raise :class:`ConfigError` naming the key."""
        pool_table: dict[str, int] = {}
        for gpu_type, size in (pools or {}).items():
            try:
                pool_table[str(gpu_type)] = parse_count(size)
            except QuantityError as e:
                raise ConfigError(f"c.QuotaPolicy.pools[{gpu_type!r}]: {e}") from None
        return cls(
            default=_table(default or {}, "c.QuotaPolicy.default", QUOTA_KEYS),
            groups=_tables(groups or {}, "c.QuotaPolicy.groups", QUOTA_KEYS),
            users=_tables(users or {}, "c.QuotaPolicy.users", QUOTA_KEYS),
            group_pools=_tables(group_pools or {}, "c.QuotaPolicy.group_pools", POOL_KEYS),
            pools=pool_table,
        )


def _tables(raw: Mapping[str, Any], where: str, keys: Sequence[str]) -> dict[str, dict[str, float]]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a dict of name -> limits")
    return {str(name): _table(entry, f"{where}[{name!r}]", keys) for name, entry in raw.items()}


def _table(raw: Any, where: str, keys: Sequence[str]) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a dict with keys {', '.join(keys)}")
    table: dict[str, float] = {}
    for key, value in raw.items():
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(keys)})")
        try:
            if key == "memory":
                table[key] = parse_bytes(value)
            elif key in ("servers", "gpus"):
                table[key] = parse_count(value)
            else:
                table[key] = parse_cpu(value)
        except QuantityError as e:
            raise ConfigError(f"{where}: key {key!r}: {e}") from None
    return table


def effective_limits(tables: QuotaTables, user: str, groups: Sequence[str]) -> dict[str, Limit]:
    """The most generous of default and the user's groups, then the user's override."""
    limits: dict[str, Limit] = {
        key: Limit(value, "default quota") for key, value in tables.default.items()
    }
    for group in sorted(groups):
        for key, value in tables.groups.get(group, {}).items():
            current = limits.get(key)
            if (
                current is None
                or value > current.value
                or (value == current.value and current.source == "default quota")
            ):
                limits[key] = Limit(value, group)
    for key, value in tables.users.get(user, {}).items():
        limits[key] = Limit(value, f"user {user}")
    return limits


def gpu_capacity(
    tables: QuotaTables, devices: Mapping[str, Sequence[str]], gpu_type: str
) -> int | None:
    """Platform capacity of a GPU type: the pool, bounded by local devices; None = unlimited."""
    caps = []
    if gpu_type in tables.pools:
        caps.append(tables.pools[gpu_type])
    if gpu_type in devices:
        caps.append(len(devices[gpu_type]))
    return min(caps) if caps else None


_NOUN = {"servers": ("server", "servers"), "cpu": ("CPU", "CPUs"), "gpus": ("GPU", "GPUs")}
_TITLE = {"servers": "Server", "cpu": "CPU", "memory": "Memory", "gpus": "GPU"}


def _fmt(key: str, value: float) -> str:
    if key == "memory":
        return format_bytes(value)
    if key == "cpu":
        return format_cpu(value)
    return str(int(value))


def _amount(key: str, value: float) -> str:
    if key == "memory":
        return format_bytes(value)
    one, many = _NOUN[key]
    return f"{_fmt(key, value)} {one if value == 1 else many}"


@dataclass(frozen=True)
class Standing:
    """Everything a request is weighed against: one applicant's limits and what is held now.

    Built by :meth:`hub_ext.admission.reservations.Ledger.standing` from the ledger's
    totals; a plain record so :func:`check_request` stays a pure function.
    """

    limits: Mapping[str, Limit]
    usage: Usage = field(default_factory=Usage)
    gpu_hours_used: float = 0.0
    group_pools: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    group_usage: Mapping[str, Usage] = field(default_factory=dict)
    gpu_capacity: int | None = None  # platform capacity of the request's GPU type
    gpus_in_use: int = 0


def check_request(request: Request, standing: Standing, kind: str = "server") -> None:
    """Raise :class:`Refusal` if ``request`` would exceed a limit, a pool or capacity.

    Order: per-user quotas (403 ``quota``), weekly GPU-hours (403 ``quota``), group pools
    (403 ``quota``), platform GPU capacity (503 ``capacity``).
    """
    wanted = request_usage(request, kind)
    limits, usage = standing.limits, standing.usage
    for key in POOL_KEYS:
        ask = wanted.get(key)
        if key in limits and ask > 0:
            limit = limits[key]
            held = usage.get(key)
            if held + ask > limit.value + 1e-9:
                raise Refusal(
                    "quota",
                    f"{_TITLE[key]} quota exceeded: {limit.source} allows "
                    f"{_amount(key, limit.value)} per user; running {_fmt(key, held)} + "
                    f"requested {_fmt(key, ask)} = {_fmt(key, held + ask)}",
                )
    if request.gpus and "gpu_hours_per_week" in limits:
        budget = limits["gpu_hours_per_week"]
        if standing.gpu_hours_used >= budget.value:
            raise Refusal(
                "quota",
                f"GPU-hour quota exhausted: {budget.source} allows "
                f"{format_cpu(budget.value)} GPU-hours per week; used "
                f"{standing.gpu_hours_used:.2f} this week (the week starts Monday 00:00 UTC)",
            )
    for group in sorted(standing.group_pools):
        held_by_group = standing.group_usage.get(group, Usage())
        for key, size in standing.group_pools[group].items():
            ask = wanted.get(key)
            held = held_by_group.get(key)
            if ask > 0 and held + ask > size + 1e-9:
                raise Refusal(
                    "quota",
                    f"{_TITLE[key]} pool of group {group} is full: {_amount(key, size)} shared "
                    f"by its members; in use {_fmt(key, held)} + requested {_fmt(key, ask)} = "
                    f"{_fmt(key, held + ask)}",
                )
    capacity, in_use = standing.gpu_capacity, standing.gpus_in_use
    if request.gpus and capacity is not None and in_use + request.gpus > capacity:
        free = max(capacity - in_use, 0)
        raise Refusal(
            "capacity",
            f"No free {request.gpu_type} GPU: the platform has {capacity}, "
            f"{in_use} in use, {free} free; requested {request.gpus}",
        )


def remaining(limits: Mapping[str, Limit], usage: Usage) -> dict[str, float | None]:
    """What the user may still request per key (None = unlimited)."""
    out: dict[str, float | None] = {}
    for key in POOL_KEYS:
        out[key] = max(limits[key].value - usage.get(key), 0) if key in limits else None
    return out
