"""A Dask cluster's Kubernetes objects (pure): each pod sized by its grant, GPUs as the
device plugin's resource with their type's scheduling, the sandboxes' user and hardening,
the gateway token only by reference, all valid against the official schemas."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest

from hub_ext.dask.kube_pods import (
    KubeIdentity,
    cluster_secret,
    dask_pod,
    pod_alive,
    pod_name,
)
from hub_ext.spawners.kube_pod import SANDBOX_SECURITY

K8S = "1.33"
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
IDENTITY = KubeIdentity(
    namespace="dsplatform",
    images={"gpu-a100": "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20"},
    image="quay.io/jupyter/scipy-notebook:2025-10-20",
    gid=100,
    image_pull_secrets=["registry"],
    gpu_scheduling={"nvidia-a100": {"node_selector": {"nvidia.com/gpu.product": "A100"},
                                    "tolerations": [TOLERATION]}},
    node_selector={"pool": "sandboxes"},
    labels={"app.kubernetes.io/instance": "dsp", "app.kubernetes.io/managed-by": "kubespawner"},
)  # fmt: skip
CLUSTER = "0123456789abcdef0123456789abcdef"
GPU_GRANT = {"id": "f" * 32, "profile": "gpu-a100", "cpu": 1.5, "memory": 4 * 2**30,
             "gpus": 2, "gpu_type": "nvidia-a100", "devices": []}  # fmt: skip
ENV = {"DASK_GATEWAY_CLUSTER_NAME": CLUSTER, "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}


def test_a_gpu_worker_pod_gets_its_grant_and_its_gpu_types_scheduling() -> None:
    pod = dask_pod(IDENTITY, cluster=CLUSTER, user="Alice@Example", grant=GPU_GRANT,
                   command=["python", "-m", "distributed.cli.dask_worker"], env=ENV,
                   worker="a" * 32)  # fmt: skip
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S
    assert pod["metadata"]["name"] == pod_name(CLUSTER, "a" * 32)
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "quay.io/jupyter/pytorch-notebook:cuda12-2025-10-20"
    assert container["resources"]["requests"] == container["resources"]["limits"] == {
        "cpu": "1500m", "memory": str(4 * 2**30), "nvidia.com/gpu": "2"}  # fmt: skip
    assert spec["nodeSelector"] == {"pool": "sandboxes", "nvidia.com/gpu.product": "A100"}
    assert spec["tolerations"] == [TOLERATION]
    assert spec["securityContext"] == {"runAsUser": 1000, "runAsGroup": 100, "fsGroup": 100}
    assert container["securityContext"] == SANDBOX_SECURITY
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    labels = pod["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "dask-worker"
    assert labels["dsplatform/user"] == "Alice-Example" and labels["dsplatform/grant"] == "f" * 32
    assert labels["app.kubernetes.io/instance"] == "dsp"  # the sandboxes' common labels
    assert labels["app.kubernetes.io/managed-by"] == "dask-gateway"
    env = {e["name"]: e for e in container["env"]}
    assert env["DASK_GATEWAY_API_TOKEN"] == {"name": "DASK_GATEWAY_API_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": f"dask-{CLUSTER}", "key": "api-token"}}}  # fmt: skip


def test_a_cpu_scheduler_pod_has_no_gpus_and_the_default_image() -> None:
    grant = {**GPU_GRANT, "profile": "cpu-small", "cpu": 0.5, "memory": 512 * 2**20, "gpus": 0,
             "gpu_type": None}  # fmt: skip
    pod = dask_pod(IDENTITY, cluster=CLUSTER, user="alice", grant=grant,
                   command=["python", "-m", "distributed.cli.dask_scheduler"], env=ENV)  # fmt: skip
    assert kubernetes_validate.validate(pod, K8S, strict=True) == K8S
    (container,) = pod["spec"]["containers"]
    assert container["image"] == IDENTITY.image
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": str(512 * 2**20)}
    assert pod["spec"]["nodeSelector"] == {"pool": "sandboxes"} and "tolerations" not in pod["spec"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "dask-scheduler"


def test_the_token_is_never_written_into_a_pod_spec() -> None:
    with pytest.raises(ValueError, match="DASK_GATEWAY_API_TOKEN comes from the cluster's Secret"):
        dask_pod(IDENTITY, cluster=CLUSTER, user="alice", grant=GPU_GRANT, command=["python"],
                 env={**ENV, "DASK_GATEWAY_API_TOKEN": "secret"})  # fmt: skip


def test_the_clusters_secret_holds_its_tls_credentials_and_token() -> None:
    secret = cluster_secret(IDENTITY, CLUSTER, "alice", cert=b"CERT", key=b"KEY", token="tok")
    assert kubernetes_validate.validate(secret, K8S, strict=True) == K8S
    assert secret["stringData"] == {"dask.crt": "CERT", "dask.pem": "KEY", "api-token": "tok"}
    assert secret["metadata"]["labels"]["dsplatform/dask-cluster"] == CLUSTER


def test_identity_round_trips_and_pod_liveness() -> None:
    sent = json.loads(json.dumps(IDENTITY.to_json()))  # as the gateway receives it
    assert KubeIdentity.from_json(sent).to_json() == IDENTITY.to_json()
    assert pod_alive({"status": {"phase": "Running"}, "metadata": {}})
    assert pod_alive({"status": {}, "metadata": {}})  # just created: pending
    assert not pod_alive({"status": {"phase": "Failed"}, "metadata": {}})
    assert not pod_alive({"status": {"phase": "Running"}, "metadata": {"deletionTimestamp": "x"}})
    assert not pod_alive(None)
