"""Profile + grant -> KubeSpawner trait values, and the admin checks behind them (pure).

:func:`pod_settings` is what ``dsplatform-kube`` sets on KubeSpawner before it builds the
pod (kubespawner's ``objects.py`` style: plain data in, plain data out, no server). The
merge order is: the admin's own KubeSpawner config (``base``), then dsplatform's settings
for the grant, then the profile's ``kubespawner_override``; dicts merge key by key, other
values replace. Whatever the override says, the pod requests exactly the granted GPUs, with
request == limit, because Kubernetes rejects extended resources whose request differs from
their limit and neither KubeSpawner nor the OpenAPI schema catches it.

:func:`check_kube_profiles` runs at hub start-up (through
:func:`hub_ext.admission.policy.load_policy`) and refuses overrides that would bypass the
GPU quota.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hub_ext.admission.options import Request
from hub_ext.admission.profiles import GPU_TYPE_RE, Profile
from hub_ext.admission.reservations import Grant
from hub_ext.errors import ConfigError

_LABEL_RE = re.compile(r"[^A-Za-z0-9._-]")

WORKSPACE_VOLUME = "dsplatform-workspace"
CACHE_VOLUME = "dsplatform-dataset-cache"
# every sandbox container (the notebook and the preload): not root, no new privileges, no
# capabilities, the runtime's default seccomp filter (as z2jh and the Pod Security
# Standards' "restricted" profile ask)
SANDBOX_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# KubeSpawner expands {pvc_name} in volumes: the claim it creates for the server
WORKSPACE_CLAIM = "{pvc_name}"

# Resource names that mean GPUs, besides the configured gpu_resource_name
# (NVIDIA incl. MIG slices, AMD, Intel device plugins, and anything called "gpu").
GPU_RESOURCE_PATTERNS = ("nvidia.com/*", "amd.com/*", "gpu.intel.com/*", "*gpu*")
# KubeSpawner traits (and pod/container fields) that carry resource requests or limits
RESOURCE_KEYS = {"extra_resource_limits", "extra_resource_guarantees", "limits", "requests"}
GPU_SCHEDULING_KEYS = {"node_selector", "tolerations"}
# the spawner traits check_kube_config reads
KUBE_CHECKED_TRAITS = (
    "gpu_resource_name",
    "gpu_scheduling",
    "dataset_cache_volume",
    "dataset_cache_dir",
)


def label_value(text: str) -> str:
    """A valid Kubernetes label value (<= 63 chars, alphanumeric at both ends)."""
    value = _LABEL_RE.sub("-", text)[:63].strip("-._")
    return value or "x"


def is_gpu_resource(name: str, gpu_resource: str = "nvidia.com/gpu") -> bool:
    """Does the resource name ``name`` request GPUs?"""
    name = name.lower()
    return name == gpu_resource.lower() or any(
        fnmatch.fnmatchcase(name, p) for p in GPU_RESOURCE_PATTERNS
    )


def is_extended_resource(name: str) -> bool:
    """Resources whose request must equal their limit: extended resources and hugepages.

    Native resources are unprefixed (``cpu``, ``memory``, ``ephemeral-storage``) or in the
    ``kubernetes.io`` domain; everything else with a domain is an extended resource.
    """
    if name.startswith("hugepages-"):
        return True
    domain, slash, _ = name.partition("/")
    return bool(slash) and not (domain == "kubernetes.io" or domain.endswith(".kubernetes.io"))


def equal_extended_resources(
    limits: Mapping[str, Any], guarantees: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Make request == limit for every extended resource (the limit wins, as in Kubernetes,
    where a missing request defaults to the limit); other resources are left alone."""
    lim, req = dict(limits), dict(guarantees)
    for name in set(lim) | set(req):
        if not is_extended_resource(name):
            continue
        value = lim[name] if name in lim else req[name]
        lim[name] = req[name] = value
    return lim, req


