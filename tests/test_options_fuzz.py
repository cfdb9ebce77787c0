"""Property tests: arbitrary user_options never crash validation, and the Ledger never
overshoots a quota, a group pool or the platform's GPUs, whatever the order of spawns,
stops and hub restarts."""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub_ext.admission.options import OPTION_KEYS, Request, resolve_request
from hub_ext.admission.profiles import Profile, parse_profiles, parse_toolchains
from hub_ext.admission.quota import POOL_KEYS, QuotaTables, Usage, effective_limits, gpu_capacity
from hub_ext.admission.refusals import Refusal
from hub_ext.admission.reservations import Grant, Ledger
from hub_ext.admission.units import QuantityError, parse_bytes

TOOLCHAINS = parse_toolchains({"scipy": {"image": "scipy"}, "pytorch": {"image": "torch"}})
PROFILES: list[Profile] = parse_profiles(
    [
        {
            "slug": "cpu-small",
            "toolchain": "scipy",
            "cpu": {"default": 1, "min": 0.5, "max": 2},
            "memory": {"default": "2G", "max": "4G"},
            "groups": ["*"],
        },
        {
            "slug": "gpu-a100",
            "toolchain": "pytorch",
            "gpu_type": "nvidia-a100",
            "gpu": {"default": 1, "min": 1, "max": 4},
            "cpu": 8,
            "memory": "64G",
            "disk": {"default": "20G", "max": "200G"},
            "groups": ["ml-research"],
        },
        {
            "slug": "vision-h100",
            "gpu_type": "nvidia-h100",
            "gpu": {"default": 0, "max": 2},
            "cpu": {"default": 2, "max": 4},
            "memory": {"default": "8G", "min": "1G", "max": "32G"},
            "disk": {"default": "10G", "min": "5G", "max": "50G"},
            "groups": ["vision", "ml-research"],
        },
        {
            "slug": "admins-only",
            "cpu": {"default": 0.25, "min": 0.1, "max": 0.5},
            "memory": "512M",
            "groups": ["admins"],
            "default": True,
        },
    ],
    TOOLCHAINS,
)
BY_SLUG = {p.slug: p for p in PROFILES}
GROUPS = ["ml-research", "vision", "students", "admins"]

SLUGS = [*BY_SLUG, "nope", "CPU-SMALL", ""]
STRINGS = [
    "4G", "2G", "512M", "1.5G", "64G", "200G", "20G", "4Gi", "0", "", " ", "abc", "-1G",
    "1e3", "nan", "inf", "500m", "2", "9" * 400 + "G", "8E",
]  # fmt: skip
HUGE = [10**400, -(10**400), 2**63, 2**64, -1, -(2**63)]

values = st.one_of(
    st.integers(min_value=-10, max_value=300),
    st.integers(),
    st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1, max_value=300),
    st.booleans(),
    st.none(),
    st.sampled_from(STRINGS),
    st.sampled_from(SLUGS),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
keys = st.one_of(
    st.sampled_from(OPTION_KEYS),
    st.sampled_from(OPTION_KEYS),
    st.sampled_from(["gpu", "Profile", "cpus", "image", ""]),
    st.text(max_size=6),
    st.integers(),
)
options_strategy = st.one_of(
    st.dictionaries(keys, values, max_size=6),
    st.fixed_dictionaries({}, optional=dict.fromkeys(OPTION_KEYS, values)),
    st.fixed_dictionaries(
        {"profile": st.sampled_from(list(BY_SLUG))},
        optional={k: values for k in OPTION_KEYS if k != "profile"},
    ),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=5),
)
groups_strategy = st.lists(st.sampled_from(GROUPS), unique=True, max_size=4)


def expected_value(profile: Profile, key: str, raw: Any) -> float | None:
    """What a successfully resolved option must be, by an independent reading."""
    attr = {"cpu": "cpu", "memory": "memory", "gpus": "gpu", "disk": "disk"}[key]
    rng = getattr(profile, attr)
    if raw is None:
        return None if rng is None else rng.default
    if key == "memory" or key == "disk":
        return parse_bytes(raw)
    return float(raw)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=options_strategy, groups=groups_strategy)
