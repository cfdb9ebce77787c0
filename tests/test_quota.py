"""Quota arithmetic (pure): effective_limits, check_request on a Standing, gpu_capacity.

Requests are real ones (tests/quota_requests.py). The ledger that builds a Standing from
what servers hold, and admit(), are in test_ledger.py.
"""

from __future__ import annotations

import pytest

from hub_ext.admission.options import Request
from hub_ext.admission.quota import (
    QuotaTables,
    Standing,
    Usage,
    check_request,
    effective_limits,
    gpu_capacity,
    remaining,
)
from hub_ext.admission.refusals import Refusal

from .quota_requests import DESIGN, DESIGN_QUOTAS, G, req

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
    pooled = [g for g in groups if g in tables.group_pools]
    check_request(
        request,
        Standing(
            limits=effective_limits(tables, user, groups),
            usage=usage or Usage(),
            gpu_hours_used=hours,
            group_pools={g: tables.group_pools[g] for g in pooled},
            group_usage=group_usage or {},
            gpu_capacity=gpu_capacity(tables, devices or {}, gpu_type) if gpu_type else None,
            gpus_in_use=in_use,
        ),
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
