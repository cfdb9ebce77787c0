"""The admin's whole policy (toolchains, profiles, quotas, local GPU devices), validated once.

Spawners, the usage API and :func:`hub_ext.setup.configure` all read the policy through
:func:`load_policy`, so a mistake is reported the same way everywhere and the parsed result
is cached per configuration object.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets.config import Config, Configurable

from hub_ext.admission.profiles import (
    GPU_TYPE_RE,
    Profile,
    Toolchain,
    parse_profiles,
    parse_toolchains,
)
from hub_ext.admission.quota import QuotaPolicy, QuotaTables
from hub_ext.errors import ConfigError


@dataclass(frozen=True)
class Policy:
    toolchains: Mapping[str, Toolchain]
    profiles: Sequence[Profile]
    quotas: QuotaTables
    gpu_devices: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def profile(self, slug: str) -> Profile | None:
        return next((p for p in self.profiles if p.slug == slug), None)


def trait_value(config: Config, cls: type[Configurable], name: str) -> Any:
    """The value traitlets would give ``cls().name`` under ``config`` (most derived wins)."""
    value = cls.class_traits()[name].default()
    for klass in reversed(cls.mro()):
        section = klass.__name__
        if section in config and name in config[section]:
            value = config[section][name]
    return value


def parse_gpu_devices(raw: Any) -> dict[str, tuple[str, ...]]:
    where = "c.LocalProfileSpawner.gpu_devices"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a dict of GPU type -> device ids")
    devices: dict[str, tuple[str, ...]] = {}
    seen: dict[str, str] = {}
    for gpu_type, ids in raw.items():
        if not isinstance(gpu_type, str) or not GPU_TYPE_RE.match(gpu_type):
            raise ConfigError(f"{where}: {gpu_type!r} is not a GPU type name like 'nvidia-a100'")
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ConfigError(
                f"{where}[{gpu_type!r}]: must be a list of device ids like ['0', '1']"
            )
        clean = tuple(str(i) for i in ids)
        for device in clean:
            if not device or "," in device:
                raise ConfigError(f"{where}[{gpu_type!r}]: invalid device id {device!r}")
            if device in seen:
                raise ConfigError(
                    f"{where}[{gpu_type!r}]: device {device!r} is also listed under "
                    f"{seen[device]!r}"
                )
            seen[device] = gpu_type
        devices[gpu_type] = clean
    return devices


def check_local(
    profiles: Sequence[Profile],
    toolchains: Mapping[str, Toolchain],
    devices: Mapping[str, tuple[str, ...]],
) -> None:
    """Local mode: every GPU type has devices, every ``local_python`` exists."""
    for index, profile in enumerate(profiles):
        if profile.gpu.max > 0 and profile.gpu_type not in devices:
            raise ConfigError(
                f"c.ProfileSpawner.profiles[{index}] ({profile.slug!r}): key 'gpu_type': "
                f"{profile.gpu_type!r} has no devices in c.LocalProfileSpawner.gpu_devices"
            )
    for name, toolchain in toolchains.items():
        python = toolchain.local_python
        if (
            python
            and not (Path(python) / "bin" / "python").exists()
            and not (Path(python).is_file() and os.access(python, os.X_OK))
        ):
            raise ConfigError(
                f"c.ProfileSpawner.toolchains[{name!r}]: key 'local_python': {python!r} is "
                "neither a Python interpreter nor an environment with bin/python"
            )


_cache: dict[tuple[int, str], tuple[Config, Policy]] = {}


def load_policy(config: Config, spawner_class: type[Configurable]) -> Policy:
    """Validate and return the policy for ``spawner_class`` under ``config``.

    Raises:
        ConfigError: the first mistake, naming the trait, the profile and the key.
    """
    key = (id(config), spawner_class.__qualname__)
    if key in _cache and _cache[key][0] is config:
        return _cache[key][1]
    toolchains = parse_toolchains(trait_value(config, spawner_class, "toolchains"))
    profiles = parse_profiles(trait_value(config, spawner_class, "profiles"), toolchains)
    quotas = QuotaTables.from_policy(QuotaPolicy(config=config))
    devices: dict[str, tuple[str, ...]] = {}
    if "gpu_devices" in spawner_class.class_traits():  # local mode: this machine's GPUs
        devices = parse_gpu_devices(trait_value(config, spawner_class, "gpu_devices"))
        check_local(profiles, toolchains, devices)
    if "gpu_scheduling" in spawner_class.class_traits():  # Kubernetes mode
        from hub_ext.spawners.kube_pod import KUBE_CHECKED_TRAITS, check_kube_config

        values = {name: trait_value(config, spawner_class, name) for name in KUBE_CHECKED_TRAITS}
        check_kube_config(profiles, values, list(spawner_class.class_traits(config=True)))
    policy = Policy(toolchains=toolchains, profiles=profiles, quotas=quotas, gpu_devices=devices)
    _cache[key] = (config, policy)
    return policy