def test_resolve_request_refuses_or_stays_in_range(options, groups):
    try:
        request = resolve_request(options, PROFILES, groups)
    except Refusal as refusal:
        assert refusal.reason in ("invalid", "forbidden")
        assert refusal.status_code == {"invalid": 400, "forbidden": 403}[refusal.reason]
        assert refusal.message and str(refusal) == refusal.message
        if refusal.reason == "forbidden":
            slug = options.get("profile") if isinstance(options, dict) else None
            if slug is None:
                assert not any(p.allows(groups) for p in PROFILES)
            else:
                assert slug in BY_SLUG and not BY_SLUG[slug].allows(groups)
        return

    assert isinstance(request, Request)
    options = options or {}
    assert isinstance(options, dict)
    assert all(isinstance(k, str) and k in OPTION_KEYS for k in options), options

    profile = request.profile
    assert profile is BY_SLUG[profile.slug]
    assert profile.allows(groups)
    if options.get("profile") is not None:
        assert profile.slug == options["profile"]
    else:
        allowed = [p for p in PROFILES if p.allows(groups)]
        assert profile is next((p for p in allowed if p.default), allowed[0])

    assert type(request.cpu) is float and math.isfinite(request.cpu)
    assert type(request.memory) is int and type(request.gpus) is int
    assert profile.cpu.contains(request.cpu)
    assert profile.memory.contains(request.memory)
    assert profile.gpu.contains(request.gpus)
    if profile.disk is None:
        assert request.disk is None
        assert options.get("disk") is None
    else:
        assert type(request.disk) is int and profile.disk.contains(request.disk)
    assert request.gpu_type == (profile.gpu_type if request.gpus else None)

    # what was asked is what is granted; what was left out is the profile default
    assert request.cpu == expected_value(profile, "cpu", options.get("cpu"))
    assert request.gpus == expected_value(profile, "gpus", options.get("gpus"))
    assert request.memory == int(expected_value(profile, "memory", options.get("memory")) or 0)
    if profile.disk is not None:
        assert request.disk == int(expected_value(profile, "disk", options.get("disk")) or 0)
    for key in ("cpu", "gpus"):
        raw = options.get(key)
        # numbers, or strings of digits as forms send them ("0.5")
        number = float(raw) if isinstance(raw, str) else raw
        assert raw is None or (type(raw) in (int, float, str) and number >= 0)
    for key in ("memory", "disk"):
        raw = options.get(key)
        assert raw is None or type(raw) in (int, str)
    json.dumps(request.resources())  # what the sandbox receives is JSON


EXACT_REFUSALS = [
    ({"cpus": 2}, "Unknown option 'cpus'; allowed options: profile, cpu, memory, gpus, disk"),
    (
        {"profile": "cpu-small", "cpu": 4},
        "cpu 4 is outside profile 'cpu-small': cpu is from 0.5 to 2",
    ),
    ({"profile": "gpu-a100", "cpu": 4}, "cpu 4 is outside profile 'gpu-a100': cpu is fixed at 8"),
    (
        {"profile": "cpu-small", "memory": "8G"},
        "memory 8G is outside profile 'cpu-small': memory is from 128M to 4G",
    ),
    ({"profile": "cpu-small", "disk": "1G"}, "Profile 'cpu-small' has no disk option"),
    (
        {"profile": "cpu-small", "gpus": 1.0},
        "Option 'gpus' must be a whole number >= 0, got 1.0",
    ),
    (
        {"profile": "cpu-small", "cpu": "lots"},
        "Option 'cpu' must be a number like 2 or 0.5 (a JSON number, or a string of digits), "
        "not 'lots'",
    ),
    ({"profile": "cpu-small", "cpu": 10**400}, None),
    ({"profile": "cpu-small", "memory": 10**400}, None),
    ({"profile": "cpu-small", "memory": "9" * 400 + "G"}, None),
]


@pytest.mark.parametrize(
    "options, message", EXACT_REFUSALS, ids=[str(i) for i in range(len(EXACT_REFUSALS))]
)
def test_some_refusals_are_exact(options, message):
    """Anchor the fuzzed property to messages a user actually sees (400, never 500)."""
    with pytest.raises(Refusal) as info:
        resolve_request(options, PROFILES, ["ml-research"])
    assert info.value.reason == "invalid" and info.value.status_code == 400
    if message is not None:
        assert info.value.message == message


def test_numeric_strings_are_numbers() -> None:
    """What a form (or curl -d) sends: "0.5" is 0.5, "1" GPU is 1, never self-contradicting."""
    as_strings = resolve_request(
        {"profile": "gpu-a100", "cpu": "8", "gpus": "1"}, PROFILES, ["ml-research"]
    )
    as_numbers = resolve_request(
        {"profile": "gpu-a100", "cpu": 8, "gpus": 1}, PROFILES, ["ml-research"]
    )
    assert as_strings == as_numbers


# --- the Ledger under random spawn / stop / restart sequences --------------------------------

TABLES = QuotaTables.from_raw(
    default={"servers": 2, "cpu": 4, "memory": "8G", "gpus": 0, "gpu_hours_per_week": 10},
    groups={
        "ml-research": {"servers": 3, "cpu": 24, "memory": "160G", "gpus": 4},
        "vision": {"cpu": 8, "gpus": 2, "memory": "64G"},
    },
    users={"erin": {"gpus": 6, "servers": 4}, "dave": {"cpu": 1}},
    group_pools={"ml-research": {"gpus": 5, "cpu": 40}, "vision": {"gpus": 3, "servers": 4}},
    pools={"nvidia-a100": 6, "nvidia-h100": 8},
)
DEVICES = {"nvidia-a100": [str(i) for i in range(8)], "nvidia-h100": ["8", "9", "10"]}
USERS = {
    "alice": ["ml-research"],
    "bob": ["ml-research", "vision"],
    "carol": ["vision"],
    "dave": [],
    "erin": ["ml-research"],
    "frank": ["admins", "vision"],
}


