"""Quota decision latency: the synchronous path of ``ProfileSpawner.admit`` at 100..10,000 users.

For each size a fresh JupyterHub database (SQLite file in a temp dir, created with
``jupyterhub.orm.new_session_factory``) gets N users in hub groups, a ledger holding the
grants of the running servers (2,000, or N//5 below 2,000 users) and rows in
``dsplatform_gpu_sessions`` (open ones for the running GPU servers, closed ones this week
and in earlier weeks). Then, for a random user each time, it times exactly what ``admit``
does between the user's request and the reservation:

    groups = sorted(g.name for g in user.groups)          # ProfileSpawner.group_names
    accounting = GpuAccounting(db)                        # ProfileSpawner._accounting
    request = resolve_request(options, profiles, groups)
    hours = accounting.hours_this_week(user) if request.gpus else 0.0
    grant = ledger.reserve(request, ..., gpu_hours_used=hours)

(all of it ``hub_ext.admission.admit.admit``, which the spawner calls) and releases the grant afterwards (untimed), so the state is the same for every decision.
A refusal (quota, capacity, invalid, forbidden) is a decision too and is timed the same way.
Separately it times ``GpuAccounting.open`` (an INSERT + COMMIT that ``admit`` also runs,
synchronously, for every granted GPU server) and deletes the row again.

Profiles and quotas are the test platform's (tests/conftest.py TEST_POLICY), parsed with
``hub_ext.admission.profiles.parse_profiles`` and
``hub_ext.admission.quota.QuotaTables.from_raw``. Goal:
p99 <= 5 ms at every size.

    .venv/bin/python -m bench.bench_quota [--sizes 100 1000 10000] [--decisions 5000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyterhub import orm
from sqlalchemy import delete, func, insert, select

from hub_ext.admission.accounting import GpuAccounting, gpu_sessions, utcnow, week_start
from hub_ext.admission.accounting import metadata as accounting_metadata
from hub_ext.admission.admit import Applicant, admit
from hub_ext.admission.policy import Policy
from hub_ext.admission.profiles import parse_profiles, parse_toolchains
from hub_ext.admission.quota import QuotaTables
from hub_ext.admission.refusals import Refusal
from hub_ext.admission.reservations import Grant, Ledger
from hub_ext.admission.units import parse_bytes

from .common import (
    OtherLoad,
    cpu_contention,
    log,
    result_header,
    summarize,
    table,
    write_result,
)

NAME = "bench_quota"
GOAL_P99_MS = 5.0

# tests/conftest.py TEST_POLICY, as the raw values an admin writes.
TOOLCHAINS = {"scipy": {"local_python": None, "env": {"TOOLCHAIN": "scipy"}}}
PROFILES = [
    {"slug": "cpu-small", "toolchain": "scipy", "cpu": {"default": 1, "min": 0.5, "max": 2},
     "memory": {"default": "1G", "max": "2G"}, "groups": ["*"], "idle_timeout": 3600},
    {"slug": "gpu-a100", "toolchain": "scipy", "gpu_type": "nvidia-a100",
     "gpu": {"default": 1, "min": 1, "max": 4}, "cpu": {"default": 1, "max": 4},
     "memory": {"default": "1G", "max": "8G"}, "disk": {"default": "10G", "max": "50G"},
     "groups": ["ml-research", "storm"], "idle_timeout": 1800, "env": {"PROFILE_ENV": "gpu"}},
]  # fmt: skip
QUOTAS: dict[str, Any] = {
    "default": {"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0, "gpu_hours_per_week": 0},
    "groups": {
        "ml-research": {"servers": 3, "cpu": 8, "memory": "16G", "gpus": 3,
                        "gpu_hours_per_week": 40},
        "storm": {"servers": 1, "gpus": 1, "gpu_hours_per_week": 10},
    },
    "users": {},
    "group_pools": {},
    "pools": {"nvidia-a100": 4},
}  # fmt: skip
GPU_DEVICES = {"nvidia-a100": ("0", "1", "2", "3")}
GPU_GROUPS = ("ml-research", "storm")


@dataclass
class Platform:
    """One populated hub database plus the in-memory ledger of its running servers."""

    db: Any
    users: list[orm.User]
    gpu_users: set[str]
    ledger: Ledger
    running: int
    gpus_held: int
    session_rows: int
    build_s: float


def build(
    n_users: int,
    workdir: Path,
    rng: random.Random,
    *,
    running: int,
    gpus_held: int,
    sessions_per_user: int,
    teams: int,
) -> Platform:
    """Create the database, users, groups, GPU sessions and the restored ledger."""
    t0 = time.perf_counter()
    url = f"sqlite:///{workdir / 'jupyterhub.sqlite'}"
    db = orm.new_session_factory(url)()
    groups = {name: orm.Group(name=name) for name in GPU_GROUPS}
    groups.update({f"team-{k:02d}": orm.Group(name=f"team-{k:02d}") for k in range(teams)})
    db.add_all(groups.values())
    users: list[orm.User] = []
    gpu_users: set[str] = set()
    for i in range(n_users):
        user = orm.User(name=f"user{i:05d}")
        member = [groups[f"team-{i % teams:02d}"]] if teams else []
        roll = rng.random()
        if roll < 0.05:
            member.append(groups["ml-research"])
        elif roll < 0.15:
            member.append(groups["storm"])
        if len(member) > (1 if teams else 0):
            gpu_users.add(user.name)
        user.groups = member
        users.append(user)
    db.add_all(users)
    db.commit()
    # GpuAccounting creates its table once per id(engine); a new engine in the same process
    # can reuse a dead engine's id, so create it here explicitly.
    accounting_metadata.create_all(db.get_bind())
    accounting = GpuAccounting(db)

    # The ledger as it is after a hub restart: every running server's grant restored.
    ledger = Ledger()
    now = utcnow()
    since = week_start(now)
    holders = rng.sample(users, min(running, n_users))
    gpu_holders = [u for u in holders if u.name in gpu_users][:gpus_held]
    open_rows = []
    for user in holders:
        if user in gpu_holders:
            device = str(gpu_holders.index(user))
            grant = Grant(
                id=f"g-{user.name}", user=user.name, server="", profile="gpu-a100", cpu=1.0,
                memory=parse_bytes("1G"), gpus=1, gpu_type="nvidia-a100",
                disk=parse_bytes("10G"), devices=(device,),
            )  # fmt: skip
            open_rows.append(
                {"user": user.name, "server": "", "gpu_type": "nvidia-a100", "gpus": 1,
                 "started": now - dt.timedelta(hours=rng.uniform(0.1, 5)), "stopped": None}
            )  # fmt: skip
        else:
            cpu = rng.choice([0.5, 1.0, 1.5, 2.0])
            grant = Grant(
                id=f"g-{user.name}", user=user.name, server="", profile="cpu-small", cpu=cpu,
                memory=parse_bytes(rng.choice(["1G", "2G"])), gpus=0, gpu_type=None, disk=None,
            )  # fmt: skip
        ledger.restore(grant)

    # GPU history: closed sessions this week and in the three weeks before.
    rows = list(open_rows)
    for name in sorted(gpu_users):
        for _ in range(sessions_per_user):
            started = now - dt.timedelta(hours=rng.uniform(0.5, 24 * 21))
            stopped = min(started + dt.timedelta(hours=rng.uniform(0.25, 3)), now)
            rows.append(
                {"user": name, "server": rng.choice(["", "train"]), "gpu_type": "nvidia-a100",
                 "gpus": rng.choice([1, 1, 1, 2]), "started": started, "stopped": stopped}
            )  # fmt: skip
    if rows:
        db.execute(insert(gpu_sessions), rows)
        db.commit()
    this_week = db.execute(
        select(func.count()).select_from(gpu_sessions).where(gpu_sessions.c.started >= since)
    ).scalar_one()
    log(f"  {n_users} users: {len(rows)} GPU session rows ({this_week} started this week)")
    for user in users:  # a running hub has its users' groups loaded already
        _ = [g.name for g in user.groups]
    del accounting
    return Platform(
        db=db,
        users=users,
        gpu_users=gpu_users,
        ledger=ledger,
        running=len(holders),
        gpus_held=len(gpu_holders),
        session_rows=len(rows),
        build_s=time.perf_counter() - t0,
    )


def pick_options(rng: random.Random, gpu_capable: bool) -> dict[str, Any]:
    """What a user asks for: mostly valid, a few out of range or not allowed."""
    roll = rng.random()
    if roll < 0.04:
        return {"profile": "cpu-small", "cpu": 3}  # invalid: outside the range
    if gpu_capable and roll < 0.64:
        return {"profile": "gpu-a100", "gpus": rng.choice([1, 1, 1, 2])}
    if not gpu_capable and roll < 0.08:
        return {"profile": "gpu-a100"}  # forbidden for this user's groups
    return {"profile": "cpu-small", "cpu": rng.choice([0.5, 1, 1.5, 2]), "memory": "1G"}


def decide(
    platform: Platform,
    user: orm.User,
    options: dict[str, Any],
    policy: Policy,
) -> tuple[float, str, Grant | None, tuple[float, float, float]]:
    """One admit() decision, timed; returns (seconds, outcome, grant, (before hours, hours,
    after hours)): the GPU-hours lookup is timed through the callable admit() calls."""
    clock = time.perf_counter
    t0 = clock()
    applicant = Applicant(user.name, "bench", tuple(sorted(g.name for g in user.groups)))
    accounting = GpuAccounting(platform.db)
    marks: list[float] = []  # before and after hours_this_week

    def hours_used(name: str) -> float:
        marks.append(clock())
        hours = accounting.hours_this_week(name)
        marks.append(clock())
        return hours

    grant = None
    try:
        grant = admit(options, applicant, policy, platform.ledger, hours_used).grant
        outcome = "granted-gpu" if grant.gpus else "granted"
    except Refusal as refusal:
        outcome = refusal.reason
    t3 = clock()
    t1, t2 = [*marks, t3, t3][:2]
    return t3 - t0, outcome, grant, (t1 - t0, t2 - t1, t3 - t2)


def run_size(n_users: int, args: argparse.Namespace, policy: Policy) -> dict[str, Any]:
    rng = random.Random(args.seed + n_users)
    running = 2000 if n_users >= 2000 else n_users // 5
    with tempfile.TemporaryDirectory(prefix="bench-quota-") as tmp:
        platform = build(
            n_users,
            Path(tmp),
            rng,
            running=running,
            gpus_held=args.gpus_held,
            sessions_per_user=args.sessions_per_user,
            teams=args.teams,
        )
        state_before = (len(platform.ledger.grants()), platform.ledger.gpus_in_use("nvidia-a100"))
        times: list[float] = []
        parts: list[tuple[float, float, float]] = []
        outcomes: dict[str, int] = {}
        gpu_path: list[float] = []
        opens: list[float] = []
        for i in range(args.warmup + args.decisions):
            user = rng.choice(platform.users)
            options = pick_options(rng, user.name in platform.gpu_users)
            seconds, outcome, grant, split = decide(platform, user, options, policy)
            if grant is not None:
                if grant.gpus and len(opens) < args.opens and i >= args.warmup:
                    accounting = GpuAccounting(platform.db)
                    t0 = time.perf_counter()
                    session_id = accounting.open(
                        grant.user, grant.server, "nvidia-a100", grant.gpus
                    )
                    opens.append(time.perf_counter() - t0)
                    platform.db.execute(delete(gpu_sessions).where(gpu_sessions.c.id == session_id))
                    platform.db.commit()
                platform.ledger.release(grant.user, grant.server, grant.id)
            if i < args.warmup:
                continue
            times.append(seconds)
            parts.append(split)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if options.get("profile") == "gpu-a100" and outcome not in ("invalid", "forbidden"):
                gpu_path.append(seconds)
        state_after = (len(platform.ledger.grants()), platform.ledger.gpus_in_use("nvidia-a100"))
        assert state_before == state_after, (state_before, state_after)  # not a timing check
        platform.db.close()
    ms = [t * 1000 for t in times]
    return {
        "users": n_users,
        "running_servers": platform.running,
        "gpus_held": platform.gpus_held,
        "gpu_users": len(platform.gpu_users),
        "gpu_session_rows": platform.session_rows,
        "build_s": round(platform.build_s, 2),
        "decisions": len(times),
        "decision_ms": summarize(ms),
        "gpu_path_ms": summarize([t * 1000 for t in gpu_path]),
        "resolve_ms": summarize([p[0] * 1000 for p in parts]),
        "hours_ms": summarize([p[1] * 1000 for p in parts if p[1] > 0]),
        "reserve_ms": summarize([p[2] * 1000 for p in parts]),
        "gpu_session_open_ms": summarize([t * 1000 for t in opens]),
        "outcomes": dict(sorted(outcomes.items())),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000],
                        help="user counts (default: 100 1000 10000)")  # fmt: skip
    parser.add_argument("--decisions", type=int, default=5000, help="timed decisions per size")
    parser.add_argument("--warmup", type=int, default=200, help="untimed decisions first")
    parser.add_argument("--sessions-per-user", type=int, default=8,
                        help="closed GPU sessions per GPU-group member over 3 weeks")  # fmt: skip
    parser.add_argument("--gpus-held", type=int, default=2,
                        help="running GPU servers among the restored grants (pool is 4)")  # fmt: skip
    parser.add_argument("--teams", type=int, default=20, help="extra groups without quotas")
    parser.add_argument("--opens", type=int, default=300,
                        help="GpuAccounting.open (INSERT+COMMIT) samples per size")  # fmt: skip
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    logging.disable(logging.INFO)  # alembic's INFO lines when each database is created
    contention = cpu_contention()
    others = OtherLoad()
    policy = Policy(
        toolchains=parse_toolchains(TOOLCHAINS),
        profiles=parse_profiles(PROFILES, parse_toolchains(TOOLCHAINS)),
        quotas=QuotaTables.from_raw(**QUOTAS),
        gpu_devices=GPU_DEVICES,
    )
    sizes = []
    for n in args.sizes:
        log(f"bench_quota: {n} users ...")
        sizes.append(run_size(n, args, policy))

    rows = []
    for s in sizes:
        d = s["decision_ms"]
        rows.append([
            s["users"], s["running_servers"], s["gpu_session_rows"], s["decisions"],
            d["p50"], d["p99"], d["max"], s["gpu_path_ms"]["p99"],
            s["gpu_session_open_ms"]["p50"], s["gpu_session_open_ms"]["p99"],
        ])  # fmt: skip
    print(
        "\nQuota decision latency (ms): admit() = resolve_request + hours_this_week + Ledger.reserve"
    )
    print(table(
        ["users", "running", "gpu rows", "decisions", "p50", "p99", "max", "gpu-path p99",
         "open p50", "open p99"],
        rows,
    ))  # fmt: skip
    for s in sizes:
        print(f"  {s['users']:>6} users outcomes: {s['outcomes']}")
    first, last = sizes[0], sizes[-1]
    growth_p99 = last["decision_ms"]["p99"] / first["decision_ms"]["p99"]
    growth_p50 = last["decision_ms"]["p50"] / first["decision_ms"]["p50"]
    worst_p99 = max(s["decision_ms"]["p99"] for s in sizes)
    worst_gpu_p99 = max(s["gpu_path_ms"]["p99"] for s in sizes)
    print(
        f"\ngrowth {first['users']} -> {last['users']} users: p50 x{growth_p50:.2f}, "
        f"p99 x{growth_p99:.2f}; worst p99 {worst_p99:.3f} ms, GPU-path worst p99 "
        f"{worst_gpu_p99:.3f} ms (goal <= {GOAL_P99_MS} ms)"
    )
    print("('open' = GpuAccounting.open INSERT+COMMIT that admit also runs for GPU grants)")
    result = {
        **result_header(NAME, vars(args), contention, others),
        "goal": {"p99_ms": GOAL_P99_MS},
        "sizes": sizes,
        "growth": {
            "p50": growth_p50,
            "p99": growth_p99,
            "from": first["users"],
            "to": last["users"],
        },
        "worst_p99_ms": worst_p99,
        "worst_gpu_path_p99_ms": worst_gpu_p99,
        "meets_goal": worst_p99 <= GOAL_P99_MS and worst_gpu_p99 <= GOAL_P99_MS,
    }
    path = write_result(NAME, result)
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
