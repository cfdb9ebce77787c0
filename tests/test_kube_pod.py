"""Kubernetes mode without a server: every profile key and range edge -> the pod KubeSpawner
builds (schema-validated), the merge order with the admin's config and the profile's
override, the GPU request == limit invariant, the start-up checks, and how a pod that
cannot start is recognised."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jupyterhub.spawner import SpawnException
from kubernetes_asyncio.client.api_client import ApiClient
from kubespawner.objects import make_pod
from traitlets.config import Config

from hub_ext.admission.options import resolve_request
from hub_ext.admission.policy import load_policy
from hub_ext.admission.profiles import parse_profiles, parse_toolchains
from hub_ext.admission.quota import QuotaTables
from hub_ext.admission.reservations import Ledger
from hub_ext.errors import ConfigError
from hub_ext.setup import configure
from hub_ext.spawners.kube import ProfileKubeSpawner
from hub_ext.spawners.kube_failures import FAIL_FAST_REASONS, start_failure
from hub_ext.spawners.kube_pod import (
    check_kube_config,
    equal_extended_resources,
    is_extended_resource,
    is_gpu_resource,
    parse_gpu_scheduling,
    pod_settings,
)

from .offline_kubeconfig import kubeconfig  # noqa: F401  (fixture)

K8S = "1.33"
G = 1024**3
M = 1024**2
TOOLCHAINS = {
    "scipy": {"image": "quay.io/jupyter/scipy-notebook:2025-10-20", "env": {"TOOLCHAIN": "scipy"}},
    "torch": {"image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20"},
}
SCHEDULING = {
    "nvidia-a100": {
        "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
}
BASE = {"slug": "p", "toolchain": "scipy", "cpu": 1, "memory": "1G"}


def grant_for(spec: dict[str, Any], options: dict[str, Any] | None = None, user: str = "alice"):  # type: ignore[no-untyped-def]
    (profile,) = parse_profiles([spec], parse_toolchains(TOOLCHAINS))
    request = resolve_request(options or {}, [profile], ["*"])
    grant = Ledger().reserve(
        request, user=user, server="", groups=[], tables=QuotaTables(), devices={}
    )
    return grant, request


def as_json(obj: Any) -> dict[str, Any]:
    async def run() -> Any:
        async with ApiClient() as api:
            return api.sanitize_for_serialization(obj)

    return json.loads(json.dumps(asyncio.run(run())))


def manifests(
    spec: dict[str, Any], options: dict[str, Any] | None = None, config: Config | None = None
):  # type: ignore[no-untyped-def]
    """What the real ProfileKubeSpawner sends for a profile: pod and PVC, schema-checked."""
    grant, request = grant_for(spec, options)
    c = config or Config()
    c.ProfileKubeSpawner.gpu_scheduling = SCHEDULING
    c.ProfileKubeSpawner.dataset_cache_volume = {
        "persistentVolumeClaim": {"claimName": "dsdata-cache"}
    }
    c.ProfileKubeSpawner.dataset_cache_dir = "/srv/dsdata-cache"

    async def run() -> tuple[Any, Any]:
        spawner = ProfileKubeSpawner(_mock=True, config=c)
        spawner.api_token = "server-token"
        spawner.apply_grant(grant, request)
        spawner._grant, spawner._request = grant, request
        await spawner.before_launch()
        pvc = spawner.get_pvc_manifest() if spawner.storage_pvc_ensure else None
        return await spawner.get_pod_manifest(), pvc

    pod, pvc = asyncio.run(run())
    pod, pvc = as_json(pod), (as_json(pvc) if pvc is not None else {})
    for obj in (pod, pvc):  # every object the spawner would send
        if obj:
            assert kubernetes_validate.validate(obj, K8S, strict=True) == K8S
    return pod, pvc


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


# --- every profile key -------------------------------------------------------------------------

BASELINE: dict[str, Any] = {}


def check_slug(pod: dict, pvc: dict) -> None:
    assert pod["metadata"]["labels"]["dsplatform/profile"] == "my-slug"
    assert env_of(pod["spec"]["containers"][0])["DSPLATFORM_PROFILE"] == "my-slug"


def check_toolchain(pod: dict, pvc: dict) -> None:
    (c,) = pod["spec"]["containers"]
    assert c["image"] == "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20"
    assert "TOOLCHAIN" not in env_of(c)


def check_cpu(pod: dict, pvc: dict) -> None:
    r = pod["spec"]["containers"][0]["resources"]
    assert r["limits"]["cpu"] == r["requests"]["cpu"] == 3.5


def check_memory(pod: dict, pvc: dict) -> None:
    r = pod["spec"]["containers"][0]["resources"]
    assert r["limits"]["memory"] == r["requests"]["memory"] == 3 * G


def check_gpu(pod: dict, pvc: dict) -> None:
    r = pod["spec"]["containers"][0]["resources"]
    assert r["limits"]["nvidia.com/gpu"] == r["requests"]["nvidia.com/gpu"] == "2"
    assert pod["spec"]["nodeSelector"] == SCHEDULING["nvidia-a100"]["node_selector"]
    assert pod["spec"]["tolerations"] == SCHEDULING["nvidia-a100"]["tolerations"]
    assert (
        json.loads(env_of(pod["spec"]["containers"][0])["DSPLATFORM_RESOURCES"])["gpu_type"]
        == "nvidia-a100"
    )


def check_disk(pod: dict, pvc: dict) -> None:
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert (
        volumes["dsplatform-workspace"]["persistentVolumeClaim"]["claimName"]
        == pvc["metadata"]["name"]
    )
    assert pvc["spec"]["resources"]["requests"]["storage"] == str(30 * G)


def check_no_disk(pod: dict, pvc: dict) -> None:
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["dsplatform-workspace"] == {"name": "dsplatform-workspace", "emptyDir": {}}


def check_datasets(pod: dict, pvc: dict) -> None:
    (init,) = pod["spec"]["initContainers"]
    (main,) = pod["spec"]["containers"]
    assert init["command"] == ["python", "-m", "server_ext.preload", "iris@v1"]
    assert init["volumeMounts"] == main["volumeMounts"]  # the same workspace and cache
    assert init["workingDir"] == "/home/jovyan"
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert env_of(main)["DSPLATFORM_DATASETS"] == "iris@v1"


def check_env(pod: dict, pvc: dict) -> None:
    assert env_of(pod["spec"]["containers"][0])["PROFILE_VAR"] == "x"


def check_override(pod: dict, pvc: dict) -> None:
    assert pod["spec"]["priorityClassName"] == "batch"
    assert pod["metadata"]["labels"]["team"] == "vision"


def same_as_baseline(pod: dict, pvc: dict) -> None:
    """Keys that only matter to the hub (form, groups, culling) leave the pod unchanged."""
    assert pod == BASELINE["pod"]


PROFILE_KEYS_TABLE = [
    ("slug", {"slug": "my-slug"}, {}, check_slug),
    ("display_name", {"display_name": "Something"}, {}, same_as_baseline),
    ("description", {"description": "Long text"}, {}, same_as_baseline),
    ("toolchain", {"toolchain": "torch"}, {}, check_toolchain),
    ("cpu", {"cpu": {"default": 1, "max": 4}}, {"cpu": 3.5}, check_cpu),
    ("memory", {"memory": {"default": "1G", "max": "4G"}}, {"memory": "3G"}, check_memory),
    ("gpu+gpu_type", {"gpu": {"default": 1, "max": 4}, "gpu_type": "nvidia-a100"}, {"gpus": 2}, check_gpu),
    ("disk", {"disk": {"default": "10G", "max": "50G"}}, {"disk": "30G"}, check_disk),
    ("no disk", {}, {}, check_no_disk),
    ("groups", {"groups": ["ml-research", "*"]}, {}, same_as_baseline),
    ("idle_timeout", {"idle_timeout": 60}, {}, same_as_baseline),
    ("datasets", {"datasets": ["iris@v1"]}, {}, check_datasets),
    ("env", {"env": {"PROFILE_VAR": "x"}}, {}, check_env),
    ("kubespawner_override", {"kubespawner_override": {"extra_pod_config": {"priorityClassName": "batch"},
                                                       "extra_labels": {"team": "vision"}}}, {}, check_override),
    ("default", {"default": True}, {}, same_as_baseline),
]  # fmt: skip


@pytest.mark.usefixtures("kubeconfig")
@pytest.mark.parametrize(
    ("key", "change", "options", "check"),
    PROFILE_KEYS_TABLE,
    ids=[r[0] for r in PROFILE_KEYS_TABLE],
)
def test_every_profile_key_reaches_the_pod(key, change, options, check):  # type: ignore[no-untyped-def]
    if not BASELINE:
        BASELINE["pod"], _ = manifests(dict(BASE))
    pod, pvc = manifests({**BASE, **change}, options)
    check(pod, pvc)


# --- every range edge --------------------------------------------------------------------------

RANGES = {"slug": "r", "toolchain": "torch", "gpu_type": "nvidia-a100",
          "cpu": {"default": 1, "min": 0.5, "max": 8}, "memory": {"default": "1G", "min": "512M", "max": "64G"},
          "gpu": {"default": 1, "min": 0, "max": 4}, "disk": {"default": "10G", "min": "1G", "max": "200G"}}  # fmt: skip
EDGES = [
    ({"cpu": 0.5}, "cpu", 0.5),
    ({"cpu": 8}, "cpu", 8.0),
    ({"memory": "512M"}, "memory", 512 * M),
    ({"memory": "64G"}, "memory", 64 * G),
    ({"gpus": 0}, "nvidia.com/gpu", None),
    ({"gpus": 4}, "nvidia.com/gpu", "4"),
    ({"disk": "1G"}, "storage", str(G)),
    ({"disk": "200G"}, "storage", str(200 * G)),
]


@pytest.mark.usefixtures("kubeconfig")
@pytest.mark.parametrize(("options", "resource", "expected"), EDGES)
def test_range_edges_become_valid_pods(options, resource, expected):  # type: ignore[no-untyped-def]
    pod, pvc = manifests(dict(RANGES), options)
    resources = pod["spec"]["containers"][0]["resources"]
    if resource == "storage":
        assert pvc["spec"]["resources"]["requests"]["storage"] == expected
        return
    assert resources["limits"].get(resource) == resources["requests"].get(resource) == expected
    if resource == "nvidia.com/gpu" and expected is None:  # no GPU: no GPU node either
        assert "nodeSelector" not in pod["spec"] and "tolerations" not in pod["spec"]


@pytest.mark.parametrize("options", [{"cpu": 0.4}, {"cpu": 8.5}, {"memory": "511M"}, {"memory": "65G"},
                                     {"gpus": 5}, {"disk": "999M"}, {"disk": "201G"}])  # fmt: skip
def test_just_outside_a_range_is_refused(options):  # type: ignore[no-untyped-def]
    from hub_ext.admission.refusals import Refusal

    with pytest.raises(Refusal, match="is outside profile 'r'"):
        grant_for(dict(RANGES), options)


# --- merge order: admin config < dsplatform < profile override ---------------------------------

ADMIN = {
    "extra_labels": {"team": "admin", "dsplatform/profile": "spoofed"},
    "node_selector": {"pool": "users"},
    "tolerations": [{"key": "users", "operator": "Exists"}],
    "volumes": [{"name": "shared", "nfs": {"server": "nfs.example.org", "path": "/x"}}],
    "volume_mounts": [{"name": "shared", "mountPath": "/shared"}],
    "extra_resource_limits": {"example.com/fpga": "1", "nvidia.com/gpu": "8"},
    "extra_resource_guarantees": {},
}
GPU_SPEC = {"slug": "g", "toolchain": "torch", "gpu_type": "nvidia-a100", "gpu": {"default": 1, "max": 4},
            "cpu": 2, "memory": "4G", "disk": {"default": "10G"}}  # fmt: skip

MERGE_TABLE = [
    pytest.param({}, lambda s: (
        s["extra_labels"] == {"team": "admin", "dsplatform/profile": "g", "dsplatform/user": "alice"}
        and s["node_selector"] == {"pool": "users", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
        and s["tolerations"] == [ADMIN["tolerations"][0], *SCHEDULING["nvidia-a100"]["tolerations"]]
        and list(s["volumes"]) == ["000-shared", "dsplatform-workspace"]
        and s["extra_resource_limits"] == s["extra_resource_guarantees"] == {"example.com/fpga": "1", "nvidia.com/gpu": "2"}
    ), id="dsplatform-over-admin"),
    pytest.param({"extra_labels": {"dsplatform/profile": "custom", "x": "y"}}, lambda s: (
        s["extra_labels"] == {"team": "admin", "dsplatform/profile": "custom", "dsplatform/user": "alice", "x": "y"}
    ), id="override-dict-merges-last"),
    pytest.param({"tolerations": [{"key": "only", "operator": "Exists"}]}, lambda s: (
        s["tolerations"] == [{"key": "only", "operator": "Exists"}]
    ), id="override-list-replaces"),
    pytest.param({"node_selector": {"nvidia.com/gpu.product": "other"}}, lambda s: (
        s["node_selector"] == {"pool": "users", "nvidia.com/gpu.product": "other"}
    ), id="override-selector-key-wins"),
    pytest.param({"extra_resource_limits": {"example.com/fpga": "2"}}, lambda s: (
        s["extra_resource_limits"] == s["extra_resource_guarantees"] == {"example.com/fpga": "2", "nvidia.com/gpu": "2"}
    ), id="override-of-limit-only-keeps-request-equal"),
    pytest.param({"extra_resource_guarantees": {"nvidia.com/gpu": "7", "hugepages-2Mi": "1Gi"}}, lambda s: (
        s["extra_resource_limits"] == s["extra_resource_guarantees"]
        == {"example.com/fpga": "1", "hugepages-2Mi": "1Gi", "nvidia.com/gpu": "2"}
    ), id="gpus-are-the-grant-whatever-the-override"),
    pytest.param({"volumes": {"dsplatform-workspace": {"name": "dsplatform-workspace", "emptyDir": {}}}}, lambda s: (
        s["volumes"]["dsplatform-workspace"] == {"name": "dsplatform-workspace", "emptyDir": {}}
        and "000-shared" in s["volumes"]
    ), id="override-volumes-by-key"),
]  # fmt: skip


@pytest.mark.parametrize(("override", "check"), MERGE_TABLE)
def test_merge_order(override, check):  # type: ignore[no-untyped-def]
    grant, request = grant_for({**GPU_SPEC, "kubespawner_override": override}, {"gpus": 2})
    settings = pod_settings(
        grant, request, gpu_scheduling=SCHEDULING, workspace_path="/home/jovyan", base=ADMIN
    )
    assert check(settings), settings


def test_an_admin_home_mount_wins_over_the_workspace_volume():
    grant, request = grant_for(dict(GPU_SPEC))
    admin = {"volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}],
             "volume_mounts": [{"name": "home", "mountPath": "/home/jovyan/"}]}  # fmt: skip
    settings = pod_settings(grant, request, workspace_path="/home/jovyan", base=admin)
    assert list(settings["volumes"]) == ["000-home"]
    assert list(settings["volume_mounts"]) == ["000-home"]


@pytest.mark.usefixtures("kubeconfig")
def test_admin_config_survives_two_spawns_of_the_same_spawner():
    """apply_grant runs at every start of a spawner object: nothing accumulates."""
    c = Config()
    c.KubeSpawner.extra_labels = {"team": "admin"}
    c.KubeSpawner.tolerations = [{"key": "users", "operator": "Exists"}]
    first, _ = grant_for(dict(GPU_SPEC), {"gpus": 1})
    second, request = grant_for(dict(GPU_SPEC), {"gpus": 3})

    async def run() -> ProfileKubeSpawner:
        spawner = ProfileKubeSpawner(_mock=True, config=c)
        spawner.apply_grant(first, request)
        spawner.apply_grant(second, request)
        return spawner

    spawner = asyncio.run(run())
    assert spawner.extra_labels["team"] == "admin"
    assert spawner.tolerations == [{"key": "users", "operator": "Exists"}]  # no GPU scheduling set
    assert (
        spawner.extra_resource_limits
        == spawner.extra_resource_guarantees
        == {"nvidia.com/gpu": "3"}
    )
    assert len(spawner.volumes) == 1


@pytest.mark.usefixtures("kubeconfig")
def test_a_later_start_of_the_same_server_keeps_nothing_of_the_earlier_one():
    """GPU profile with a disk, datasets and an override, then a CPU profile on the same
    spawner object: no GPUs, GPU node, disk, preload or override are left behind."""
    c = Config()
    c.KubeSpawner.extra_labels = {"team": "admin"}
    c.KubeSpawner.tolerations = [{"key": "users", "operator": "Exists"}]
    c.ProfileKubeSpawner.gpu_scheduling = SCHEDULING
    gpu_spec = {**GPU_SPEC, "datasets": ["iris@v1"],
                "kubespawner_override": {"extra_pod_config": {"priorityClassName": "gpu"}}}  # fmt: skip
    gpu = grant_for(gpu_spec, {"gpus": 3})
    cpu = grant_for({**BASE, "slug": "cpu"})

    async def run() -> tuple[Any, Any]:
        spawner = ProfileKubeSpawner(_mock=True, config=c)
        pods = []
        for grant, request in (gpu, cpu):
            spawner.apply_grant(grant, request)
            spawner._grant, spawner._request = grant, request
            await spawner.before_launch()
            async with ApiClient() as api:
                pods.append(api.sanitize_for_serialization(await spawner.get_pod_manifest()))
        return json.loads(json.dumps(pods[0])), (json.loads(json.dumps(pods[1])), spawner)

    first, (second, spawner) = asyncio.run(run())
    assert first["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "3"
    assert first["spec"]["priorityClassName"] == "gpu" and first["spec"]["initContainers"]
    assert kubernetes_validate.validate(second, K8S, strict=True) == K8S
    resources = second["spec"]["containers"][0]["resources"]
    assert resources["limits"] == resources["requests"] == {"cpu": 1.0, "memory": G}
    assert second["spec"]["tolerations"] == [{"key": "users", "operator": "Exists"}]
    assert "nodeSelector" not in second["spec"] and "priorityClassName" not in second["spec"]
    assert "initContainers" not in second["spec"]
    assert second["metadata"]["labels"]["team"] == "admin"
    assert second["metadata"]["labels"]["dsplatform/profile"] == "cpu"
    volumes = {v["name"]: v for v in second["spec"]["volumes"]}
    assert volumes["dsplatform-workspace"] == {"name": "dsplatform-workspace", "emptyDir": {}}
    assert spawner.storage_pvc_ensure is False and spawner.storage_capacity is None


# --- the invariant: the pod requests exactly the granted GPUs, request == limit -------------------

RESOURCE_NAMES = st.sampled_from(["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "amd.com/gpu", "example.com/fpga",
                                  "hugepages-2Mi", "vendor.io/nic", "ephemeral-storage"])  # fmt: skip
AMOUNTS = st.sampled_from(["1", "2", "3", "8"])
TABLES = st.dictionaries(RESOURCE_NAMES, AMOUNTS, max_size=3)


@settings(max_examples=60, deadline=None)
@given(gpus=st.integers(0, 4), base_lim=TABLES, base_req=TABLES, over_lim=TABLES, over_req=TABLES)
def test_gpu_request_equals_limit_equals_grant(gpus, base_lim, base_req, over_lim, over_req):  # type: ignore[no-untyped-def]
    """Whatever the admin's defaults and the override hold (check_kube_config refuses GPU keys
    in overrides at start-up; this is the second line), the pod KubeSpawner builds asks for
    exactly the granted GPUs, and every extended resource has request == limit."""
    override = {
        k: v
        for k, v in (("extra_resource_limits", over_lim), ("extra_resource_guarantees", over_req))
        if v
    }
    grant, request = grant_for({**GPU_SPEC, "gpu": {"default": 0, "min": 0, "max": 4}, "kubespawner_override": override},
                               {"gpus": gpus})  # fmt: skip
    settings = pod_settings(
        grant,
        request,
        base={"extra_resource_limits": base_lim, "extra_resource_guarantees": base_req},
    )
    pod = as_json(make_pod(name="p", cmd=["x"], port=8888, image="i", cpu_limit=settings["cpu_limit"],
                           cpu_guarantee=settings["cpu_guarantee"], mem_limit=settings["mem_limit"],
                           mem_guarantee=settings["mem_guarantee"],
                           extra_resource_limits=settings.get("extra_resource_limits"),
                           extra_resource_guarantees=settings.get("extra_resource_guarantees")))  # fmt: skip
    resources = pod["spec"]["containers"][0]["resources"]
    limits, requests = resources.get("limits", {}), resources.get("requests", {})
    for name in set(limits) | set(requests):
        if is_extended_resource(name):
            assert limits.get(name) == requests.get(name), (name, resources)
    gpu_keys = {k for k in set(limits) | set(requests) if is_gpu_resource(k)}
    assert gpu_keys == ({"nvidia.com/gpu"} if gpus else set())
    if gpus:
        assert limits["nvidia.com/gpu"] == requests["nvidia.com/gpu"] == str(gpus)


@pytest.mark.parametrize(
    ("limits", "guarantees", "expected"),
    [
        ({"nvidia.com/gpu": "2"}, {"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": "2"}),
        ({}, {"example.com/fpga": "1"}, {"example.com/fpga": "1"}),
        ({"hugepages-1Gi": "2Gi"}, {}, {"hugepages-1Gi": "2Gi"}),
    ],
)
def test_equal_extended_resources(limits, guarantees, expected):  # type: ignore[no-untyped-def]
    assert equal_extended_resources(limits, guarantees) == (expected, expected)


def test_native_resources_are_not_forced_equal():
    assert equal_extended_resources({"ephemeral-storage": "2Gi"}, {"ephemeral-storage": "1Gi"}) == (
        {"ephemeral-storage": "2Gi"}, {"ephemeral-storage": "1Gi"})  # fmt: skip
    assert not is_extended_resource("kubernetes.io/something") and is_extended_resource("a.io/b")


# --- start-up checks ---------------------------------------------------------------------------

BAD_OVERRIDES = [
    ({"extra_resource_limits": {"nvidia.com/gpu": "8"}}, "extra_resource_limits['nvidia.com/gpu']"),
    ({"extra_resource_guarantees": {"nvidia.com/mig-1g.10gb": "1"}}, "extra_resource_guarantees['nvidia.com/mig-1g.10gb']"),
    ({"extra_container_config": {"resources": {"limits": {"amd.com/gpu": "1"}}}},
     "extra_container_config['resources']['limits']['amd.com/gpu']"),
    ({"extra_containers": [{"name": "s", "image": "i", "resources": {"requests": {"gpu.intel.com/i915": "1"}}}]},
     "extra_containers[0]['resources']['requests']['gpu.intel.com/i915']"),
    ({"init_containers": [{"name": "s", "image": "i", "resources": {"limits": {"my.vendor/gpu-x": "1"}}}]},
     "init_containers[0]['resources']['limits']['my.vendor/gpu-x']"),
    ({"extra_pod_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}},
     "extra_pod_config['resources']['limits']['nvidia.com/gpu']"),
]  # fmt: skip


def kube_config(profile: dict[str, Any], **traits: Any) -> Config:
    c = Config()
    c.JupyterHub.spawner_class = "dsplatform-kube"
    c.ProfileSpawner.toolchains = TOOLCHAINS
    c.ProfileSpawner.profiles = [dict(BASE), profile]
    for name, value in traits.items():
        setattr(c.ProfileKubeSpawner, name, value)
    return c


@pytest.mark.parametrize(("override", "where"), BAD_OVERRIDES)
def test_gpu_keys_in_an_override_stop_the_hub(override, where, capsys):  # type: ignore[no-untyped-def]
    c = kube_config({"slug": "sneaky", "cpu": 1, "kubespawner_override": override})
    with pytest.raises(SystemExit):
        configure(c)
    err = capsys.readouterr().err
    assert (
        "dsplatform: invalid configuration: c.ProfileSpawner.profiles[1] ('sneaky'): "
        f"key 'kubespawner_override': {where} requests GPUs outside the quota"
    ) in err


def test_the_configured_gpu_resource_counts_as_a_gpu():
    c = kube_config({"slug": "s", "kubespawner_override": {"extra_resource_limits": {"example.com/accel": "1"}}},
                    gpu_resource_name="example.com/accel")  # fmt: skip
    with pytest.raises(ConfigError, match=r"extra_resource_limits\['example.com/accel'\]"):
        load_policy(c, ProfileKubeSpawner)
    load_policy(kube_config({"slug": "s", "kubespawner_override": {"extra_resource_limits": {"example.com/accel": "1"}}}),
                ProfileKubeSpawner)  # fmt: skip


@pytest.mark.parametrize(
    ("traits", "profile", "message"),
    [
        ({}, {"slug": "s", "kubespawner_override": {"imagee": "x"}},
         "c.ProfileSpawner.profiles[1] ('s'): key 'kubespawner_override': 'imagee' is not a configurable KubeSpawner trait"),
        ({"gpu_scheduling": {"nvidia-a100": {"nodeSelector": {}}}}, {"slug": "s"},
         "c.ProfileKubeSpawner.gpu_scheduling['nvidia-a100']: unknown key 'nodeSelector'"),
        ({"gpu_scheduling": {"nvidia-a100": {"node_selector": {"a": 1}}}}, {"slug": "s"},
         "key 'node_selector' must map label names to strings"),
        ({"gpu_scheduling": {"nvidia-a100": {"tolerations": {"key": "x"}}}}, {"slug": "s"},
         "key 'tolerations' must be a list of tolerations"),
        ({"gpu_scheduling": {"bad type!": {}}}, {"slug": "s"}, "'bad type!' is not a GPU type name"),
        ({"dataset_cache_volume": {"name": "x", "emptyDir": {}}}, {"slug": "s"}, "give exactly one volume source"),
        ({"dataset_cache_volume": {"emptyDir": {}}}, {"slug": "s"}, "needs c.ProfileSpawner.dataset_cache_dir"),
    ],
)  # fmt: skip
def test_kube_config_mistakes_name_the_key(traits, profile, message):  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as info:
        load_policy(kube_config(profile, **traits), ProfileKubeSpawner)
    assert message in str(info.value)


def test_good_kube_config_passes():
    c = kube_config({"slug": "s", "kubespawner_override": {"extra_resource_limits": {"example.com/fpga": "1"},
                                                           "image": "x:1", "extra_pod_config": {"priorityClassName": "p"}}},
                    gpu_scheduling=SCHEDULING, dataset_cache_volume={"nfs": {"server": "n", "path": "/"}},
                    dataset_cache_dir="/srv/cache")  # fmt: skip
    assert [p.slug for p in load_policy(c, ProfileKubeSpawner).profiles] == ["p", "s"]
    assert parse_gpu_scheduling(SCHEDULING) == SCHEDULING
    check_kube_config([], {}, [])


# --- a pod that cannot start ---------------------------------------------------------------------


def pod(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "jupyter-alice"}, "status": status}


def waiting(reason: str, message: str = "", key: str = "containerStatuses") -> dict[str, Any]:
    return {
        key: [
            {
                "name": "notebook",
                "image": "img:1",
                "state": {"waiting": {"reason": reason, "message": message}},
            }
        ]
    }


UNSCHEDULABLE = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."}], "phase": "Pending"}  # fmt: skip
FAILURES = [
    (UNSCHEDULABLE, "Unschedulable", "unschedulable", 503, "FailedScheduling: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."),
    (waiting("ErrImagePull", "not found"), "ErrImagePull", "image", 502, "Image img:1 of container notebook cannot be pulled (ErrImagePull: not found)"),
    (waiting("ImagePullBackOff", 'Back-off pulling image "img:1"'), "ImagePullBackOff", "image", 502, "ImagePullBackOff"),
    (waiting("InvalidImageName"), "InvalidImageName", "image", 502, "(InvalidImageName)"),
    (waiting("ErrImagePull", key="initContainerStatuses"), "ErrImagePull", "image", 502, "of init container notebook"),
    (waiting("CreateContainerConfigError", 'secret "s" not found'), "CreateContainerConfigError", "container", 502, 'secret "s" not found'),
    ({"initContainerStatuses": [{"name": "dsdata-preload", "state": {"terminated": {"exitCode": 1, "message": "preload: iris@v9: no such version"}}}]},
     "InitContainerFailed", "container", 502, "The init container dsdata-preload exited with code 1: preload: iris@v9: no such version."),
    ({"containerStatuses": [{"name": "notebook", "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}]},
     "ContainerFailed", "container", 502, "The container notebook exited with code 2: Error."),
    ({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}, "PodFailed", "container", 502, "(Evicted: The node was low on resource: memory.)"),
]  # fmt: skip
STILL_STARTING = [
    {},
    {"phase": "Pending"},
    {"conditions": [{"type": "PodScheduled", "status": "True"}], **waiting("PodInitializing")},
    waiting("ContainerCreating"),
    {"phase": "Running", "containerStatuses": [{"name": "notebook", "state": {"running": {}}}]},
    {"initContainerStatuses": [{"name": "dsdata-preload", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]},
    {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]},
]  # fmt: skip


@pytest.mark.parametrize(("status", "reason", "label", "code", "fragment"), FAILURES)
def test_start_failures_are_recognised(status, reason, label, code, fragment):  # type: ignore[no-untyped-def]
    failure = start_failure(pod(status))
    assert failure is not None
    assert (failure.reason, failure.label, failure.status_code) == (reason, label, code)
    assert fragment in failure.message
    assert reason in FAIL_FAST_REASONS
    assert start_failure(pod(status), [r for r in FAIL_FAST_REASONS if r != reason]) is None


@pytest.mark.parametrize("status", STILL_STARTING)
def test_starting_pods_are_left_alone(status):  # type: ignore[no-untyped-def]
    assert start_failure(pod(status)) is None
    assert start_failure(None) is None


@pytest.mark.usefixtures("kubeconfig")
def test_spawner_fails_only_while_it_waits_for_the_pod():
    """While KubeSpawner waits for the pod, a failure raises SpawnException; polls later
    (the server is running) never do."""

    async def run() -> None:
        spawner = ProfileKubeSpawner(_mock=True, config=Config())
        broken = pod({"phase": "Pending", "podIP": None, **waiting("ErrImagePull", "nope")})
        assert spawner.is_pod_running(broken) is False  # not starting: a plain answer
        spawner._waiting_for_pod = True
        with pytest.raises(SpawnException) as info:
            spawner.is_pod_running(broken)
        assert info.value.status_code == 502 and "ErrImagePull: nope" in info.value.message
        spawner.fail_fast_on = ["Unschedulable"]
        assert spawner.is_pod_running(broken) is False

    asyncio.run(run())


# --- sandbox pods are hardened -----------------------------------------------------------------


@pytest.mark.usefixtures("kubeconfig")
def test_sandbox_containers_run_unprivileged_and_read_the_cache_read_only() -> None:
    """Every container of a sandbox pod (the notebook and the preload init container): a
    non-root uid, no privilege escalation, no capabilities, the RuntimeDefault seccomp
    profile; the shared dataset cache is mounted read-only (the catalog service writes it)."""
    pod, _ = manifests({"slug": "p", "datasets": ["iris@v1"], "gpu": 0})
    assert pod["spec"]["securityContext"] == {"fsGroup": 100}
    (init,) = pod["spec"]["initContainers"]
    (main,) = pod["spec"]["containers"]
    for container in (init, main):
        context = container["securityContext"]
        assert context["runAsUser"] == 1000 and context["runAsNonRoot"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        cache = [m for m in container["volumeMounts"] if m["mountPath"] == "/srv/dsdata-cache"]
        assert cache == [{"name": "dsplatform-dataset-cache", "mountPath": "/srv/dsdata-cache",
                          "readOnly": True}]  # fmt: skip
    # an admin may add to the security context (and must ask to weaken it)
    c = Config()
    c.KubeSpawner.container_security_context = {"readOnlyRootFilesystem": True}
    pod, _ = manifests({"slug": "p", "gpu": 0}, config=c)
    context = pod["spec"]["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["capabilities"] == {
        "drop": ["ALL"]
    }