def in_range_options(profile: Profile) -> st.SearchStrategy[dict[str, Any]]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "profile": st.just(profile.slug),
        "gpus": st.integers(int(profile.gpu.min), int(profile.gpu.max)),
        "cpu": st.one_of(
            st.sampled_from(sorted({profile.cpu.min, profile.cpu.default, profile.cpu.max})),
            st.floats(profile.cpu.min, profile.cpu.max),
        ),
        "memory": st.integers(int(profile.memory.min), int(profile.memory.max)),
    }
    if profile.disk is not None:
        fields["disk"] = st.integers(int(profile.disk.min), int(profile.disk.max))
    return st.fixed_dictionaries({"profile": fields.pop("profile")}, optional=fields)


ops_strategy = st.lists(
    st.one_of(
        st.tuples(
            st.just("reserve"),
            st.sampled_from(sorted(USERS)),
            st.sampled_from(["", "a", "b"]),
            st.sampled_from(PROFILES).flatmap(in_range_options),
        ),
        st.tuples(
            st.just("release"),
            st.sampled_from(sorted(USERS)),
            st.sampled_from(["", "a", "b"]),
            st.booleans(),
        ),
        st.tuples(st.just("restart")),
    ),
    max_size=40,
)


def total(grants: list[Grant]) -> Usage:
    used = Usage()
    for g in grants:
        used.add(g.usage())
    return used


def check_invariants(ledger: Ledger) -> None:
    grants = ledger.grants()
    for user, groups in USERS.items():
        mine = [g for g in grants if g.user == user]
        used = total(mine)
        assert ledger.usage(user) == used
        limits = effective_limits(TABLES, user, groups)
        for key in POOL_KEYS:
            if key in limits:
                assert used.get(key) <= limits[key].value + 1e-9, (user, key, used, limits)
    for group, pool in TABLES.group_pools.items():
        used = total([g for g in grants if group in g.groups])
        assert ledger.group_usage(group) == used
        for key, size in pool.items():
            assert used.get(key) <= size + 1e-9, (group, key, used)
    for gpu_type in DEVICES:
        held = [g for g in grants if g.gpu_type == gpu_type]
        gpus = sum(g.gpus for g in held)
        assert ledger.gpus_in_use(gpu_type) == gpus
        capacity = gpu_capacity(TABLES, DEVICES, gpu_type)
        assert capacity is not None and gpus <= capacity
        devices = Counter(d for g in held for d in g.devices)
        assert all(n == 1 for n in devices.values()), devices  # never assigned twice at once
        assert set(devices) <= set(DEVICES[gpu_type])
        assert ledger.devices_in_use(gpu_type) == set(devices)
        assert all(len(g.devices) == g.gpus for g in held)
    for g in grants:
        if g.gpu_type is None:
            assert g.gpus == 0 and g.devices == ()


def others_after(ledger: Ledger, key: tuple[str, str]) -> dict[tuple[str, str], str]:
    return {g.key: g.id for g in ledger.grants() if g.key != key}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops_strategy)
def test_ledger_never_overshoots(ops):
    ledger = Ledger()
    for op in ops:
        if op[0] == "reserve":
            _, user, server, options = op
            groups = USERS[user]
            try:
                request = resolve_request(options, PROFILES, groups)
            except Refusal as refusal:
                assert refusal.reason == "forbidden"  # in-range options: only the groups
                continue
            old = ledger.get(user, server)
            others = others_after(ledger, (user, server))
            try:
                grant = ledger.reserve(
                    request,
                    user=user,
                    server=server,
                    groups=groups,
                    tables=TABLES,
                    devices=DEVICES,
                )
            except Refusal as refusal:
                assert refusal.reason in ("quota", "capacity")
                assert refusal.status_code == (503 if refusal.reason == "capacity" else 403)
                # the server's stale grant (if any) is kept, nobody else's changed
                assert ledger.get(user, server) == old
            else:
                assert ledger.get(user, server) == grant
                assert old is None or grant.id != old.id
                assert (grant.cpu, grant.memory, grant.gpus) == (
                    request.cpu,
                    request.memory,
                    request.gpus,
                )
            assert others_after(ledger, (user, server)) == others
        elif op[0] == "release":
            _, user, server, right_id = op
            held = ledger.get(user, server)
            grant_id = held.id if held is not None and right_id else "wrong-id"
            released = ledger.release(user, server, grant_id)
            if held is not None and right_id:
                assert released == held and ledger.get(user, server) is None
            else:
                assert released is None and ledger.get(user, server) == held
        else:  # the hub restarts: grants come back from spawner state in the database
            states = [json.dumps(g.to_state()) for g in ledger.grants()]
            fresh = Ledger()
            for state in states + states:
                fresh.restore(Grant.from_state(json.loads(state)))
            assert sorted(g.id for g in fresh.grants()) == sorted(g.id for g in ledger.grants())
            ledger = fresh
        check_invariants(ledger)


@pytest.mark.parametrize("text", STRINGS)
def test_user_strings_parse_or_raise_quantity_error(text):
    """Anything but an int or a QuantityError would reach the hub as a 500."""
    try:
        size = parse_bytes(text)
    except QuantityError:
        return
    assert type(size) is int and 0 <= size < 2**63
