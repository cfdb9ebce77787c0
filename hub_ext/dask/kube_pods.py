"""A Dask cluster's Kubernetes objects: the scheduler's and each worker's pod, and the
cluster's Secret (pure: plain data in, manifests out; validated against the official schemas
in the tests).

Each pod is sized by its grant from the hub's ledger (requests == limits for CPU and memory,
the granted GPUs as the device plugin's resource, the GPU type's node selector and
tolerations), runs the profile's image as the sandbox's non-root user with the sandboxes'
hardening, mounts no service-account token, and reads the cluster's TLS credentials and
gateway token from the cluster's Secret (never from its own spec).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub_ext.spawners.kube_pod import SANDBOX_SECURITY, label_value

CREDENTIALS_PATH = "/etc/dask-credentials"
CERT_KEY, KEY_KEY, TOKEN_KEY = "dask.crt", "dask.pem", "api-token"
TOKEN_ENV = "DASK_GATEWAY_API_TOKEN"
COMPONENT = "app.kubernetes.io/component"
CLUSTER_LABEL = "dsplatform/dask-cluster"
SCHEDULER, WORKER, SECRET = "dask-scheduler", "dask-worker", "dask-cluster"


@dataclass(frozen=True)
class KubeIdentity:
    """How a user's Dask pods run: what their sandbox spawner (dsplatform-kube) says
    (``worker_identity()``), received by the gateway as plain data."""

    namespace: str
    images: Mapping[str, str]  # profile slug -> image
    image: str  # the spawner's image, for profiles without one
    uid: int = 1000
    gid: int | None = None
    fs_gid: int | None = 100
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: Sequence[str] = ()
    gpu_resource: str = "nvidia.com/gpu"
    gpu_scheduling: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    labels: Mapping[str, str] = field(default_factory=dict)  # the sandboxes' common labels

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KubeIdentity:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "images": dict(self.images), "image": self.image,
            "uid": self.uid, "gid": self.gid, "fs_gid": self.fs_gid,
            "image_pull_policy": self.image_pull_policy,
            "image_pull_secrets": list(self.image_pull_secrets),
            "gpu_resource": self.gpu_resource, "gpu_scheduling": dict(self.gpu_scheduling),
            "node_selector": dict(self.node_selector), "tolerations": list(self.tolerations),
            "labels": dict(self.labels),
        }  # fmt: skip


def secret_name(cluster: str) -> str:
    return f"dask-{cluster}"


def pod_name(cluster: str, worker: str | None = None) -> str:
    return f"{SCHEDULER}-{cluster}" if worker is None else f"{WORKER}-{cluster}-{worker}"


def labels(identity: KubeIdentity, component: str, user: str, cluster: str,
           profile: str = "") -> dict[str, str]:  # fmt: skip
    result = {
        "app.kubernetes.io/name": "dsplatform",
        **dict(identity.labels),  # the sandboxes' (the chart's name and instance)
        "app.kubernetes.io/managed-by": "dask-gateway",  # not KubeSpawner's pods
        COMPONENT: component,
        "dsplatform/user": label_value(user),
        CLUSTER_LABEL: label_value(cluster),
    }
    if profile:
        result["dsplatform/profile"] = label_value(profile)
    return result


def cluster_secret(identity: KubeIdentity, cluster: str, user: str, *, cert: bytes,
                   key: bytes, token: str) -> dict[str, Any]:  # fmt: skip
    """The cluster's TLS certificate and key (its scheduler's and workers' identity) and the
    token its scheduler reports to the gateway with."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(cluster),
            "namespace": identity.namespace,
            "labels": labels(identity, SECRET, user, cluster),
        },
        "type": "Opaque",
        "stringData": {CERT_KEY: cert.decode(), KEY_KEY: key.decode(), TOKEN_KEY: token},
    }


def dask_pod(
    identity: KubeIdentity,
    *,
    cluster: str,
    user: str,
    grant: Mapping[str, Any],
    command: Sequence[str],
    env: Mapping[str, str],
    worker: str | None = None,
) -> dict[str, Any]:
    """The scheduler's pod (``worker=None``) or a worker's, sized by its ``grant`` (the
    hub's answer: profile, cpu, memory, gpus, gpu_type, id). ``env`` must not hold the
    gateway token: it comes from the cluster's Secret."""
    if TOKEN_ENV in env:
        raise ValueError(f"{TOKEN_ENV} comes from the cluster's Secret, not the pod spec")
    component = SCHEDULER if worker is None else WORKER
    profile = str(grant.get("profile") or "")
    cpu, memory, gpus = float(grant["cpu"]), int(grant["memory"]), int(grant.get("gpus") or 0)
    limits: dict[str, Any] = {"cpu": _cpu(cpu), "memory": str(memory)}
    requests = dict(limits)
    node_selector = dict(identity.node_selector)
    tolerations = list(identity.tolerations)
    if gpus:
        limits[identity.gpu_resource] = requests[identity.gpu_resource] = str(gpus)
        scheduling = identity.gpu_scheduling.get(str(grant.get("gpu_type") or ""), {})
        node_selector.update(scheduling.get("node_selector") or {})
        tolerations += list(scheduling.get("tolerations") or [])
    pod_labels = labels(identity, component, user, cluster, profile)
    pod_labels["dsplatform/grant"] = label_value(str(grant["id"]))
    container: dict[str, Any] = {
        "name": component,
        "image": identity.images.get(profile) or identity.image,
        "imagePullPolicy": identity.image_pull_policy,
        "command": list(command),
        "env": [{"name": k, "value": v} for k, v in sorted(env.items())]
        + [
            {
                "name": TOKEN_ENV,
                "valueFrom": {"secretKeyRef": {"name": secret_name(cluster), "key": TOKEN_KEY}},
            }
        ],
        "resources": {"requests": requests, "limits": limits},
        "securityContext": dict(SANDBOX_SECURITY),
        "volumeMounts": [
            {"name": "dask-credentials", "mountPath": CREDENTIALS_PATH, "readOnly": True}
        ],
    }
    security: dict[str, Any] = {"runAsUser": int(identity.uid)}
    if identity.gid is not None:
        security["runAsGroup"] = int(identity.gid)
    if identity.fs_gid is not None:
        security["fsGroup"] = int(identity.fs_gid)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",  # a worker that dies is replaced (and re-admitted)
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": security,
        "containers": [container],
        "volumes": [
            {
                "name": "dask-credentials",
                "secret": {
                    "secretName": secret_name(cluster),
                    "items": [
                        {"key": CERT_KEY, "path": CERT_KEY},
                        {"key": KEY_KEY, "path": KEY_KEY},
                    ],
                    "defaultMode": 0o440,
                },
            }
        ],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if identity.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in identity.image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(cluster, worker),
            "namespace": identity.namespace,
            "labels": pod_labels,
        },
        "spec": spec,
    }


def _cpu(cpu: float) -> str:
    """CPUs as a Kubernetes quantity (millicores when fractional)."""
    return str(int(cpu)) if cpu == int(cpu) else f"{round(cpu * 1000)}m"


def pod_alive(pod: Mapping[str, Any] | None) -> bool:
    """Is the pod still (going to be) running: pending or running, not being deleted."""
    if not pod or pod.get("metadata", {}).get("deletionTimestamp"):
        return False
    return pod.get("status", {}).get("phase", "Pending") in ("Pending", "Running")