def _named(items: Any, key: str = "name") -> dict[str, Any]:
    """KubeSpawner's list-or-dict traits (volumes, volume_mounts) as an ordered dict."""
    if isinstance(items, Mapping):
        return dict(items)
    result: dict[str, Any] = {}
    for index, item in enumerate(items or []):
        name = item.get(key) if isinstance(item, Mapping) else None
        result[f"{index:03d}-{name or 'item'}"] = item
    return result


def _mount_paths(mounts: Mapping[str, Any]) -> set[str]:
    return {
        str(m.get("mountPath", "")).rstrip("/") or "/"
        for m in mounts.values()
        if isinstance(m, Mapping)
    }


def pod_settings(
    grant: Grant,
    request: Request,
    *,
    gpu_resource: str = "nvidia.com/gpu",
    gpu_scheduling: Mapping[str, Mapping[str, Any]] | None = None,
    workspace_path: str = "",
    cache_volume: Mapping[str, Any] | None = None,
    cache_path: str = "",
    base: Mapping[str, Any] | None = None,
    job: bool = False,
) -> dict[str, Any]:
    """KubeSpawner trait values for a grant (pure).

    Args:
        grant: what the ledger reserved (cpu, memory, gpus, gpu_type, disk).
        request: the validated request (its profile: image, override).
        gpu_resource: the device plugin's resource name.
        gpu_scheduling: node selector and tolerations per GPU type.
        workspace_path: where the workspace volume is mounted ("" = no workspace volume):
            the server's PVC when the profile has a disk, else an emptyDir, so the dataset
            preload init container and the notebook share it.
        cache_volume: a volume source (without ``name``) for the shared dataset cache,
            mounted at ``cache_path``.
        base: the admin's own KubeSpawner values for the merged traits (labels, node
            selector, tolerations, volumes, mounts, extra resources).
        job: a notebook job's pod: its workspace is always the claim (the user's, where the
            notebook is), never an emptyDir.

    Returns:
        KubeSpawner trait name -> value.
    """
    base = base or {}
    profile = request.profile
    settings: dict[str, Any] = {
        "cpu_limit": grant.cpu,
        "cpu_guarantee": grant.cpu,
        "mem_limit": grant.memory,
        "mem_guarantee": grant.memory,
        "extra_labels": {
            **dict(base.get("extra_labels") or {}),
            "dsplatform/profile": label_value(profile.slug),
            "dsplatform/user": label_value(grant.user),
        },
    }
    if profile.toolchain is not None and profile.toolchain.image:
        settings["image"] = profile.toolchain.image
    # the admin's own security context may add to (or deliberately relax) the hardening
    settings["container_security_context"] = {
        **SANDBOX_SECURITY,
        **dict(base.get("container_security_context") or {}),
    }

    volumes = _named(base.get("volumes"))
    mounts = _named(base.get("volume_mounts"))
    taken = _mount_paths(mounts)
    if workspace_path and workspace_path.rstrip("/") not in taken:  # the admin's mount wins
        source: dict[str, Any] = (
            {"persistentVolumeClaim": {"claimName": WORKSPACE_CLAIM}}
            if grant.disk is not None or job
            else {"emptyDir": {}}
        )
        volumes[WORKSPACE_VOLUME] = {"name": WORKSPACE_VOLUME, **source}
        mounts[WORKSPACE_VOLUME] = {"name": WORKSPACE_VOLUME, "mountPath": workspace_path}
    if cache_volume and cache_path and cache_path.rstrip("/") not in taken:
        volumes[CACHE_VOLUME] = {"name": CACHE_VOLUME, **cache_volume}
        # read-only: the catalog service writes the cache, sandboxes only link it
        mounts[CACHE_VOLUME] = {"name": CACHE_VOLUME, "mountPath": cache_path, "readOnly": True}
    if volumes:
        settings["volumes"] = volumes
        settings["volume_mounts"] = mounts

    limits = dict(base.get("extra_resource_limits") or {})
    guarantees = dict(base.get("extra_resource_guarantees") or {})
    if grant.gpus and grant.gpu_type:
        limits[gpu_resource] = guarantees[gpu_resource] = str(grant.gpus)
        scheduling = (gpu_scheduling or {}).get(grant.gpu_type, {})
        if scheduling.get("node_selector"):
            settings["node_selector"] = {
                **dict(base.get("node_selector") or {}),
                **scheduling["node_selector"],
            }
        if scheduling.get("tolerations"):
            settings["tolerations"] = [
                *list(base.get("tolerations") or []),
                *[dict(t) for t in scheduling["tolerations"]],
            ]
    if limits or guarantees:
        settings["extra_resource_limits"] = limits
        settings["extra_resource_guarantees"] = guarantees
    if grant.disk is not None:
        settings["storage_pvc_ensure"] = True
        settings["storage_capacity"] = str(grant.disk)

    for key, value in profile.kubespawner_override.items():
        if isinstance(value, Mapping) and isinstance(settings.get(key), Mapping):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    return _enforce_gpu_grant(settings, grant, gpu_resource)


