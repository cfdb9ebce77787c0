"""Kubernetes mode: grant -> KubeSpawner settings -> pod/PVC manifests valid per the official
Kubernetes schemas (kubernetes-validate, strict, 1.33)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_asyncio.client.api_client import ApiClient
from kubespawner import KubeSpawner
from kubespawner.objects import make_pod, make_pvc
from traitlets.config import Config

from hub_ext.admission.options import Request, resolve_request
from hub_ext.admission.profiles import parse_profiles, parse_toolchains
from hub_ext.admission.quota import QuotaTables
from hub_ext.admission.reservations import Grant, Ledger
from hub_ext.spawners.kube import ProfileKubeSpawner, label_value, pod_settings
from hub_ext.spawners.kube_pod import SANDBOX_SECURITY

from .offline_kubeconfig import kubeconfig  # noqa: F401  (fixture)

K8S = "1.33"
G = 1024**3
LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

TOOLCHAINS = parse_toolchains(
    {
        "scipy": {"image": "quay.io/jupyter/scipy-notebook:2025-10-20"},
        "pytorch": {"image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20"},
        "local": {"local_python": "/opt/envs/x"},  # no image: KubeSpawner's default stays
    }
)
PROFILES = parse_profiles(
    [
        {
            "slug": "cpu-small",
            "toolchain": "scipy",
            "cpu": {"default": 1, "min": 0.5, "max": 2},
            "memory": {"default": "2G", "max": "4G"},
        },
        {
            "slug": "gpu-a100",
            "toolchain": "pytorch",
            "gpu_type": "nvidia-a100",
            "gpu": {"default": 1, "min": 0, "max": 4},
            "cpu": 8,
            "memory": "64G",
            "disk": {"default": "20G", "max": "200G"},
        },
        {"slug": "bare", "toolchain": "local", "cpu": 0.5, "memory": "512M"},
        {
            "slug": "h100-custom",
            "toolchain": "pytorch",
            "gpu_type": "nvidia-h100",
            "gpu": 1,
            "cpu": 4,
            "memory": "32G",
            "kubespawner_override": {
                "image": "registry.example.org/custom:1",
                "extra_labels": {"team": "vision", "dsplatform/user": "overridden"},
                "node_selector": {"topology.kubernetes.io/zone": "eu-1a"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "vision"}],
                "storage_capacity": "999Gi",  # not a dict: replaces (there is no disk here)
                "extra_pod_config": {"priorityClassName": "gpu-high"},
            },
        },
    ],
    TOOLCHAINS,
)
SCHEDULING: dict[str, Any] = {
    "nvidia-a100": {
        "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    },
    "nvidia-h100": {"node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
}


def grant_for(options: dict[str, Any], user: str = "alice") -> tuple[Grant, Request]:
    request = resolve_request(options, PROFILES, ["*"])
    grant = Ledger().reserve(
        request, user=user, server="", groups=[], tables=QuotaTables(), devices={}
    )
    return grant, request


def serialize(obj: Any) -> dict[str, Any]:
    """A kubernetes model as the JSON sent to the API server (needs an event loop)."""

    async def run() -> dict[str, Any]:
        async with ApiClient() as api:
            result: dict[str, Any] = api.sanitize_for_serialization(obj)
            return result

    return json.loads(json.dumps(asyncio.run(run())))


def pod_from_settings(settings: dict[str, Any]) -> dict[str, Any]:
    pod = make_pod(
        name="jupyter-alice",
        cmd=["jupyterhub-singleuser"],
        port=8888,
        image=settings.get("image", "quay.io/jupyterhub/k8s-singleuser-sample:4.2.0"),
        node_selector=settings.get("node_selector"),
        tolerations=settings.get("tolerations"),
        labels=settings["extra_labels"],
        cpu_limit=settings["cpu_limit"],
        cpu_guarantee=settings["cpu_guarantee"],
        mem_limit=settings["mem_limit"],
        mem_guarantee=settings["mem_guarantee"],
        extra_resource_limits=settings.get("extra_resource_limits"),
        extra_resource_guarantees=settings.get("extra_resource_guarantees"),
        extra_pod_config=settings.get("extra_pod_config"),
        env={"DSPLATFORM_PROFILE": settings["extra_labels"]["dsplatform/profile"]},
    )
    return serialize(pod)


# --- label values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("alice", "alice"),
        ("gpu-a100", "gpu-a100"),
        ("Alice@Example.com", "Alice-Example.com"),
        ("user.name_1", "user.name_1"),
        ("jörg", "j-rg"),
        ("-bob-", "bob"),
        ("..x..", "x"),
        ("a b c", "a-b-c"),
        ("a" * 100, "a" * 63),
        ("a" * 62 + "@b", "a" * 62),  # cut at 63, then the trailing "-" stripped
        ("", "x"),
        ("@@@", "x"),
        ("___", "x"),
    ],
)
def test_label_value(text, expected):
    value = label_value(text)
    assert value == expected
    assert len(value) <= 63 and LABEL_VALUE_RE.match(value)


# --- pod_settings ------------------------------------------------------------------------------

SETTINGS_TABLE = [
    pytest.param(
        {"profile": "cpu-small", "cpu": 1.5, "memory": "3G"},
        "Alice@Example.com",
        {},
        {
            "cpu_limit": 1.5,
            "cpu_guarantee": 1.5,
            "mem_limit": 3 * G,
            "mem_guarantee": 3 * G,
            "extra_labels": {
                "dsplatform/profile": "cpu-small",
                "dsplatform/user": "Alice-Example.com",
            },
            "image": "quay.io/jupyter/scipy-notebook:2025-10-20",
        },
        id="cpu-only",
    ),
    pytest.param(
        {"profile": "gpu-a100", "gpus": 2, "disk": "50G"},
        "alice",
        {},
        {
            "cpu_limit": 8.0,
            "cpu_guarantee": 8.0,
            "mem_limit": 64 * G,
            "mem_guarantee": 64 * G,
            "extra_labels": {"dsplatform/profile": "gpu-a100", "dsplatform/user": "alice"},
            "image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20",
            "extra_resource_limits": {"nvidia.com/gpu": "2"},
            "extra_resource_guarantees": {"nvidia.com/gpu": "2"},
            "storage_pvc_ensure": True,
            "storage_capacity": str(50 * G),
        },
        id="gpu-without-scheduling",
    ),
    pytest.param(
        {"profile": "gpu-a100", "gpus": 4},
        "bob",
        {"gpu_scheduling": SCHEDULING},
        {
            "cpu_limit": 8.0,
            "cpu_guarantee": 8.0,
            "mem_limit": 64 * G,
            "mem_guarantee": 64 * G,
            "extra_labels": {"dsplatform/profile": "gpu-a100", "dsplatform/user": "bob"},
            "image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20",
            "extra_resource_limits": {"nvidia.com/gpu": "4"},
            "extra_resource_guarantees": {"nvidia.com/gpu": "4"},
            "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "storage_pvc_ensure": True,
            "storage_capacity": str(20 * G),
        },
        id="gpu-with-scheduling",
    ),
    pytest.param(
        {"profile": "gpu-a100", "gpus": 0},
        "carol",
        {"gpu_scheduling": SCHEDULING},
        {
            "cpu_limit": 8.0,
            "cpu_guarantee": 8.0,
            "mem_limit": 64 * G,
            "mem_guarantee": 64 * G,
            "extra_labels": {"dsplatform/profile": "gpu-a100", "dsplatform/user": "carol"},
            "image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20",
            "storage_pvc_ensure": True,
            "storage_capacity": str(20 * G),
        },
        id="gpu-profile-zero-gpus-no-gpu-node",
    ),
    pytest.param(
        {"profile": "gpu-a100", "gpus": 1, "disk": "1G"},
        "dave",
        {"gpu_resource": "amd.com/gpu", "gpu_scheduling": {"nvidia-h100": {"node_selector": {}}}},
        {
            "cpu_limit": 8.0,
            "cpu_guarantee": 8.0,
            "mem_limit": 64 * G,
            "mem_guarantee": 64 * G,
            "extra_labels": {"dsplatform/profile": "gpu-a100", "dsplatform/user": "dave"},
            "image": "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20",
            "extra_resource_limits": {"amd.com/gpu": "1"},
            "extra_resource_guarantees": {"amd.com/gpu": "1"},
            "storage_pvc_ensure": True,
            "storage_capacity": str(G),
        },
        id="other-resource-name-other-type-scheduled",
    ),
    pytest.param(
        {"profile": "bare"},
        "erin",
        {"gpu_scheduling": SCHEDULING},
        {
            "cpu_limit": 0.5,
            "cpu_guarantee": 0.5,
            "mem_limit": 512 * 1024**2,
            "mem_guarantee": 512 * 1024**2,
            "extra_labels": {"dsplatform/profile": "bare", "dsplatform/user": "erin"},
        },
        id="toolchain-without-image",
    ),
    pytest.param(
        {"profile": "h100-custom"},
        "frank",
        {"gpu_scheduling": SCHEDULING},
        {
            "cpu_limit": 4.0,
            "cpu_guarantee": 4.0,
            "mem_limit": 32 * G,
            "mem_guarantee": 32 * G,
            # dicts are merged, the override winning key by key
            "extra_labels": {
                "dsplatform/profile": "h100-custom",
                "dsplatform/user": "overridden",
                "team": "vision",
            },
            "image": "registry.example.org/custom:1",
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
            "extra_resource_guarantees": {"nvidia.com/gpu": "1"},
            "node_selector": {
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                "topology.kubernetes.io/zone": "eu-1a",
            },
            # lists are replaced
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "vision"}],
            "storage_capacity": "999Gi",
            "extra_pod_config": {"priorityClassName": "gpu-high"},
        },
        id="kubespawner-override-last",
    ),
]


@pytest.mark.parametrize("options, user, kwargs, expected", SETTINGS_TABLE)
def test_pod_settings(options, user, kwargs, expected):
    grant, request = grant_for(options, user)
    settings = pod_settings(grant, request, **kwargs)
    # every sandbox container is hardened (not root, no escalation, no capabilities, seccomp)
    assert settings.pop("container_security_context") == SANDBOX_SECURITY
    assert settings == expected
    # extended resources (GPUs) must be requested exactly as limited
    assert settings.get("extra_resource_limits") == settings.get("extra_resource_guarantees")
    for value in settings["extra_labels"].values():
        assert LABEL_VALUE_RE.match(value) and len(value) <= 63


def test_pod_settings_does_not_share_admin_dicts():
    grant, request = grant_for({"profile": "gpu-a100", "gpus": 1})
    settings = pod_settings(grant, request, gpu_scheduling=SCHEDULING)
    settings["node_selector"]["x"] = "y"
    settings["tolerations"].append({"key": "x"})
    assert SCHEDULING["nvidia-a100"]["node_selector"] == {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"
    }
    assert len(SCHEDULING["nvidia-a100"]["tolerations"]) == 1


@pytest.mark.parametrize("options, user, kwargs, expected", SETTINGS_TABLE)
def test_pod_settings_are_kubespawner_traits(options, user, kwargs, expected):
    traits = KubeSpawner.class_traits()
    grant, request = grant_for(options, user)
    for key in pod_settings(grant, request, **kwargs):
        assert key in traits, key
        assert traits[key].metadata.get("config"), key


@pytest.mark.parametrize("options, user, kwargs, expected", SETTINGS_TABLE)
def test_pod_from_settings_is_valid(options, user, kwargs, expected):
    grant, request = grant_for(options, user)
    settings = pod_settings(grant, request, **kwargs)
    pod = pod_from_settings(settings)
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S

    container = pod["spec"]["containers"][0]
    resources = container["resources"]
    assert resources["limits"]["cpu"] == grant.cpu == resources["requests"]["cpu"]
    assert resources["limits"]["memory"] == grant.memory == resources["requests"]["memory"]
    gpu_keys = [k for k in resources["limits"] if k.endswith("/gpu")]
    if grant.gpus:
        (gpu_key,) = gpu_keys
        assert resources["limits"][gpu_key] == resources["requests"][gpu_key] == str(grant.gpus)
    else:
        assert gpu_keys == []
    assert pod["metadata"]["labels"] == settings["extra_labels"]
    assert pod["spec"].get("nodeSelector") == (settings.get("node_selector") or None)
    if "storage_capacity" in settings:
        pvc = serialize(
            make_pvc(
                name="claim-alice",
                storage_class=None,
                access_modes=["ReadWriteOnce"],
                selector=None,
                storage=settings["storage_capacity"],
                labels=settings["extra_labels"],
            )
        )
        assert kubernetes_validate.validate(pvc, K8S, strict=True) == K8S
        assert pvc["spec"]["resources"]["requests"]["storage"] == settings["storage_capacity"]


def test_schema_does_not_catch_gpu_request_differing_from_limit():
    """Kubernetes rejects extended resources with request != limit at admission, but the
    OpenAPI schema cannot say so: kubernetes-validate accepts such a pod. pod_settings is
    what guarantees equality (asserted for every case in test_pod_settings)."""
    grant, request = grant_for({"profile": "gpu-a100", "gpus": 2})
    settings = pod_settings(grant, request)
    settings["extra_resource_guarantees"] = {"nvidia.com/gpu": "1"}
    pod = pod_from_settings(settings)
    resources = pod["spec"]["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] != resources["limits"]["nvidia.com/gpu"]
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S  # not caught


@pytest.mark.parametrize(
    "path, value",
    [
        (("spec", "containers", 0, "resourcez"), {}),  # unknown field (strict)
        (("spec", "containers", 0, "resources", "limits"), ["cpu", 1]),  # wrong type
        (("spec", "containers", 0, "ports", 0, "containerPort"), "http"),
        (("spec", "nodeSelector"), {"gpu": 1}),  # values must be strings
        (("metadata", "labels"), {"dsplatform/gpus": 2}),
    ],
)
def test_validator_is_not_vacuous(path, value):
    grant, request = grant_for({"profile": "gpu-a100", "gpus": 1})
    pod = pod_from_settings(pod_settings(grant, request, gpu_scheduling=SCHEDULING))
    target: Any = pod
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S, strict=True)


# --- the real spawner: ProfileKubeSpawner.apply_grant + KubeSpawner.get_pod_manifest ---------


def spawner_manifests(
    options: dict[str, Any], config: Config
) -> tuple[ProfileKubeSpawner, dict[str, Any], dict[str, Any]]:
    grant, request = grant_for(options)

    async def run() -> tuple[ProfileKubeSpawner, Any, Any]:
        spawner = ProfileKubeSpawner(_mock=True, config=config)
        spawner.apply_grant(grant, request)
        # what admit() records before start(): the sandbox environment comes from it
        spawner._grant, spawner._request = grant, request
        pod = await spawner.get_pod_manifest()
        pvc = spawner.get_pvc_manifest()
        async with ApiClient() as api:
            return spawner, api.sanitize_for_serialization(pod), api.sanitize_for_serialization(pvc)

    spawner, pod, pvc = asyncio.run(run())
    return spawner, json.loads(json.dumps(pod)), json.loads(json.dumps(pvc))


@pytest.mark.usefixtures("kubeconfig")
def test_profile_kube_spawner_manifest_is_valid():
    c = Config()
    c.ProfileKubeSpawner.gpu_scheduling = SCHEDULING
    spawner, pod, pvc = spawner_manifests({"profile": "gpu-a100", "gpus": 2, "disk": "50G"}, c)
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S
    assert kubernetes_validate.validate(pvc, K8S, strict=True) == K8S

    (container,) = pod["spec"]["containers"]
    assert container["image"] == "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20"
    assert container["resources"] == {
        "limits": {"cpu": 8.0, "memory": 64 * G, "nvidia.com/gpu": "2"},
        "requests": {"cpu": 8.0, "memory": 64 * G, "nvidia.com/gpu": "2"},
    }
    labels = pod["metadata"]["labels"]
    assert labels["dsplatform/profile"] == "gpu-a100"
    assert labels["dsplatform/user"] == "alice"
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["spec"]["tolerations"] == SCHEDULING["nvidia-a100"]["tolerations"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DSPLATFORM_PROFILE"] == "gpu-a100"
    assert json.loads(env["DSPLATFORM_RESOURCES"]) == {
        "cpu": 8.0,
        "memory": "64G",
        "gpus": 2,
        "gpu_type": "nvidia-a100",
        "disk": "50G",
    }
    assert pvc["spec"]["resources"]["requests"]["storage"] == str(50 * G)
    assert spawner.storage_pvc_ensure is True


@pytest.mark.usefixtures("kubeconfig")
def test_profile_kube_spawner_override_and_custom_gpu_resource():
    c = Config()
    c.ProfileKubeSpawner.gpu_scheduling = SCHEDULING
    c.ProfileKubeSpawner.gpu_resource_name = "nvidia.com/mig-1g.10gb"
    _, pod, _ = spawner_manifests({"profile": "h100-custom"}, c)
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example.org/custom:1"
    assert container["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"
    assert container["resources"]["requests"]["nvidia.com/mig-1g.10gb"] == "1"
    assert pod["metadata"]["labels"]["team"] == "vision"
    assert pod["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
        "topology.kubernetes.io/zone": "eu-1a",
    }
    assert pod["spec"]["priorityClassName"] == "gpu-high"


@pytest.mark.usefixtures("kubeconfig")
def test_profile_kube_spawner_cpu_profile_has_no_gpu():
    c = Config()
    c.ProfileKubeSpawner.gpu_scheduling = SCHEDULING
    _, pod, _ = spawner_manifests({"profile": "cpu-small", "cpu": 0.5, "memory": "1G"}, c)
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S
    (container,) = pod["spec"]["containers"]
    assert container["resources"] == {
        "limits": {"cpu": 0.5, "memory": G},
        "requests": {"cpu": 0.5, "memory": G},
    }
    assert "nodeSelector" not in pod["spec"]
    assert "tolerations" not in pod["spec"]


@pytest.mark.usefixtures("kubeconfig")
def test_profile_datasets_become_a_preload_init_container():
    """Kubernetes runs the same preload entry point as local mode, before the notebook."""
    from hub_ext.admission.profiles import parse_profiles

    profiles = parse_profiles(
        [{"slug": "data", "toolchain": "scipy", "cpu": 1, "memory": "1G",
          "datasets": ["iris@v1", "churn@v2"]}],
        TOOLCHAINS,
    )  # fmt: skip
    request = resolve_request({}, profiles, ["*"])
    grant = Ledger().reserve(
        request, user="alice", server="", groups=[], tables=QuotaTables(), devices={}
    )

    async def run() -> dict[str, Any]:
        spawner = ProfileKubeSpawner(_mock=True, config=Config())
        spawner.api_token = "server-token"
        spawner.apply_grant(grant, request)
        spawner._grant, spawner._request = grant, request
        await spawner.before_launch()
        pod = await spawner.get_pod_manifest()
        async with ApiClient() as api:
            return json.loads(json.dumps(api.sanitize_for_serialization(pod)))

    pod = asyncio.run(run())
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S
    (init,) = pod["spec"]["initContainers"]
    (main,) = pod["spec"]["containers"]
    assert init["name"] == "dsdata-preload"
    assert init["image"] == main["image"]
    assert init["command"] == ["python", "-m", "server_ext.preload", "iris@v1", "churn@v2"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["JUPYTERHUB_API_TOKEN"] == "server-token"
    assert env["DSPLATFORM_PROFILE"] == "data"
    assert "DSDATA_CATALOG_URL" in env
    assert init.get("volumeMounts", []) == main.get("volumeMounts", [])


@pytest.mark.usefixtures("kubeconfig")
def test_a_notebook_job_is_a_pod_that_runs_once():
    """A job's pod runs the job runner instead of the notebook server, never restarts,
    and carries the job (from the hub's record) in DSPLATFORM_JOB."""
    import datetime as dt

    from hub_ext.jobs.records import JobRecord
    from hub_ext.jobs.spec import JobSpec

    grant, request = grant_for({"profile": "cpu-small", "cpu": 0.5, "memory": "1G"})
    record = JobRecord("0123456789ab", "alice", "group:ml-research",
                       JobSpec("work/train.ipynb", {"profile": "cpu-small"}, {"lr": 0.1}),
                       "starting", dt.datetime(2026, 12, 1))  # fmt: skip

    async def run() -> dict[str, Any]:
        spawner = ProfileKubeSpawner(_mock=True, config=Config())
        spawner._job = record
        spawner.apply_grant(grant, request)
        spawner._grant, spawner._request = grant, request
        pod = await spawner.get_pod_manifest()
        async with ApiClient() as api:
            return json.loads(json.dumps(api.sanitize_for_serialization(pod)))

    pod = asyncio.run(run())
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    line = [*(container.get("command") or []), *(container.get("args") or [])]
    assert line[:3] == ["python", "-m", "server_ext.job_runner"], line
    env = {e["name"]: e.get("value") for e in container["env"]}
    job = json.loads(env["DSPLATFORM_JOB"])
    assert job["output"] == "work/jobs/0123456789ab/train.ipynb" and job["parameters"] == {
        "lr": 0.1
    }
    # in the workspace of the user's default server (the notebook is there), never an
    # emptyDir, though the profile has no disk
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claim = volumes["dsplatform-workspace"]["persistentVolumeClaim"]["claimName"]
    assert claim == f"claim-{pod['metadata']['labels']['hub.jupyter.org/username']}", pod
    assert "job" not in claim  # not the job server's own claim
