"""The emulated cluster the Kubernetes e2e tests and bench_kube_spawn run against: a CPU node
and a tainted A100 node, and the hub settings that send GPU sandboxes there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .kube_emulator.process import EmulatorProcess

GPU_PRODUCT = "NVIDIA-A100-SXM4-80GB"
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def cpu_and_gpu_nodes(gpus: int) -> list[dict[str, Any]]:
    """A CPU node, and a GPU node with ``gpus`` GPUs that only tolerating pods may use."""
    return [
        {"name": "cpu-node", "allocatable": {"cpu": "8", "memory": "32Gi"}},
        {
            "name": "gpu-node",
            "allocatable": {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": str(gpus)},
            "labels": {"nvidia.com/gpu.product": GPU_PRODUCT},
            "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        },
    ]


# The emulator's kubelet runs containers as its own user (root here): it does not implement
# runAsUser, so jupyterhub-singleuser needs the flag a real cluster (uid 1000) never needs.
EMULATOR_RUNS_AS_ROOT = """
c.KubeSpawner.args = ["--allow-root"]
"""


# GPU sandboxes to the GPU node; the shared dataset cache as a claim the tests create
GPU_SCHEDULING_CONFIG = (
    f"""
c.ProfileKubeSpawner.gpu_scheduling = {{"nvidia-a100": {{
    "node_selector": {{"nvidia.com/gpu.product": {GPU_PRODUCT!r}}},
    "tolerations": [{TOLERATION!r}]}}}}
c.ProfileKubeSpawner.dataset_cache_volume = {{"persistentVolumeClaim": {{"claimName": "dsdata-cache"}}}}
c.ProfileSpawner.dataset_cache_dir = "/srv/dsdata-cache"
"""
    + EMULATOR_RUNS_AS_ROOT
)


def kube_hub_env(emulator: EmulatorProcess) -> dict[str, str]:
    """A hub in Kubernetes mode against ``emulator`` (with the demo registry to preload)."""
    return {"DSPLATFORM_MODE": "kubernetes", "KUBECONFIG": str(emulator.kubeconfig),
            "DSPLATFORM_DEMO_REGISTRY": "1"}  # fmt: skip


@contextmanager
def running_cluster(state: Path, namespace: str, gpus: int = 3) -> Iterator[EmulatorProcess]:
    """The emulated cluster, with what the platform's chart provides there: the namespace
    and the shared dataset cache claim."""
    emulator = EmulatorProcess(state, nodes=cpu_and_gpu_nodes(gpus), namespaces=[namespace])
    emulator.start()
    try:
        emulator.create("persistentvolumeclaims", namespace, {
            "metadata": {"name": "dsdata-cache"},
            "spec": {"accessModes": ["ReadWriteMany"],
                     "resources": {"requests": {"storage": "100Gi"}}},
        })  # fmt: skip
        yield emulator
    finally:
        emulator.stop()
