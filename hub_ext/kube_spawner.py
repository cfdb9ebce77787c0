"""``dsplatform-kube``: KubeSpawner governed by the same profiles and quotas.

:func:`pod_settings` maps a grant to KubeSpawner trait values (pure, unit-tested against
``get_pod_manifest`` and the official Kubernetes schemas); the spawner sets them before
KubeSpawner builds the pod. The profile's ``kubespawner_override`` is merged last.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kubespawner import KubeSpawner
from traitlets import Dict, Unicode

from .options import Request
from .reservations import Grant
from .spawner_base import ProfileSpawner

_LABEL_RE = re.compile(r"[^A-Za-z0-9._-]")


def label_value(text: str) -> str:
    """A valid Kubernetes label value (<= 63 chars, alphanumeric at both ends)."""
    value = _LABEL_RE.sub("-", text)[:63].strip("-._")
    return value or "x"


def pod_settings(
    grant: Grant,
    request: Request,
    *,
    gpu_resource: str = "nvidia.com/gpu",
    gpu_scheduling: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """KubeSpawner trait values for a grant (pure).

    Extended resources must have request == limit, so GPUs are set as both guarantee
    and limit.
    """
    profile = request.profile
    settings: dict[str, Any] = {
        "cpu_limit": grant.cpu,
        "cpu_guarantee": grant.cpu,
        "mem_limit": grant.memory,
        "mem_guarantee": grant.memory,
        "extra_labels": {
            "dsplatform/profile": label_value(profile.slug),
            "dsplatform/user": label_value(grant.user),
        },
    }
    if profile.toolchain is not None and profile.toolchain.image:
        settings["image"] = profile.toolchain.image
    if grant.gpus and grant.gpu_type:
        settings["extra_resource_limits"] = {gpu_resource: str(grant.gpus)}
        settings["extra_resource_guarantees"] = {gpu_resource: str(grant.gpus)}
        scheduling = (gpu_scheduling or {}).get(grant.gpu_type, {})
        if "node_selector" in scheduling:
            settings["node_selector"] = dict(scheduling["node_selector"])
        if "tolerations" in scheduling:
            settings["tolerations"] = list(scheduling["tolerations"])
    if grant.disk is not None:
        settings["storage_pvc_ensure"] = True
        settings["storage_capacity"] = str(grant.disk)
    for key, value in profile.kubespawner_override.items():
        if isinstance(value, Mapping) and isinstance(settings.get(key), Mapping):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    return settings


class ProfileKubeSpawner(ProfileSpawner, KubeSpawner):
    """KubeSpawner with dsplatform profiles, quotas and sandbox environment."""

    gpu_resource_name = Unicode(
        "nvidia.com/gpu",
        help="Extended resource name that requests GPUs (the device plugin's).",
    ).tag(config=True)

    gpu_scheduling = Dict(
        {},
        help="""Node selector and tolerations per GPU type.

            c.ProfileKubeSpawner.gpu_scheduling = {
                "nvidia-a100": {
                    "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                     "effect": "NoSchedule"}],
                },
            }
        """,
    ).tag(config=True)

    def apply_grant(self, grant: Grant, request: Request) -> None:
        super().apply_grant(grant, request)
        for key, value in pod_settings(
            grant,
            request,
            gpu_resource=self.gpu_resource_name,
            gpu_scheduling=self.gpu_scheduling,
        ).items():
            setattr(self, key, value)

    # KubeSpawner's own profile_list machinery is replaced by dsplatform's profiles.
    async def load_user_options(self) -> None:
        return None
