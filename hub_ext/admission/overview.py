"""The whole platform's usage, for admins: every server's grant, GPU-hours this week per user
and per group against their budgets, and pool occupancy per GPU type.

Pure: built from the ledger's grants, the servers' states, the week's hours and the groups;
the admin page, ``GET /hub/api/dsplatform/usage?all=1`` (JSON or CSV) and the hub's
Prometheus gauges (:mod:`hub_ext.monitoring.hub_metrics`) all render this one record.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hub_ext.admission.policy import Policy
from hub_ext.admission.quota import effective_limits, gpu_capacity
from hub_ext.admission.reservations import Grant

SERVER_COLUMNS = ("user", "server", "profile", "state", "cpu", "memory", "gpus", "gpu_type",
                  "devices", "age_seconds")  # fmt: skip


@dataclass(frozen=True)
class ServerRow:
    """A running or pending server and what it holds."""

    user: str
    server: str
    profile: str
    state: str  # "running", "pending" (spawning or stopping), or "reserved"
    cpu: float
    memory: int
    gpus: int
    gpu_type: str | None
    devices: tuple[str, ...]
    age_seconds: float | None  # since its reservation (None: reserved before this was kept)


@dataclass(frozen=True)
class UserHours:
    user: str
    groups: tuple[str, ...]
    gpu_hours: float
    budget: float | None  # the user's effective gpu_hours_per_week (None: unlimited)


@dataclass(frozen=True)
class GroupHours:
    group: str
    members: int
    gpu_hours: float  # of all its members this week
    budget_per_member: float | None  # the group's gpu_hours_per_week quota


@dataclass(frozen=True)
class PoolRow:
    gpu_type: str
    in_use: int
    total: int | None  # None: no pool or device list bounds it


@dataclass(frozen=True)
class PlatformUsage:
    servers: tuple[ServerRow, ...] = ()
    users: tuple[UserHours, ...] = ()
    groups: tuple[GroupHours, ...] = ()
    pools: tuple[PoolRow, ...] = ()
    profiles: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # slug -> state -> n

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for row in data["servers"]:
            row["devices"] = list(row["devices"])
        for row in data["users"]:
            row["groups"] = list(row["groups"])
        data["profiles"] = {k: dict(v) for k, v in self.profiles.items()}
        return data

    def servers_csv(self) -> str:
        """The servers as CSV (devices joined by spaces), with a header line."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(SERVER_COLUMNS)
        for row in self.servers:
            values = asdict(row)
            values["devices"] = " ".join(row.devices)
            writer.writerow([values[c] for c in SERVER_COLUMNS])
        return out.getvalue()


def platform_usage(
    policy: Policy,
    grants: Sequence[Grant],
    states: Mapping[tuple[str, str], str],
    hours: Mapping[str, float],
    members: Mapping[str, Sequence[str]],
    now: float,
) -> PlatformUsage:
    """The overview. ``states``: (user, server) -> running/pending; ``hours``: user ->
    GPU-hours this week; ``members``: group -> user names."""
    tables = policy.quotas
    servers = tuple(
        ServerRow(
            g.user, g.server, g.profile,
            states.get(g.key, "worker" if g.kind == "worker" else "reserved"),  # a Dask worker
            g.cpu, g.memory, g.gpus,
            g.gpu_type, g.devices, round(now - g.reserved_at, 1) if g.reserved_at else None,
        )
        for g in sorted(grants, key=lambda g: (g.user, g.server))
    )  # fmt: skip
    groups_of: dict[str, list[str]] = {}
    for group, names in members.items():
        for name in names:
            groups_of.setdefault(name, []).append(group)
    users = []
    for name in sorted(set(hours) | set(groups_of) | {g.user for g in grants}):
        mine = tuple(sorted(groups_of.get(name, [])))
        limit = effective_limits(tables, name, mine).get("gpu_hours_per_week")
        users.append(
            UserHours(name, mine, round(hours.get(name, 0.0), 4), limit.value if limit else None)
        )
    groups = tuple(
        GroupHours(
            group, len(names), round(sum(hours.get(n, 0.0) for n in names), 4),
            tables.groups.get(group, {}).get("gpu_hours_per_week"),
        )
        for group, names in sorted(members.items())
    )  # fmt: skip
    gpu_types = sorted(
        {p.gpu_type for p in policy.profiles if p.gpu_type}
        | set(tables.pools) | set(policy.gpu_devices) | {g.gpu_type for g in grants if g.gpu_type}
    )  # fmt: skip
    pools = tuple(
        PoolRow(t, sum(g.gpus for g in grants if g.gpu_type == t),
                gpu_capacity(tables, policy.gpu_devices, t))
        for t in gpu_types
    )  # fmt: skip
    profiles: dict[str, dict[str, int]] = {p.slug: {"running": 0, "pending": 0}
                                           for p in policy.profiles}  # fmt: skip
    for row in servers:
        counts = profiles.setdefault(row.profile, {"running": 0, "pending": 0})
        state = "running" if row.state == "running" else "pending"
        counts[state] += 1
    return PlatformUsage(servers, tuple(users), groups, pools, profiles)
