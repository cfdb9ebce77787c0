"""Admin profiles and toolchains: the docs/contract.md example parses; every mistake names the key.

Mistakes are checked twice: with the pure parser (ConfigError) and through
``hub_ext.setup.configure`` on a fresh traitlets ``Config``, which must stop the hub
(SystemExit 1) and print the profile and key on stderr.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest
from traitlets.config import Config

from hub_ext.admission.profiles import Range, parse_profiles, parse_toolchains
from hub_ext.errors import ConfigError
from hub_ext.setup import configure

G, M = 1024**3, 1024**2

TOOLCHAINS: dict[str, Any] = {
    "scipy": {"image": "quay.io/jupyter/scipy-notebook:2025-10-20", "local_python": None},
    "pytorch": {"image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20"},
}

# The example of docs/contract.md, verbatim apart from "…".
CPU_SMALL: dict[str, Any] = {
    "slug": "cpu-small",
    "display_name": "CPU · small",
    "description": "Notebooks",
    "toolchain": "scipy",
    "cpu": {"default": 1, "min": 0.5, "max": 2},
    "memory": {"default": "2G", "max": "4G"},
    "gpu": 0,
    "groups": ["*"],
    "idle_timeout": 3600,
    "datasets": ["iris@v1"],
    "env": {},
    "kubespawner_override": {},
}
GPU_A100: dict[str, Any] = {
    "slug": "gpu-a100",
    "toolchain": "pytorch",
    "gpu_type": "nvidia-a100",
    "gpu": {"default": 1, "min": 1, "max": 4},
    "cpu": 8,
    "memory": "64G",
    "disk": {"default": "20G", "max": "200G"},
    "groups": ["ml-research"],
    "idle_timeout": 1800,
}


def design_profiles() -> list[dict[str, Any]]:
    return copy.deepcopy([CPU_SMALL, GPU_A100])


def test_design_example_parses():
    toolchains = parse_toolchains(TOOLCHAINS)
    small, gpu = parse_profiles(design_profiles(), toolchains)

    assert toolchains["scipy"].image == "quay.io/jupyter/scipy-notebook:2025-10-20"
    assert toolchains["scipy"].local_python is None
    assert toolchains["pytorch"].image.endswith("cuda12-2025-10-20")

    assert small.slug == "cpu-small"
    assert small.display_name == "CPU · small"
    assert small.toolchain is toolchains["scipy"]
    assert small.cpu == Range(default=1, min=0.5, max=2)
    # "min" left out: the floor for memory is 128M
    assert small.memory == Range(default=2 * G, min=128 * M, max=4 * G)
    assert small.gpu == Range(0, 0, 0)
    assert small.gpu_type is None
    assert small.disk is None
    assert small.groups == ("*",)
    assert small.idle_timeout == 3600
    assert small.datasets == ("iris@v1",)
    assert small.allows([]) and small.allows(["anyone"])

    assert gpu.display_name == "gpu-a100"  # defaults to the slug
    assert gpu.toolchain is toolchains["pytorch"]
    assert gpu.gpu == Range(1, 1, 4)
    assert gpu.gpu_type == "nvidia-a100"
    assert gpu.cpu == Range(8, 8, 8) and gpu.cpu.fixed
    assert gpu.memory == Range(64 * G, 64 * G, 64 * G)
    # "min" left out: the floor for disk is 1G
    assert gpu.disk == Range(default=20 * G, min=1 * G, max=200 * G)
    assert gpu.allows(["ml-research"]) and not gpu.allows(["students"]) and not gpu.allows([])


@pytest.mark.parametrize(
    "key, value, expected",
    [
        # a bare value is fixed
        ("cpu", 2, Range(2, 2, 2)),
        ("cpu", "500m", Range(0.5, 0.5, 0.5)),
        ("memory", "512M", Range(512 * M, 512 * M, 512 * M)),
        ("memory", 1024, Range(1024, 1024, 1024)),
        ("gpu", 0, Range(0, 0, 0)),
        # only a default: max = default, min = the floor (or the default, if smaller)
        ("cpu", {"default": 1}, Range(1, 0.1, 1)),
        ("cpu", {"default": 0.05}, Range(0.05, 0.05, 0.05)),
        ("memory", {"default": "1G"}, Range(G, 128 * M, G)),
        ("memory", {"default": "64M"}, Range(64 * M, 64 * M, 64 * M)),
        ("disk", {"default": "10G"}, Range(10 * G, G, 10 * G)),
        ("disk", {"default": "100M"}, Range(100 * M, 100 * M, 100 * M)),
        # explicit ranges
        ("cpu", {"default": 1, "min": 0.5, "max": 2}, Range(1, 0.5, 2)),
        ("cpu", {"default": 1, "max": 4}, Range(1, 0.1, 4)),
        ("memory", {"default": "2G", "min": "1G", "max": "8Gi"}, Range(2 * G, G, 8 * G)),
        ("disk", {"default": "20G", "max": "200G"}, Range(20 * G, G, 200 * G)),
        # edges of the range are allowed as default
        ("cpu", {"default": 2, "min": 0.5, "max": 2}, Range(2, 0.5, 2)),
        ("cpu", {"default": 0.5, "min": 0.5, "max": 2}, Range(0.5, 0.5, 2)),
    ],
)
def test_ranges(key, value, expected):
    spec: dict[str, Any] = {"slug": "p", key: value}
    (profile,) = parse_profiles([spec], {})
    assert getattr(profile, key) == expected


def test_implicit_resources():
    (profile,) = parse_profiles([{"slug": "bare"}], {})
    assert profile.cpu == Range(1, 1, 1)
    assert profile.memory == Range(G, G, G)
    assert profile.gpu == Range(0, 0, 0)
    assert profile.disk is None
    assert profile.groups == ("*",)
    assert profile.toolchain is None
    assert profile.idle_timeout is None
    assert profile.default is False


def test_gpu_profile_with_type_and_default_flag():
    profiles = parse_profiles(
        [
            {"slug": "a"},
            {"slug": "b", "gpu": {"default": 0, "max": 2}, "gpu_type": "nvidia-h100"},
            {"slug": "c", "default": True},
        ],
        {},
    )
    assert [p.slug for p in profiles] == ["a", "b", "c"]
    assert profiles[1].gpu == Range(0, 0, 2)
    assert [p.default for p in profiles] == [False, False, True]


# (profile changes, the key the message must name, a fragment of the reason)
INVALID_PROFILES = [
    pytest.param({"cpus": 2}, "cpus", "unknown key", id="unknown-key"),
    pytest.param({"image": "x"}, "image", "unknown key", id="unknown-key-image"),
    pytest.param({"cpu": {"default": 1, "step": 1}}, "cpu", "unknown range key", id="range-key"),
    pytest.param({"cpu": {"min": 1, "max": 2}}, "cpu", "needs a 'default'", id="range-no-default"),
    pytest.param({"cpu": {"default": 1, "min": 3, "max": 2}}, "cpu", "min 3 > max 2", id="min>max"),
    pytest.param(
        {"memory": {"default": "2G", "min": "8G", "max": "4G"}}, "memory", "> max", id="mem-min>max"
    ),
    pytest.param(
        {"cpu": {"default": 4, "min": 0.5, "max": 2}}, "cpu", "outside range", id="default>max"
    ),
    pytest.param(
        {"cpu": {"default": 0.2, "min": 0.5, "max": 2}}, "cpu", "outside range", id="default<min"
    ),
    pytest.param(
        {"memory": {"default": "8G", "max": "4G"}}, "memory", "outside range", id="mem-default>max"
    ),
    pytest.param(
        {"disk": {"default": "500G", "max": "200G"}}, "disk", "outside range", id="disk-outside"
    ),
    pytest.param({"cpu": "abc"}, "cpu", "CPU count", id="cpu-abc"),
    pytest.param({"cpu": -1}, "cpu", "non-negative", id="cpu-negative"),
    pytest.param({"cpu": 0}, "cpu", "more than 0", id="cpu-zero"),
    pytest.param({"cpu": True}, "cpu", "True", id="cpu-bool"),
    pytest.param({"memory": "4X"}, "memory", "'4X'", id="memory-unit"),
    pytest.param({"memory": "-1G"}, "memory", "'-1G'", id="memory-negative"),
    pytest.param({"memory": 0}, "memory", "more than 0", id="memory-zero"),
    pytest.param({"gpu": 1.5, "gpu_type": "nvidia-a100"}, "gpu", "whole", id="gpu-fraction"),
    pytest.param({"gpu": -1, "gpu_type": "nvidia-a100"}, "gpu", "non-negative", id="gpu-neg"),
    pytest.param({"toolchain": "tensorflow"}, "toolchain", "unknown toolchain", id="toolchain"),
    pytest.param({"gpu": 1}, "gpu_type", "required", id="gpu-without-type"),
    pytest.param({"gpu": {"default": 0, "max": 2}}, "gpu_type", "required", id="gpu-range-no-type"),
    pytest.param({"gpu": 1, "gpu_type": "A100 80GB"}, "gpu_type", "'A100 80GB'", id="gpu-type-bad"),
    pytest.param({"gpu_type": 7}, "gpu_type", "nvidia-a100", id="gpu-type-int"),
    pytest.param({"groups": "ml-research"}, "groups", "list", id="groups-str"),
    pytest.param({"groups": []}, "groups", "non-empty", id="groups-empty"),
    pytest.param({"groups": ["ok", ""]}, "groups", "non-empty string", id="groups-blank"),
    pytest.param({"groups": ["ok", 3]}, "groups", "non-empty string", id="groups-int"),
    pytest.param({"groups": {"a": 1}}, "groups", "list", id="groups-dict"),
    pytest.param({"idle_timeout": -1}, "idle_timeout", "-1", id="idle-negative"),
    pytest.param({"idle_timeout": "3600"}, "idle_timeout", "'3600'", id="idle-str"),
    pytest.param({"idle_timeout": 1.5}, "idle_timeout", "1.5", id="idle-float"),
    pytest.param({"idle_timeout": True}, "idle_timeout", "True", id="idle-bool"),
    pytest.param({"env": {"A": 1}}, "env", "'A'", id="env-int-value"),
    pytest.param({"env": {1: "x"}}, "env", "1", id="env-int-key"),
    pytest.param({"env": ["A=1"]}, "env", "dict", id="env-list"),
    pytest.param({"datasets": "iris@v1"}, "datasets", "list", id="datasets-str"),
    pytest.param({"datasets": ["iris@v1", ""]}, "datasets", "dataset", id="datasets-blank"),
    pytest.param({"kubespawner_override": ["x"]}, "kubespawner_override", "dict", id="override"),
    pytest.param({"default": "yes"}, "default", "True or False", id="default-str"),
    pytest.param({"display_name": 3}, "display_name", "string", id="display-name"),
    pytest.param({"description": ["x"]}, "description", "string", id="description"),
]


@pytest.mark.parametrize("change, key, reason", INVALID_PROFILES)
def test_invalid_profile_names_slug_and_key(change, key, reason):
    spec = {"slug": "broken", **change}
    profiles = [copy.deepcopy(CPU_SMALL), spec]
    with pytest.raises(ConfigError) as info:
        parse_profiles(profiles, parse_toolchains(TOOLCHAINS))
    message = str(info.value)
    assert "c.ProfileSpawner.profiles[1]" in message
    assert "'broken'" in message
    assert f"key {key!r}" in message
    assert reason in message


@pytest.mark.parametrize(
    "slug",
    [None, "", "Bad", "under_score", "-lead", "trail-", "a" * 64, "with space", 7, "ü"],
)
def test_bad_slug(slug):
    spec: dict[str, Any] = {"cpu": 1} if slug is None else {"slug": slug}
    with pytest.raises(ConfigError) as info:
        parse_profiles([spec], {})
    message = str(info.value)
    assert "c.ProfileSpawner.profiles[0]" in message
    assert "key 'slug'" in message
    assert repr(slug) in message


@pytest.mark.parametrize("slug", ["a", "a1", "cpu-small", "a" * 63, "0-gpu"])
def test_good_slug(slug):
    (profile,) = parse_profiles([{"slug": slug}], {})
    assert profile.slug == slug


def test_duplicate_slug():
    with pytest.raises(ConfigError) as info:
        parse_profiles([{"slug": "a"}, {"slug": "b"}, {"slug": "a"}], {})
    message = str(info.value)
    assert "c.ProfileSpawner.profiles[2] ('a')" in message
    assert "key 'slug'" in message and "duplicate" in message


def test_two_defaults():
    profiles = [{"slug": "a", "default": True}, {"slug": "b"}, {"slug": "c", "default": True}]
    with pytest.raises(ConfigError) as info:
        parse_profiles(profiles, {})
    message = str(info.value)
    assert "c.ProfileSpawner.profiles[2] ('c')" in message
    assert "key 'default'" in message
    assert "'a'" in message


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ([], "empty"),
        ("cpu-small", "list"),
        ({"slug": "a"}, "list"),
        ([["slug", "a"]], "must be a dict"),
    ],
)
def test_profiles_not_a_list_of_dicts(raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_profiles(raw, {})


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (["scipy"], "must be a dict"),
        ({"scipy": "quay.io/x"}, "'scipy'"),
        ({"scipy": {"imgae": "x"}}, "unknown key 'imgae'"),
        ({"scipy": {"image": 3}}, "key 'image'"),
        ({"scipy": {"local_python": ["/opt"]}}, "key 'local_python'"),
        ({"scipy": {"env": {"A": 1}}}, "key 'env'"),
        ({"": {"image": "x"}}, "non-empty"),
    ],
)
def test_invalid_toolchains(raw, fragment):
    with pytest.raises(ConfigError) as info:
        parse_toolchains(raw)
    assert "c.ProfileSpawner.toolchains" in str(info.value)
    assert fragment in str(info.value)


def test_describe_is_json_ready():
    small, gpu = parse_profiles(design_profiles(), parse_toolchains(TOOLCHAINS))
    assert small.describe()["cpu"] == {"default": "1", "min": "0.5", "max": "2"}
    assert small.describe()["memory"] == {"default": "2G", "min": "128M", "max": "4G"}
    assert gpu.describe()["gpus"] == {"default": "1", "min": "1", "max": "4"}
    assert gpu.describe()["disk"] == {"default": "20G", "min": "1G", "max": "200G"}
    assert gpu.describe()["toolchain"] == "pytorch"


# --- the same mistakes through hub_ext.setup.configure ---------------------------------------


def local_config(profiles: list[dict[str, Any]] | None = None, **sections: Any) -> Config:
    """A fresh Config per case: load_policy caches per Config object."""
    c = Config()
    c.JupyterHub.spawner_class = "dsplatform-local"
    c.ProfileSpawner.toolchains = copy.deepcopy(TOOLCHAINS)
    c.ProfileSpawner.profiles = design_profiles() if profiles is None else profiles
    c.LocalProfileSpawner.gpu_devices = {"nvidia-a100": ["0", "1", "2", "3"]}
    for name, values in sections.items():
        for key, value in values.items():
            setattr(c[name], key, value)
    return c


def test_configure_accepts_the_design_example():
    c = local_config(
        QuotaPolicy={
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
    )
    policy = configure(c)
    assert [p.slug for p in policy.profiles] == ["cpu-small", "gpu-a100"]
    assert policy.gpu_devices == {"nvidia-a100": ("0", "1", "2", "3")}
    assert policy.quotas.default["memory"] == 4 * G
    assert policy.quotas.groups["ml-research"]["gpus"] == 4
    assert policy.quotas.users["alice"] == {"gpus": 8}
    assert policy.quotas.group_pools == {"ml-research": {"gpus": 6}}
    assert policy.quotas.pools == {"nvidia-a100": 8}


def expect_exit(c: Config, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        configure(c)
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("dsplatform: invalid configuration: ")
    return err


@pytest.mark.parametrize("change, key, reason", INVALID_PROFILES)
def test_configure_stops_on_invalid_profile(change, key, reason, capsys):
    c = local_config([copy.deepcopy(CPU_SMALL), {"slug": "broken", **change}])
    err = expect_exit(c, capsys)
    assert "'broken'" in err
    assert f"key {key!r}" in err
    assert reason in err


@pytest.mark.parametrize(
    "quota, fragments",
    [
        ({"default": {"gpu": 1}}, ["c.QuotaPolicy.default", "unknown key 'gpu'"]),
        ({"default": {"cpu": -1}}, ["c.QuotaPolicy.default", "key 'cpu'"]),
        ({"default": {"memory": "-4G"}}, ["c.QuotaPolicy.default", "key 'memory'"]),
        ({"groups": {"ml": {"gpus": -2}}}, ["c.QuotaPolicy.groups['ml']", "key 'gpus'"]),
        ({"groups": {"ml": {"servers": 1.5}}}, ["c.QuotaPolicy.groups['ml']", "key 'servers'"]),
        ({"groups": {"ml": 4}}, ["c.QuotaPolicy.groups['ml']", "must be a dict"]),
        ({"users": {"bob": {"gpu_hours": 3}}}, ["c.QuotaPolicy.users['bob']", "'gpu_hours'"]),
        (
            {"users": {"bob": {"gpu_hours_per_week": "lots"}}},
            ["c.QuotaPolicy.users['bob']", "key 'gpu_hours_per_week'"],
        ),
        (
            {"group_pools": {"ml": {"gpu_hours_per_week": 3}}},
            ["c.QuotaPolicy.group_pools['ml']", "unknown key 'gpu_hours_per_week'"],
        ),
        ({"group_pools": {"ml": {"gpus": -6}}}, ["c.QuotaPolicy.group_pools['ml']", "'gpus'"]),
        ({"pools": {"nvidia-a100": -8}}, ["c.QuotaPolicy.pools['nvidia-a100']"]),
        ({"pools": {"nvidia-a100": "many"}}, ["c.QuotaPolicy.pools['nvidia-a100']"]),
    ],
)
def test_configure_stops_on_invalid_quota(quota, fragments, capsys):
    err = expect_exit(local_config(QuotaPolicy=quota), capsys)
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize(
    "devices, fragments",
    [
        ({}, ["('gpu-a100')", "key 'gpu_type'", "'nvidia-a100' has no devices"]),
        ({"nvidia-h100": ["0"]}, ["('gpu-a100')", "key 'gpu_type'", "no devices"]),
        (
            {"nvidia-a100": ["0", "1"], "nvidia-h100": ["1"]},
            ["c.LocalProfileSpawner.gpu_devices['nvidia-h100']", "device '1'", "'nvidia-a100'"],
        ),
        (
            {"nvidia-a100": ["0", "1", "0"]},
            ["c.LocalProfileSpawner.gpu_devices['nvidia-a100']", "device '0'"],
        ),
        ({"nvidia-a100": "0,1"}, ["c.LocalProfileSpawner.gpu_devices['nvidia-a100']", "list"]),
        ({"nvidia-a100": ["0,1"]}, ["invalid device id '0,1'"]),
        ({"A100 GPU": ["0"]}, ["c.LocalProfileSpawner.gpu_devices", "'A100 GPU'"]),
        (["0", "1"], ["c.LocalProfileSpawner.gpu_devices must be a dict"]),
    ],
)
def test_configure_stops_on_invalid_gpu_devices(devices, fragments, capsys):
    c = local_config(LocalProfileSpawner={"gpu_devices": devices})
    err = expect_exit(c, capsys)
    for fragment in fragments:
        assert fragment in err


def test_configure_without_gpu_profiles_needs_no_devices():
    c = local_config([copy.deepcopy(CPU_SMALL)], LocalProfileSpawner={"gpu_devices": {}})
    policy = configure(c)
    assert policy.gpu_devices == {}


def test_configure_stops_on_unknown_spawner(capsys):
    c = local_config()
    c.JupyterHub.spawner_class = "no-such-spawner"
    err = expect_exit(c, capsys)
    assert "c.JupyterHub.spawner_class" in err and "'no-such-spawner'" in err


def test_configure_validates_each_config_object_afresh(capsys):
    good = local_config()
    configure(good)
    bad = local_config([{"slug": "x", "cpu": {"default": 3, "max": 2}}])
    err = expect_exit(bad, capsys)
    assert "('x')" in err and "key 'cpu'" in err


@pytest.mark.parametrize(
    ("local_python", "ok"),
    [(None, True), (sys.executable, True), (sys.prefix, True), ("/nonexistent/python", False)],
)
def test_local_python_must_exist(local_python: str | None, ok: bool) -> None:
    from hub_ext.admission.policy import load_policy
    from hub_ext.spawners.local import LocalProfileSpawner

    c = Config()
    c.ProfileSpawner.toolchains = {"env": {"local_python": local_python}}
    c.ProfileSpawner.profiles = [{"slug": "a", "toolchain": "env"}]
    if ok:
        assert load_policy(c, LocalProfileSpawner).toolchains["env"].local_python == local_python
    else:
        with pytest.raises(ConfigError, match=r"toolchains\['env'\]: key 'local_python'"):
            load_policy(c, LocalProfileSpawner)