def _enforce_gpu_grant(settings: dict[str, Any], grant: Grant, gpu_resource: str) -> dict[str, Any]:
    """The pod requests exactly the granted GPUs (request == limit), nothing else GPU-like."""
    if "extra_resource_limits" not in settings and "extra_resource_guarantees" not in settings:
        return settings
    limits, guarantees = equal_extended_resources(
        settings.get("extra_resource_limits") or {},
        settings.get("extra_resource_guarantees") or {},
    )
    for table in (limits, guarantees):
        for name in [n for n in table if is_gpu_resource(n, gpu_resource)]:
            del table[name]
        if grant.gpus and grant.gpu_type:
            table[gpu_resource] = str(grant.gpus)
    settings["extra_resource_limits"] = limits
    settings["extra_resource_guarantees"] = guarantees
    return settings


# --- start-up checks --------------------------------------------------------------------------


def gpu_resources_in(value: Any, gpu_resource: str, path: str = "") -> Iterator[str]:
    """Paths inside ``value`` where a GPU resource is requested or limited."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            here = f"{path}[{key!r}]" if path else str(key)
            if key in RESOURCE_KEYS and isinstance(item, Mapping):
                for name in item:
                    if isinstance(name, str) and is_gpu_resource(name, gpu_resource):
                        yield f"{here}[{name!r}]"
            else:
                yield from gpu_resources_in(item, gpu_resource, here)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from gpu_resources_in(item, gpu_resource, f"{path}[{index}]")


def check_kube_profiles(
    profiles: Sequence[Profile], gpu_resource: str, spawner_traits: Sequence[str]
) -> None:
    """Kubernetes mode: every ``kubespawner_override`` names real KubeSpawner traits and
    requests no GPUs (GPUs come only from the profile's ``gpu`` key, through the quota).

    Raises:
        ConfigError: naming the profile and the key.
    """
    traits = set(spawner_traits)
    for index, profile in enumerate(profiles):
        where = f"c.ProfileSpawner.profiles[{index}] ({profile.slug!r}): key 'kubespawner_override'"
        for key in profile.kubespawner_override:
            if key not in traits:
                raise ConfigError(f"{where}: {key!r} is not a configurable KubeSpawner trait")
        for found in gpu_resources_in(dict(profile.kubespawner_override), gpu_resource):
            raise ConfigError(
                f"{where}: {found} requests GPUs outside the quota; "
                "give the profile a 'gpu' range (and 'gpu_type') instead"
            )


def parse_gpu_scheduling(raw: Any) -> dict[str, dict[str, Any]]:
    """Validate ``c.ProfileKubeSpawner.gpu_scheduling`` (GPU type -> node_selector,
    tolerations).

    Raises:
        ConfigError: naming the GPU type and the key.
    """
    where = "c.ProfileKubeSpawner.gpu_scheduling"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a dict of GPU type -> scheduling")
    result: dict[str, dict[str, Any]] = {}
    for gpu_type, spec in raw.items():
        here = f"{where}[{gpu_type!r}]"
        if not isinstance(gpu_type, str) or not GPU_TYPE_RE.match(gpu_type):
            raise ConfigError(f"{where}: {gpu_type!r} is not a GPU type name like 'nvidia-a100'")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{here}: must be a dict with keys node_selector, tolerations")
        unknown = sorted(set(spec) - GPU_SCHEDULING_KEYS)
        if unknown:
            raise ConfigError(
                f"{here}: unknown key {unknown[0]!r} (allowed: node_selector, tolerations)"
            )
        selector = spec.get("node_selector", {})
        if not isinstance(selector, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in selector.items()
        ):
            raise ConfigError(f"{here}: key 'node_selector' must map label names to strings")
        tolerations = spec.get("tolerations", [])
        if isinstance(tolerations, str | bytes) or not isinstance(tolerations, Sequence):
            raise ConfigError(f"{here}: key 'tolerations' must be a list of tolerations")
        for t in tolerations:
            if not isinstance(t, Mapping) or not isinstance(t.get("key", ""), str):
                raise ConfigError(f"{here}: key 'tolerations': {t!r} is not a toleration dict")
        result[gpu_type] = {"node_selector": dict(selector), "tolerations": list(tolerations)}
    return result


# --- init container ---------------------------------------------------------------------------

PRELOAD_ENV_PREFIXES = ("DSDATA_", "DSPLATFORM_", "JUPYTERHUB_API_", "JUPYTERHUB_USER")


def preload_init_container(
    *,
    image: str,
    datasets: Sequence[str],
    env: Mapping[str, str],
    volume_mounts: Sequence[Any],
    working_dir: str | None,
    security_context: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The init container that pulls a profile's datasets before the notebook starts (pure).

    It runs the same entry point as local mode (``python -m server_ext.preload``) in the
    toolchain image, with the sandbox's data environment and volumes. On failure the
    kubelet puts the end of its output into the container status
    (``FallbackToLogsOnError``), and the spawn fails with it.
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
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # KubeSpawner secures only the notebook container: the preload gets the same
        "securityContext": dict(security_context or SANDBOX_SECURITY),
    }
    if working_dir:
        container["workingDir"] = working_dir
    return container


def check_kube_config(
    profiles: Sequence[Profile], values: Mapping[str, Any], spawner_traits: Sequence[str]
) -> None:
    """All Kubernetes-mode checks at hub start-up: profile overrides, ``gpu_scheduling``,
    the dataset cache volume. ``values`` holds the spawner's configured trait values.

    Raises:
        ConfigError: naming the trait (and profile) and the key.
    """
    gpu_resource = str(values.get("gpu_resource_name") or "nvidia.com/gpu")
    check_kube_profiles(profiles, gpu_resource, spawner_traits)
    parse_gpu_scheduling(values.get("gpu_scheduling", {}))
    volume = values.get("dataset_cache_volume") or {}
    where = "c.ProfileKubeSpawner.dataset_cache_volume"
    if not isinstance(volume, Mapping):
        raise ConfigError(f"{where} must be a volume source dict")
    if volume:
        if "name" in volume or len(volume) != 1:
            raise ConfigError(
                f"{where}: give exactly one volume source without 'name', e.g. "
                "{'persistentVolumeClaim': {'claimName': 'dsdata-cache'}}"
            )
        if not values.get("dataset_cache_dir"):
            raise ConfigError(
                f"{where} needs c.ProfileSpawner.dataset_cache_dir: the path where "
                "sandboxes see the cache (e.g. '/srv/dsdata-cache')"
            )
