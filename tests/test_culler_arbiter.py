"""Per-profile idle culling: timeouts, the culler's arbiter, its interval, and the wiring
that ``hub_ext.setup.configure`` adds to the hub config."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from traitlets.config import Config

from hub_ext.admission.policy import load_policy
from hub_ext.services.culler import SCOPES as CULLER_SCOPES
from hub_ext.services.culler import SERVICE as CULLER_SERVICE
from hub_ext.services.culler import (
    PlatformIdleCulling,
    ProfileIdleCuller,
    cull_interval,
    idle_timeouts,
    make_arbiter,
    timeout_for,
)
from hub_ext.setup import configure, resolve_spawner_class

TIMEOUTS = {"cpu-small": 3600, "gpu-a100": 1800, "pinned": 0}
FALLBACK = 7200


def server(options: Any) -> dict[str, Any]:
    """A server model as the hub's REST API returns it (the parts the arbiter reads)."""
    return {"name": "", "ready": True, "pending": None, "user_options": options}


@pytest.mark.parametrize(
    "model, expected",
    [
        (server({"profile": "gpu-a100", "gpus": 2}), 1800),
        (server({"profile": "cpu-small"}), 3600),
        (server({"profile": "pinned"}), 0),
        (server({"profile": "deleted-profile"}), FALLBACK),
        (server({"profile": ""}), FALLBACK),
        (server({"profile": None}), FALLBACK),
        (server({"profile": 5}), FALLBACK),
        (server({"profile": ["gpu-a100"]}), FALLBACK),
        (server({"gpus": 1}), FALLBACK),
        (server({}), FALLBACK),
        (server(None), FALLBACK),
        (server(["gpu-a100"]), FALLBACK),
        (server("gpu-a100"), FALLBACK),
        ({"name": ""}, FALLBACK),  # an older hub without user_options in the model
    ],
)
def test_timeout_for(model, expected):
    assert timeout_for(model, TIMEOUTS, FALLBACK) == expected


@pytest.mark.parametrize(
    "profile, inactive_s, expected",
    [
        ("gpu-a100", 0, False),
        ("gpu-a100", 1799, False),
        ("gpu-a100", 1799.999, False),
        ("gpu-a100", 1800, True),
        ("gpu-a100", 5000, True),
        ("cpu-small", 1800, False),
        ("cpu-small", 3599, False),
        ("cpu-small", 3600, True),
        ("pinned", 10**7, False),  # 0 = never culled
        ("unknown", 7199, False),
        ("unknown", 7200, True),
        (None, 7200, True),
    ],
)
def test_arbiter(profile, inactive_s, expected):
    arbiter = make_arbiter(TIMEOUTS, FALLBACK)
    options = {"profile": profile} if profile is not None else {}
    # the culler passes its global --timeout as inactive_limit: the profile's own wins
    for inactive_limit in (60, 3600, 10**6):
        result = arbiter(
            inactive=timedelta(seconds=inactive_s),
            inactive_limit=inactive_limit,
            server=server(options),
        )
        assert result is expected


def test_arbiter_accepts_future_keywords_and_fallback_zero():
    arbiter = make_arbiter({"gpu-a100": 10}, 0)
    kw = {"inactive_limit": 1, "user": {"name": "alice"}, "server_name": ""}
    assert arbiter(inactive=timedelta(seconds=11), server=server({"profile": "gpu-a100"}), **kw)
    assert not arbiter(inactive=timedelta(days=365), server=server({"profile": "x"}), **kw)


@pytest.mark.parametrize(
    "timeouts, fallback, configured, expected",
    [
        ({"a": 1800, "b": 3600}, 3600, 0, 300),  # capped at 300 s
        ({"a": 400, "b": 3600}, 3600, 0, 200),  # half the shortest
        ({"a": 20}, 3600, 0, 10),
        ({"a": 11}, 3600, 0, 5),
        ({"a": 4}, 3600, 0, 5),  # at least 5 s
        ({"a": 3600}, 60, 0, 30),  # the fallback counts too
        ({"a": 0, "b": 1000}, 0, 0, 300),  # zeros (never) are ignored
        ({"a": 0, "b": 100}, 0, 0, 50),
        ({"a": 0}, 0, 0, 300),  # nothing to cull: the default 600 // 2
        ({}, 0, 0, 300),
        ({"a": 20}, 3600, 42, 42),  # the admin's c.PlatformIdleCulling.cull_every wins
        ({"a": 20}, 3600, 1, 1),
        ({"a": 20}, 3600, -5, 10),  # not positive: computed
    ],
)
def test_cull_interval(timeouts, fallback, configured, expected):
    assert cull_interval(timeouts, fallback, configured) == expected


def test_cull_interval_default_configured():
    assert cull_interval({"a": 100}, 3600) == 50


# --- culler.idle_timeouts and configure() -----------------------------------------------------

