"""Quota arithmetic (effective_limits, check_request) and the reservation Ledger.

Requests are real ones: options resolved by ``hub_ext.options.resolve_request`` against
profiles parsed by ``hub_ext.profiles.parse_profiles``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from hub_ext.options import Request, resolve_request
from hub_ext.profiles import parse_profiles
from hub_ext.quota import (
    QuotaTables,
    Usage,
    check_request,
    effective_limits,
    gpu_capacity,
    remaining,
)
from hub_ext.refusals import Refusal
from hub_ext.reservations import Grant, Ledger

G = 1024**3

PROFILES = parse_profiles(
    [
        {
            "slug": "cpu",
            "cpu": {"default": 1, "min": 0.5, "max": 16},
            "memory": {"default": "2G", "min": "1G", "max": "256G"},
        },
        {
            "slug": "gpu",
            "gpu_type": "nvidia-a100",
            "gpu": {"default": 1, "min": 0, "max": 8},
            "cpu": {"default": 1, "min": 0.5, "max": 16},
            "memory": {"default": "2G", "min": "1G", "max": "256G"},
            "disk": {"default": "20G", "max": "200G"},
            "groups": ["ml-research", "vision"],
        },
        {
            "slug": "h100",
            "gpu_type": "nvidia-h100",
            "gpu": {"default": 1, "min": 1, "max": 8},
            "groups": ["ml-research"],
        },
    ],
    {},
)
ALL_GROUPS = ["ml-research", "vision"]


def req(profile: str = "cpu", **options: Any) -> Request:
    return resolve_request({"profile": profile, **options}, PROFILES, ALL_GROUPS)


# The quota section of DESIGN.md.
DESIGN_QUOTAS: dict[str, Any] = {
    "default": {"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0, "gpu_hours_per_week": 0},
    "groups": {
        "ml-research": {
            "servers": 2,
            "cpu": 32,
            "memory": "128G",
            "gpus": 4,
            "gpu_hours_per_week": 40,
        }
    },
    "users": {"alice": {"gpus": 8}},
    "group_pools": {"ml-research": {"gpus": 6}},
    "pools": {"nvidia-a100": 8},
}
DESIGN = QuotaTables.from_raw(**DESIGN_QUOTAS)


# --- effective_limits --------------------------------------------------------------------

DEFAULT = {"servers": 1, "cpu": 2, "memory": "4G", "gpus": 0, "gpu_hours_per_week": 0}
D = "default quota"


@pytest.mark.parametrize(
    "tables, user, groups, expected",
    [
        pytest.param(
            {"default": DEFAULT},
            "bob",
            [],
            {
                "servers": (1, D),
                "cpu": (2, D),
                "memory": (4 * G, D),
                "gpus": (0, D),
                "gpu_hours_per_week": (0, D),
            },
            id="default-only",
        ),
        pytest.param(
            {"default": DEFAULT, "groups": {"ml": {"cpu": 32, "gpus": 4}}},
            "bob",
            ["students"],  # a group without an entry changes nothing
            {
                "servers": (1, D),
                "cpu": (2, D),
                "memory": (4 * G, D),
                "gpus": (0, D),
                "gpu_hours_per_week": (0, D),
            },
            id="group-without-entry",
        ),
        pytest.param(
            DESIGN_QUOTAS,
            "bob",
            ["ml-research"],
            {
                "servers": (2, "ml-research"),
                "cpu": (32, "ml-research"),
                "memory": (128 * G, "ml-research"),
                "gpus": (4, "ml-research"),
                "gpu_hours_per_week": (40, "ml-research"),
            },
            id="group-more-generous",
        ),
        pytest.param(
            {"default": DEFAULT, "groups": {"students": {"cpu": 1, "memory": "1G", "gpus": 2}}},
            "bob",
            ["students"],
            {
                "servers": (1, D),
                "cpu": (2, D),  # less generous: the default stays
                "memory": (4 * G, D),
                "gpus": (2, "students"),
                "gpu_hours_per_week": (0, D),
            },
            id="group-less-generous-keeps-default",
        ),
        pytest.param(
            {
                "default": DEFAULT,
                "groups": {
                    "ml-research": {"cpu": 32, "gpus": 4, "memory": "64G"},
                    "vision": {"cpu": 16, "gpus": 6, "memory": "256G"},
                    "students": {"servers": 3},
                },
            },
            "bob",
            ["vision", "students", "ml-research"],
            {
                "servers": (3, "students"),
                "cpu": (32, "ml-research"),
                "memory": (256 * G, "vision"),
                "gpus": (6, "vision"),
                "gpu_hours_per_week": (0, D),
            },
            id="several-groups-most-generous-per-key",
        ),
        pytest.param(
            {"default": DEFAULT, "groups": {"b-team": {"cpu": 8}, "a-team": {"cpu": 8}}},
            "bob",
            ["b-team", "a-team"],
            {
                "servers": (1, D),
                "cpu": (8, "a-team"),  # a tie names the first group alphabetically
                "memory": (4 * G, D),
                "gpus": (0, D),
                "gpu_hours_per_week": (0, D),
            },
            id="tie-between-groups",
        ),
        pytest.param(
            {"default": DEFAULT, "groups": {"ml": {"cpu": 2}}},
            "bob",
            ["ml"],
            {
                "servers": (1, D),
                "cpu": (2, "ml"),  # equal to the default: the group is named
                "memory": (4 * G, D),
                "gpus": (0, D),
                "gpu_hours_per_week": (0, D),
            },
            id="group-equal-to-default",
        ),
        pytest.param(
            DESIGN_QUOTAS,
            "alice",
            ["ml-research"],
            {
                "servers": (2, "ml-research"),
                "cpu": (32, "ml-research"),
                "memory": (128 * G, "ml-research"),
                "gpus": (8, "user alice"),
                "gpu_hours_per_week": (40, "ml-research"),
            },
            id="user-override-larger",
        ),
        pytest.param(
            {**DESIGN_QUOTAS, "users": {"alice": {"gpus": 1, "servers": 0}}},
            "alice",
            ["ml-research"],
            {
                "servers": (0, "user alice"),
                "cpu": (32, "ml-research"),
                "memory": (128 * G, "ml-research"),
                "gpus": (1, "user alice"),  # the override wins even when smaller
                "gpu_hours_per_week": (40, "ml-research"),
            },
            id="user-override-smaller-wins",
        ),
        pytest.param(
            {"default": {"servers": 1}, "groups": {"ml": {"gpus": 4}}},
            "bob",
            ["ml"],
            {"servers": (1, D), "gpus": (4, "ml")},  # cpu, memory, gpu-hours: unlimited
            id="absent-keys-unlimited",
        ),
        pytest.param(
            {"groups": {"ml": {"gpus": 4}}, "users": {"carol": {"cpu": 3}}},
            "carol",
            [],
            {"cpu": (3, "user carol")},
            id="no-default-user-only",
        ),
        pytest.param({}, "bob", ["ml"], {}, id="nothing-configured"),
    ],
)
def test_effective_limits(tables, user, groups, expected):
    limits = effective_limits(QuotaTables.from_raw(**tables), user, groups)
    assert {k: (v.value, v.source) for k, v in limits.items()} == expected


def test_remaining():
    limits = effective_limits(DESIGN, "bob", ["ml-research"])
    used = Usage(servers=1, cpu=8, memory=64 * G, gpus=3)
    assert remaining(limits, used) == {"servers": 1, "cpu": 24, "memory": 64 * G, "gpus": 1}
    assert remaining({}, used) == dict.fromkeys(("servers", "cpu", "memory", "gpus"))
    over = Usage(servers=5, cpu=0, memory=0, gpus=9)
    assert remaining(limits, over)["gpus"] == 0


# --- check_request -------------------------------------------------------------------------


def check(
    request: Request,
    *,
    tables: QuotaTables = DESIGN,
    user: str = "bob",
    groups: tuple[str, ...] = ("ml-research",),
    usage: Usage | None = None,
    hours: float = 0.0,
    group_usage: dict[str, Usage] | None = None,
    devices: dict[str, list[str]] | None = None,
    in_use: int = 0,
) -> None:
    gpu_type = request.gpu_type
    check_request(
        request,
        limits=effective_limits(tables, user, groups),
        usage=usage or Usage(),
        gpu_hours_used=hours,
        groups=tuple(g for g in groups if g in tables.group_pools),
        tables=tables,
        group_usage=group_usage or {},
        gpu_capacity=gpu_capacity(tables, devices or {}, gpu_type) if gpu_type else None,
        gpus_in_use=in_use,
    )


REFUSALS = [
    pytest.param(
        req("cpu"),
        {"groups": ()},
        Usage(servers=1, cpu=1, memory=2 * G),
        "quota",
        "Server quota exceeded: default quota allows 1 server per user; "
        "running 1 + requested 1 = 2",
        id="servers",
    ),
    pytest.param(
        req("cpu", cpu=1),
        {"groups": ()},
        Usage(servers=0, cpu=1.5),
        "quota",
        "CPU quota exceeded: default quota allows 2 CPUs per user; running 1.5 + requested 1 = 2.5",
        id="cpu-default",
    ),
    pytest.param(
        req("gpu", cpu=8, gpus=0),
        {},
        Usage(servers=1, cpu=25),
        "quota",
        "CPU quota exceeded: ml-research allows 32 CPUs per user; running 25 + requested 8 = 33",
        id="cpu-group",
    ),
    pytest.param(
        req("cpu", memory="16G"),
        {},
        Usage(servers=1, memory=120 * G),
        "quota",
        "Memory quota exceeded: ml-research allows 128G per user; "
        "running 120G + requested 16G = 136G",
        id="memory",
    ),
    pytest.param(
        req("cpu", memory="5G"),
        {"groups": ()},
        Usage(),
        "quota",
        "Memory quota exceeded: default quota allows 4G per user; running 0 + requested 5G = 5G",
        id="memory-alone-over",
    ),
    pytest.param(
        req("gpu", gpus=2),
        {},
        Usage(servers=1, cpu=1, memory=2 * G, gpus=3),
        "quota",
        "GPU quota exceeded: ml-research allows 4 GPUs per user; running 3 + requested 2 = 5",
        id="gpus-design-message",
    ),
    pytest.param(
        req("gpu", gpus=1),
        {"groups": ()},
        Usage(),
        "quota",
        "GPU quota exceeded: default quota allows 0 GPUs per user; running 0 + requested 1 = 1",
        id="gpus-none-allowed",
    ),
    pytest.param(
        req("gpu", gpus=2),
        {"tables": QuotaTables.from_raw(**{**DESIGN_QUOTAS, "users": {"bob": {"gpus": 1}}})},
        Usage(),
        "quota",
        "GPU quota exceeded: user bob allows 1 GPU per user; running 0 + requested 2 = 2",
        id="gpus-user-override",
    ),
    pytest.param(
        req("gpu", gpus=1),
        {"hours": 40.0},
        Usage(),
        "quota",
        "GPU-hour quota exhausted: ml-research allows 40 GPU-hours per week; used 40.00 this "
        "week (the week starts Monday 00:00 UTC)",
        id="gpu-hours-exhausted",
    ),
    pytest.param(
        req("gpu", gpus=1),
        {"hours": 52.5},
        Usage(),
        "quota",
        "GPU-hour quota exhausted: ml-research allows 40 GPU-hours per week; used 52.50 this "
        "week (the week starts Monday 00:00 UTC)",
        id="gpu-hours-overdrawn",
    ),
    pytest.param(
        req("gpu", gpus=2),
        {"group_usage": {"ml-research": Usage(servers=3, gpus=5)}},
        Usage(),
        "quota",
        "GPU pool of group ml-research is full: 6 GPUs shared by its members; "
        "in use 5 + requested 2 = 7",
        id="group-pool-gpus",
    ),
    pytest.param(
        req("cpu", cpu=4),
        {
            "tables": QuotaTables.from_raw(group_pools={"vision": {"cpu": 10, "servers": 5}}),
            "groups": ("ml-research", "vision"),
            "group_usage": {"vision": Usage(servers=2, cpu=7)},
        },
        Usage(),
        "quota",
        "CPU pool of group vision is full: 10 CPUs shared by its members; "
        "in use 7 + requested 4 = 11",
        id="group-pool-cpu",
    ),
    pytest.param(
        req("gpu", gpus=2),
        {"in_use": 7},
        Usage(),
        "capacity",
        "No free nvidia-a100 GPU: the platform has 8, 7 in use, 1 free; requested 2",
        id="platform-pool",
    ),
    pytest.param(
        req("gpu", gpus=1),
        {"devices": {"nvidia-a100": ["0", "1"]}, "in_use": 2},
        Usage(),
        "capacity",
        "No free nvidia-a100 GPU: the platform has 2, 2 in use, 0 free; requested 1",
        id="local-devices-bound-the-pool",
    ),
    pytest.param(
        req("h100", gpus=1),
        {"devices": {"nvidia-h100": ["4"]}, "in_use": 3},  # in_use above capacity: 0 free
        Usage(),
        "capacity",
        "No free nvidia-h100 GPU: the platform has 1, 3 in use, 0 free; requested 1",
        id="devices-only",
    ),
    pytest.param(
        req("gpu", gpus=4),
        {"in_use": 8, "group_usage": {"ml-research": Usage(gpus=6)}},
        Usage(gpus=1),
        "quota",
        "GPU quota exceeded: ml-research allows 4 GPUs per user; running 1 + requested 4 = 5",
        id="user-quota-before-pool-and-capacity",
    ),
    pytest.param(
        req("gpu", gpus=1),
        {"in_use": 8, "group_usage": {"ml-research": Usage(gpus=6)}},
        Usage(),
        "quota",
        "GPU pool of group ml-research is full: 6 GPUs shared by its members; "
        "in use 6 + requested 1 = 7",
        id="group-pool-before-capacity",
    ),
]


@pytest.mark.parametrize("request_, context, usage, reason, message", REFUSALS)
def test_check_request_refuses(request_, context, usage, reason, message):
    with pytest.raises(Refusal) as info:
        check(request_, usage=usage, **context)
    refusal = info.value
    assert refusal.reason == reason
    assert refusal.status_code == {"quota": 403, "capacity": 503}[reason]
    assert refusal.message == message
    assert str(refusal) == message


ACCEPTED = [
    pytest.param(req("cpu"), {"groups": ()}, Usage(), id="first-server"),
    pytest.param(req("gpu", gpus=1), {}, Usage(servers=1, gpus=3), id="gpus-exactly-at-limit"),
    pytest.param(req("cpu", cpu=0.5), {}, Usage(servers=1, cpu=31.5), id="cpu-exactly-at-limit"),
    pytest.param(
        req("cpu", cpu=0.7),
        {"groups": ()},
        Usage(servers=0, cpu=1.3),  # 1.3 + 0.7 is 2.0000000000000004 in floats
        id="cpu-float-rounding",
    ),
    pytest.param(req("cpu", memory="4G"), {"groups": ()}, Usage(), id="memory-at-limit"),
    pytest.param(
        req("gpu", gpus=2), {"user": "alice"}, Usage(servers=1, gpus=3), id="alice-override"
    ),
    pytest.param(req("gpu", gpus=0), {"hours": 400.0}, Usage(), id="no-gpus-ignores-gpu-hours"),
    pytest.param(req("gpu", gpus=1), {"hours": 39.99}, Usage(), id="gpu-hours-left"),
    pytest.param(
        req("gpu", gpus=1),
        {"group_usage": {"ml-research": Usage(gpus=5)}, "in_use": 7},
        Usage(),
        id="last-gpu-of-pool-and-platform",
    ),
    pytest.param(
        req("h100", gpus=8),
        {"tables": QuotaTables.from_raw(), "in_use": 1000},
        Usage(servers=50, cpu=500, gpus=500),
        id="nothing-configured-is-unlimited",
    ),
    pytest.param(
        req("gpu", gpus=2),
        {
            "tables": QuotaTables.from_raw(group_pools={"vision": {"gpus": 2}}),
            "groups": ("ml-research",),
            "group_usage": {"vision": Usage(gpus=2)},
        },
        Usage(),
        id="pool-of-another-group",
    ),
]


@pytest.mark.parametrize("request_, context, usage", ACCEPTED)
def test_check_request_accepts(request_, context, usage):
    check(request_, usage=usage, **context)


@pytest.mark.parametrize(
    "pools, devices, gpu_type, expected",
    [
        ({"nvidia-a100": 8}, {}, "nvidia-a100", 8),
        ({"nvidia-a100": 8}, {"nvidia-a100": ["0", "1"]}, "nvidia-a100", 2),
        ({"nvidia-a100": 1}, {"nvidia-a100": ["0", "1"]}, "nvidia-a100", 1),
        ({}, {"nvidia-a100": ["0", "1", "2"]}, "nvidia-a100", 3),
        ({"nvidia-a100": 8}, {}, "nvidia-h100", None),
        ({}, {}, "nvidia-a100", None),
        ({"nvidia-a100": 0}, {}, "nvidia-a100", 0),
    ],
)
def test_gpu_capacity(pools, devices, gpu_type, expected):
    assert gpu_capacity(QuotaTables.from_raw(pools=pools), devices, gpu_type) == expected


# --- the Ledger ------------------------------------------------------------------------------

DEVICES = {"nvidia-a100": [str(i) for i in range(8)]}
FOUR = {"nvidia-a100": ["0", "1", "2", "3"]}
ROOMY = QuotaTables.from_raw(
    default={"servers": 4, "cpu": 64, "memory": "512G", "gpus": 8, "gpu_hours_per_week": 1000},
    group_pools={"ml-research": {"gpus": 3}},
    pools={"nvidia-a100": 8},
)


def reserve(ledger: Ledger, request: Request, user: str, server: str = "", **kw: Any) -> Grant:
    kw.setdefault("groups", ["ml-research"])
    kw.setdefault("tables", ROOMY)
    kw.setdefault("devices", DEVICES)
    return ledger.reserve(request, user=user, server=server, **kw)


def snapshot(ledger: Ledger, users: list[str]) -> dict[str, Any]:
    return {
        "users": {u: ledger.usage(u) for u in users},
        "ml-research": ledger.group_usage("ml-research"),
        "vision": ledger.group_usage("vision"),
        "gpus": ledger.gpus_in_use("nvidia-a100"),
        "devices": ledger.devices_in_use("nvidia-a100"),
        "grants": sorted(g.key for g in ledger.grants()),
    }


def test_reserve_assigns_lowest_free_devices_exclusively():
    ledger = Ledger()
    tables = QuotaTables.from_raw(pools={"nvidia-a100": 8})
    a = reserve(ledger, req("gpu", gpus=2), "alice", tables=tables, devices=FOUR)
    b = reserve(ledger, req("gpu", gpus=1), "bob", tables=tables, devices=FOUR)
    assert a.devices == ("0", "1")
    assert b.devices == ("2",)
    assert ledger.devices_in_use("nvidia-a100") == {"0", "1", "2"}
    assert ledger.gpus_in_use("nvidia-a100") == 3

    released = ledger.release("alice", "", a.id)
    assert released == a
    assert ledger.devices_in_use("nvidia-a100") == {"2"}
    assert ledger.gpus_in_use("nvidia-a100") == 1

    c = reserve(ledger, req("gpu", gpus=3), "carol", tables=tables, devices=FOUR)
    assert c.devices == ("0", "1", "3")
    assert ledger.devices_in_use("nvidia-a100") == {"0", "1", "2", "3"}

    # the pool says 8 but only 4 devices exist: the 5th GPU is refused (503)
    with pytest.raises(Refusal) as info:
        reserve(ledger, req("gpu", gpus=1), "dave", tables=tables, devices=FOUR)
    assert info.value.reason == "capacity" and info.value.status_code == 503
    assert info.value.message == (
        "No free nvidia-a100 GPU: the platform has 4, 4 in use, 0 free; requested 1"
    )
    assert ledger.get("dave", "") is None


def test_grant_records_the_request():
    ledger = Ledger()
    request = req("gpu", gpus=2, cpu=4, memory="16G", disk="50G")
    grant = reserve(ledger, request, "alice", "train", groups=["ml-research", "vision"])
    assert (grant.user, grant.server, grant.profile) == ("alice", "train", "gpu")
    assert (grant.cpu, grant.memory, grant.gpus) == (4.0, 16 * G, 2)
    assert (grant.gpu_type, grant.disk) == ("nvidia-a100", 50 * G)
    assert grant.groups == ("ml-research",)  # only the groups with a pool
    assert ledger.get("alice", "train") == grant
    assert ledger.usage("alice") == Usage(servers=1, cpu=4, memory=16 * G, gpus=2)


def test_cpu_only_and_zero_gpu_grants_take_no_device():
    ledger = Ledger()
    g1 = reserve(ledger, req("cpu"), "alice")
    g2 = reserve(ledger, req("gpu", gpus=0), "alice", "second")
    assert g1.devices == g2.devices == ()
    assert g1.gpu_type is None and g2.gpu_type is None
    assert ledger.gpus_in_use("nvidia-a100") == 0
    assert ledger.usage("alice").servers == 2


def test_release_with_wrong_grant_id_does_nothing():
    ledger = Ledger()
    grant = reserve(ledger, req("gpu", gpus=2), "alice")
    before = snapshot(ledger, ["alice"])
    assert ledger.release("alice", "", "not-" + grant.id) is None
    assert ledger.release("alice", "other-server") is None
    assert ledger.release("nobody", "") is None
    assert snapshot(ledger, ["alice"]) == before

    assert ledger.release("alice", "", grant.id) == grant
    assert ledger.release("alice", "", grant.id) is None  # exactly once
    assert ledger.usage("alice") == Usage()
    assert ledger.group_usage("ml-research") == Usage()
    assert ledger.gpus_in_use("nvidia-a100") == 0
    assert ledger.devices_in_use("nvidia-a100") == set()


def test_release_without_grant_id_releases_current():
    ledger = Ledger()
    grant = reserve(ledger, req("cpu"), "alice", "s1")
    assert ledger.release("alice", "s1") == grant
    assert ledger.grants() == []


def test_refused_reserve_changes_nothing():
    ledger = Ledger()
    reserve(ledger, req("gpu", gpus=2), "alice")
    before = snapshot(ledger, ["alice", "bob"])
    with pytest.raises(Refusal) as info:
        reserve(ledger, req("gpu", gpus=2), "bob")  # pool of 3: 2 + 2 > 3
    assert info.value.reason == "quota" and info.value.status_code == 403
    assert snapshot(ledger, ["alice", "bob"]) == before


def test_group_pool_is_counted_across_members():
    ledger = Ledger()
    a = reserve(ledger, req("gpu", gpus=2), "alice")
    assert ledger.group_usage("ml-research").gpus == 2
    with pytest.raises(Refusal) as info:
        reserve(ledger, req("gpu", gpus=2), "bob")
    assert info.value.message == (
        "GPU pool of group ml-research is full: 3 GPUs shared by its members; "
        "in use 2 + requested 2 = 4"
    )
    # a non-member is not limited by the pool
    outsider = reserve(ledger, req("gpu", gpus=2), "carol", groups=["vision"])
    assert outsider.groups == ()
    assert ledger.group_usage("ml-research").gpus == 2
    # one more GPU fits in the pool
    reserve(ledger, req("gpu", gpus=1), "bob")
    assert ledger.group_usage("ml-research") == Usage(servers=2, cpu=2, memory=4 * G, gpus=3)
    ledger.release("alice", "", a.id)
    assert ledger.group_usage("ml-research").gpus == 1
    reserve(ledger, req("gpu", gpus=2), "dave")
    assert ledger.group_usage("ml-research").gpus == 3
    assert {g.user: g.devices for g in ledger.grants()} == {
        "carol": ("2", "3"),
        "bob": ("4",),
        "dave": ("0", "1"),
    }


def test_per_user_quota_counts_all_servers_of_the_user():
    tables = QuotaTables.from_raw(default={"servers": 2, "gpus": 3})
    ledger = Ledger()
    reserve(ledger, req("gpu", gpus=2), "alice", "one", tables=tables)
    with pytest.raises(Refusal) as info:
        reserve(ledger, req("gpu", gpus=2), "alice", "two", tables=tables)
    assert info.value.message == (
        "GPU quota exceeded: default quota allows 3 GPUs per user; running 2 + requested 2 = 4"
    )
    reserve(ledger, req("gpu", gpus=1), "alice", "two", tables=tables)
    with pytest.raises(Refusal, match="Server quota exceeded"):
        reserve(ledger, req("cpu"), "alice", "three", tables=tables)
    # another user has their own quota
    reserve(ledger, req("gpu", gpus=1), "bob", "one", tables=tables)


def test_reserve_again_for_the_same_server_replaces_the_old_grant():
    ledger = Ledger()
    first = reserve(ledger, req("gpu", gpus=2), "alice")
    second = reserve(ledger, req("gpu", gpus=3), "alice")  # 2 + 3 would exceed the pool
    assert second.id != first.id
    assert ledger.grants() == [second]
    assert ledger.usage("alice").gpus == 3
    assert ledger.group_usage("ml-research").gpus == 3
    assert ledger.release("alice", "", first.id) is None  # the stale id releases nothing
    assert ledger.usage("alice").gpus == 3


def test_grant_state_round_trip():
    ledger = Ledger()
    grant = reserve(ledger, req("gpu", gpus=2, disk="50G"), "alice", "train")
    grant = ledger.attach_session(grant, 17)
    assert ledger.get("alice", "train") == grant and grant.session_id == 17
    state = json.loads(json.dumps(grant.to_state()))  # what the hub database stores
    assert state["devices"] == ["0", "1"]
    assert state["groups"] == ["ml-research"]
    assert Grant.from_state(state) == grant
    cpu_grant = reserve(ledger, req("cpu"), "bob")
    assert Grant.from_state(json.loads(json.dumps(cpu_grant.to_state()))) == cpu_grant


def test_grant_from_old_state_without_devices_or_groups():
    state = {
        "id": "abc",
        "user": "u",
        "server": "",
        "profile": "cpu",
        "cpu": 1.0,
        "memory": G,
        "gpus": 0,
        "gpu_type": None,
        "disk": None,
    }
    grant = Grant.from_state(state)
    assert grant.devices == () and grant.groups == () and grant.session_id is None


def test_restore_after_hub_restart_keeps_totals():
    before = Ledger()
    reserve(before, req("gpu", gpus=2), "alice")
    reserve(before, req("gpu", gpus=1, cpu=3), "bob", "train")
    reserve(before, req("cpu", memory="8G"), "bob")
    reserve(before, req("gpu", gpus=1), "carol", groups=["vision"])
    users = ["alice", "bob", "carol"]
    saved = [json.dumps(g.to_state()) for g in before.grants()]

    after = Ledger()  # the hub restarted: an empty ledger, grants come from spawner state
    for state in saved:
        after.restore(Grant.from_state(json.loads(state)))
    assert snapshot(after, users) == snapshot(before, users)
    for state in saved:  # restoring again (every spawner's load_state) is idempotent
        after.restore(Grant.from_state(json.loads(state)))
    assert snapshot(after, users) == snapshot(before, users)

    # restored devices stay exclusive: a new grant gets the remaining one
    new = reserve(after, req("gpu", gpus=1), "dave", groups=[])
    assert new.devices == ("4",)
    with pytest.raises(Refusal) as info:
        reserve(after, req("gpu", gpus=4), "erin", groups=[])
    assert info.value.message == (
        "No free nvidia-a100 GPU: the platform has 8, 5 in use, 3 free; requested 4"
    )

    # a grant restored under the same key but another id replaces the old one
    grant = after.get("alice", "")
    assert grant is not None
    replacement = Grant.from_state({**grant.to_state(), "id": "other", "gpus": 1, "devices": ["0"]})
    after.restore(replacement)
    assert after.get("alice", "") == replacement
    assert after.usage("alice").gpus == 1
    assert after.devices_in_use("nvidia-a100") == {"0", "2", "3", "4"}
    assert after.group_usage("ml-research").gpus == 2


def test_shared_ledger_is_one_object():
    assert Ledger.shared() is Ledger.shared()


def test_refused_replacement_keeps_the_stale_grant() -> None:
    """A refused re-reservation of the same server leaves the earlier grant in place."""
    from hub_ext.options import resolve_request
    from hub_ext.profiles import parse_profiles
    from hub_ext.quota import QuotaTables
    from hub_ext.refusals import Refusal
    from hub_ext.reservations import Ledger

    profiles = parse_profiles(
        [{"slug": "g", "gpu_type": "t", "gpu": {"default": 1, "max": 4}, "cpu": 1, "memory": "1G"}],
        {},
    )
    tables = QuotaTables.from_raw(default={"gpus": 4}, pools={"t": 4})
    ledger = Ledger()
    first = ledger.reserve(
        resolve_request({"gpus": 2}, profiles, []), user="u", server="", groups=[],
        tables=tables, devices={"t": ["0", "1", "2", "3"]},
    )  # fmt: skip
    with pytest.raises(Refusal):
        ledger.reserve(
            resolve_request({"gpus": 4}, profiles, []),
            user="u", server="", groups=[], tables=tables, devices={"t": ["0", "1", "2"]},
        )  # fmt: skip
    assert ledger.get("u", "") == first
    assert ledger.usage("u").gpus == 2
