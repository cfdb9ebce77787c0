"""``dsplatform-kube``: KubeSpawner governed by the same profiles and quotas.

:func:`pod_settings` maps a grant to KubeSpawner trait values (pure, unit-tested against
``get_pod_manifest`` and the official Kubernetes schemas); the spawner sets them before
KubeSpawner builds the pod. The profile's ``kubespawner_override`` is merged last.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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


PRELOAD_ENV_PREFIXES = ("DSDATA_", "DSPLATFORM_", "JUPYTERHUB_API_", "JUPYTERHUB_USER")


def preload_init_container(
    *,
    image: str,
    datasets: Sequence[str],
    env: Mapping[str, str],
    volume_mounts: Sequence[Any],
    working_dir: str | None,
) -> dict[str, Any]:
    """The init container that pulls a profile's datasets before the notebook starts (pure).

    It runs the same entry point as local mode (``python -m server_ext.preload``) in the
    toolchain image, with the sandbox's data environment and volumes.
    """
    container: dict[str, Any] = {
        "name": "dsdata-preload",
        "image": image,
        "command": ["python", "-m", "server_ext.preload", *datasets],
        "env": [
            {"name": k, "value": v}
            for k, v in sorted(env.items())
            if k.startswith(PRELOAD_ENV_PREFIXES)
        ],
        "volumeMounts": list(volume_mounts),
    }
    if working_dir:
        container["workingDir"] = working_dir
    return container


def _escape_braces(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("{", "{{").replace("}", "}}")
    if isinstance(value, dict):
        return {k: _escape_braces(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_braces(v) for v in value]
    return value


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

    async def before_launch(self) -> None:
        """Add the dataset preload init container (needs the server's token in its env)."""
        request = self._request
        if request is None or not request.profile.datasets:
            return
        preload = preload_init_container(
            image=self.image,
            datasets=request.profile.datasets,
            env=self.get_env(),
            volume_mounts=self.volume_mounts,
            working_dir=self.working_dir or None,
        )
        # KubeSpawner expands {placeholders} in init containers: keep our values literal
        preload = _escape_braces(preload)
        existing: list[Any] = list(getattr(self, "init_containers", []))
        others = [
            c for c in existing if not (isinstance(c, dict) and c.get("name") == "dsdata-preload")
        ]
        self.init_containers = [*others, preload]

    # KubeSpawner's own profile_list machinery is replaced by dsplatform's profiles.
    async def load_user_options(self) -> None:
        return None