PROFILES: list[dict[str, Any]] = [
    {"slug": "cpu-default"},
    {"slug": "cpu-own", "idle_timeout": 900},
    {"slug": "gpu-default", "gpu_type": "nvidia-a100", "gpu": {"default": 1, "max": 2}},
    {"slug": "gpu-optional", "gpu_type": "nvidia-a100", "gpu": {"default": 0, "max": 1}},
    {"slug": "gpu-own", "gpu_type": "nvidia-a100", "gpu": 1, "idle_timeout": 7200},
    {"slug": "gpu-never", "gpu_type": "nvidia-a100", "gpu": 1, "idle_timeout": 0},
]


def hub_config(profiles: list[dict[str, Any]], **culling: int) -> Config:
    c = Config()
    c.JupyterHub.spawner_class = "dsplatform-local"
    c.ProfileSpawner.profiles = profiles
    c.LocalProfileSpawner.gpu_devices = {"nvidia-a100": ["0", "1"]}
    for key, value in culling.items():
        setattr(c.PlatformIdleCulling, key, value)
    return c


@pytest.mark.parametrize(
    "culling, expected",
    [
        (
            {},
            {
                "cpu-default": 3600,
                "cpu-own": 900,
                "gpu-default": 1800,  # GPU profiles without their own: the shorter gpu_timeout
                "gpu-optional": 1800,
                "gpu-own": 7200,
                "gpu-never": 0,
            },
        ),
        (
            {"timeout": 600, "gpu_timeout": 300},
            {
                "cpu-default": 600,
                "cpu-own": 900,
                "gpu-default": 300,
                "gpu-optional": 300,
                "gpu-own": 7200,
                "gpu-never": 0,
            },
        ),
        (
            {"timeout": 0, "gpu_timeout": 0},
            {
                "cpu-default": 0,
                "cpu-own": 900,
                "gpu-default": 0,
                "gpu-optional": 0,
                "gpu-own": 7200,
                "gpu-never": 0,
            },
        ),
    ],
)
def test_idle_timeouts(culling, expected):
    c = hub_config(PROFILES, **culling)
    policy = load_policy(c, resolve_spawner_class("dsplatform-local"))
    assert idle_timeouts(policy, PlatformIdleCulling(config=c)) == expected


def test_configure_adds_the_culler_service():
    c = hub_config(PROFILES)
    configure(c)
    (service,) = [s for s in c.JupyterHub.services if s["name"] == CULLER_SERVICE]
    env = service["environment"]
    timeouts = json.loads(env["DSPLATFORM_IDLE_TIMEOUTS"])
    assert timeouts["gpu-default"] == 1800 and timeouts["cpu-default"] == 3600
    assert env["DSPLATFORM_IDLE_FALLBACK"] == "3600"
    assert service["command"][1:3] == ["-m", "hub_ext.services.culler"]
    assert f"--cull-every={cull_interval(timeouts, 3600)}" in service["command"]
    assert "--timeout=3600" in service["command"]
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == CULLER_SERVICE]
    assert role == {"name": CULLER_SERVICE, "scopes": CULLER_SCOPES, "services": [CULLER_SERVICE]}
    assert "admin:users" not in role["scopes"]  # least privilege

    # configuring twice does not add a second culler
    configure(c)
    assert [s["name"] for s in c.JupyterHub.services].count(CULLER_SERVICE) == 1
    assert [r["name"] for r in c.JupyterHub.load_roles].count(CULLER_SERVICE) == 1


def test_configure_keeps_other_services():
    c = hub_config(PROFILES)
    c.JupyterHub.services = [{"name": "catalog", "url": "http://127.0.0.1:9999"}]
    configure(c)
    assert [s["name"] for s in c.JupyterHub.services] == [
        "catalog",
        "dsplatform-jobs",
        CULLER_SERVICE,
    ]


def test_configure_without_any_timeout_adds_no_culler():
    c = hub_config([{"slug": "cpu", "idle_timeout": 0}], timeout=0, gpu_timeout=0)
    configure(c)
    assert CULLER_SERVICE not in [s.get("name") for s in c.JupyterHub.get("services", [])]


def test_profile_idle_culler_reads_the_hub_environment(monkeypatch):
    """What the service process does with the environment configure() gave it."""
    c = hub_config(PROFILES, timeout=600, gpu_timeout=120)
    configure(c)
    (service,) = [s for s in c.JupyterHub.services if s["name"] == CULLER_SERVICE]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, value)
    culler = ProfileIdleCuller()
    assert culler.fallback_timeout == 600
    assert culler.profile_timeouts["gpu-default"] == 120
    arbiter = culler.cull_arbiter_hook

    def cull(profile: str | None, seconds: int) -> bool:
        options = {"profile": profile} if profile else {}
        return arbiter(
            inactive=timedelta(seconds=seconds), inactive_limit=600, server=server(options)
        )

    assert cull("gpu-default", 120) and not cull("gpu-default", 119)
    assert cull("cpu-default", 600) and not cull("cpu-default", 599)
    assert cull("cpu-own", 900) and not cull("cpu-own", 899)
    assert not cull("gpu-never", 10**6)
    assert cull(None, 600) and not cull("removed-profile", 599)
