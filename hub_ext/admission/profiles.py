"""Admin-written sandbox profiles and toolchains, checked against a schema (pure).

``c.ProfileSpawner.profiles`` is a list of plain dicts; :func:`parse_profiles` turns it into
immutable :class:`Profile` objects or raises :class:`ConfigError` naming the profile and the
key, so a typo stops the hub at start-up instead of surfacing at the first spawn.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub_ext.admission.units import (
    QuantityError,
    format_bytes,
    format_cpu,
    parse_bytes,
    parse_count,
    parse_cpu,
)
from hub_ext.errors import ConfigError

SLUG_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
GPU_TYPE_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")

PROFILE_KEYS = {
    "slug", "display_name", "description", "toolchain", "cpu", "memory", "gpu", "gpu_type",
    "disk", "groups", "idle_timeout", "datasets", "env", "kubespawner_override", "default",
}  # fmt: skip
RANGE_KEYS = {"default", "min", "max"}
TOOLCHAIN_KEYS = {"image", "local_python", "description", "env"}

# Lower bounds used when an admin gives a range without "min".
FLOORS: dict[str, float] = {"cpu": 0.1, "memory": 128 * 1024**2, "gpu": 0, "disk": 1024**3}
# Used when a profile leaves a resource out entirely.
IMPLICIT: dict[str, Any] = {"cpu": 1, "memory": "1G", "gpu": 0}


@dataclass(frozen=True)
class Range:
    """A resource the user may choose within ``[min, max]``; ``default`` when not chosen."""

    default: float
    min: float
    max: float

    @property
    def fixed(self) -> bool:
        return self.min == self.max

    def contains(self, value: float) -> bool:
        return self.min <= value <= self.max


@dataclass(frozen=True)
class Toolchain:
    """A named, preinstalled tool set: a container image and/or a local Python environment."""

    name: str
    image: str | None = None
    local_python: str | None = None
    description: str = ""
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Profile:
    """One entry of ``c.ProfileSpawner.profiles``, validated and normalised."""

    slug: str
    display_name: str
    description: str
    toolchain: Toolchain | None
    cpu: Range
    memory: Range
    gpu: Range
    gpu_type: str | None
    disk: Range | None
    groups: tuple[str, ...]
    idle_timeout: int | None
    datasets: tuple[str, ...]
    env: Mapping[str, str]
    kubespawner_override: Mapping[str, Any]
    default: bool = False

    def allows(self, groups: Sequence[str]) -> bool:
        """May a member of ``groups`` start this profile?"""
        return "*" in self.groups or any(g in self.groups for g in groups)

    def describe(self) -> dict[str, Any]:
        """A JSON-able view for the spawn form and the usage API."""

        def rng(r: Range | None, fmt: Callable[[float], str]) -> dict[str, str] | None:
            if r is None:
                return None
            return {"default": fmt(r.default), "min": fmt(r.min), "max": fmt(r.max)}

        return {
            "slug": self.slug,
            "display_name": self.display_name,
            "description": self.description,
            "toolchain": self.toolchain.name if self.toolchain else None,
            "cpu": rng(self.cpu, format_cpu),
            "memory": rng(self.memory, format_bytes),
            "gpus": rng(self.gpu, lambda n: str(int(n))),
            "gpu_type": self.gpu_type,
            "disk": rng(self.disk, format_bytes),
            "idle_timeout": self.idle_timeout,
            "datasets": list(self.datasets),
        }


def parse_toolchains(raw: Mapping[str, Any]) -> dict[str, Toolchain]:
    """Validate ``c.ProfileSpawner.toolchains``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"c.ProfileSpawner.toolchains must be a dict, got {type(raw).__name__}")
    result = {}
    for name, spec in raw.items():
        where = f"c.ProfileSpawner.toolchains[{name!r}]"
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: toolchain names must be non-empty strings")
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: must be a dict with keys {sorted(TOOLCHAIN_KEYS)}")
        unknown = set(spec) - TOOLCHAIN_KEYS
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {sorted(unknown)[0]!r} (allowed: {sorted(TOOLCHAIN_KEYS)})"
            )
        for key in ("image", "local_python", "description"):
            if spec.get(key) is not None and not isinstance(spec[key], str):
                raise ConfigError(f"{where}: key {key!r} must be a string")
        env = _parse_env(spec.get("env", {}), f"{where}: key 'env'")
        result[name] = Toolchain(
            name=name,
            image=spec.get("image"),
            local_python=spec.get("local_python"),
            description=spec.get("description") or "",
            env=env,
        )
    return result


def parse_profiles(raw: Sequence[Any], toolchains: Mapping[str, Toolchain]) -> list[Profile]:
    """Validate ``c.ProfileSpawner.profiles`` and return them in the admin's order.

    Raises:
        ConfigError: unknown key, min > max, default outside range, unknown toolchain,
            duplicate slug, wrong type; the message names the profile and the key.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise ConfigError("c.ProfileSpawner.profiles must be a list of dicts")
    if not raw:
        raise ConfigError("c.ProfileSpawner.profiles is empty: define at least one profile")
    profiles: list[Profile] = []
    seen: set[str] = set()
    first_default: str | None = None
    for index, spec in enumerate(raw):
        profile = _parse_profile(index, spec, toolchains)
        where = f"c.ProfileSpawner.profiles[{index}] ({profile.slug!r})"
        if profile.slug in seen:
            raise ConfigError(f"{where}: key 'slug': duplicate slug {profile.slug!r}")
        if profile.default and first_default is not None:
            raise ConfigError(
                f"{where}: key 'default': only one profile may be the default, "
                f"{first_default!r} already is"
            )
        if profile.default:
            first_default = profile.slug
        seen.add(profile.slug)
        profiles.append(profile)
    return profiles


def _parse_profile(index: int, spec: Any, toolchains: Mapping[str, Toolchain]) -> Profile:
    label = f"c.ProfileSpawner.profiles[{index}]"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{label}: each profile must be a dict, got {type(spec).__name__}")
    slug = spec.get("slug")
    if not isinstance(slug, str) or not SLUG_RE.match(slug):
        raise ConfigError(
            f"{label}: key 'slug': required, lowercase letters, digits and '-' "
            f"(at most 63), got {slug!r}"
        )
    where = f"{label} ({slug!r})"

    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"{where}: key {key!r}: {why}")

    unknown = set(spec) - PROFILE_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise fail(key, f"unknown key (allowed: {', '.join(sorted(PROFILE_KEYS))})")

    for key in ("display_name", "description"):
        if key in spec and not isinstance(spec[key], str):
            raise fail(key, "must be a string")

    toolchain = None
    if spec.get("toolchain") is not None:
        name = spec["toolchain"]
        if name not in toolchains:
            known = ", ".join(sorted(toolchains)) or "none defined"
            raise fail(
                "toolchain", f"unknown toolchain {name!r} (c.ProfileSpawner.toolchains: {known})"
            )
        toolchain = toolchains[name]

    cpu = _parse_range(spec.get("cpu", IMPLICIT["cpu"]), "cpu", parse_cpu, fail)
    memory = _parse_range(spec.get("memory", IMPLICIT["memory"]), "memory", parse_bytes, fail)
    gpu = _parse_range(spec.get("gpu", IMPLICIT["gpu"]), "gpu", parse_count, fail)
    disk = _parse_range(spec["disk"], "disk", parse_bytes, fail) if "disk" in spec else None
    if cpu.max <= 0:
        raise fail("cpu", "must allow more than 0 CPUs")
    if memory.max <= 0:
        raise fail("memory", "must allow more than 0 bytes")

    gpu_type = spec.get("gpu_type")
    if gpu_type is not None and (not isinstance(gpu_type, str) or not GPU_TYPE_RE.match(gpu_type)):
        raise fail("gpu_type", f"must be a name like 'nvidia-a100', got {gpu_type!r}")
    if gpu.max > 0 and gpu_type is None:
        raise fail("gpu_type", "required when the profile offers GPUs (e.g. 'nvidia-a100')")

    groups = spec.get("groups", ["*"])
    if isinstance(groups, str) or not isinstance(groups, Sequence) or not groups:
        raise fail("groups", "must be a non-empty list of hub group names or ['*']")
    if not all(isinstance(g, str) and g for g in groups):
        raise fail("groups", "every entry must be a non-empty string")

    idle_timeout = spec.get("idle_timeout")
    if idle_timeout is not None and (
        isinstance(idle_timeout, bool) or not isinstance(idle_timeout, int) or idle_timeout < 0
    ):
        raise fail("idle_timeout", f"must be a whole number of seconds >= 0, got {idle_timeout!r}")

    datasets = spec.get("datasets", [])
    if isinstance(datasets, str) or not isinstance(datasets, Sequence):
        raise fail("datasets", "must be a list like ['iris@v1']")
    if not all(isinstance(d, str) and d for d in datasets):
        raise fail("datasets", "every entry must be a dataset reference like 'iris@v1'")

    override = spec.get("kubespawner_override", {})
    if not isinstance(override, Mapping):
        raise fail("kubespawner_override", "must be a dict of KubeSpawner trait values")
    default = spec.get("default", False)
    if not isinstance(default, bool):
        raise fail("default", "must be True or False")

    return Profile(
        slug=slug,
        display_name=spec.get("display_name") or slug,
        description=spec.get("description") or "",
        toolchain=toolchain,
        cpu=cpu,
        memory=memory,
        gpu=gpu,
        gpu_type=gpu_type,
        disk=disk,
        groups=tuple(groups),
        idle_timeout=idle_timeout,
        datasets=tuple(datasets),
        env=_parse_env(spec.get("env", {}), f"{where}: key 'env'"),
        kubespawner_override=dict(override),
        default=default,
    )


def _parse_range(
    value: Any,
    key: str,
    parse: Callable[[object], float],
    fail: Callable[[str, str], ConfigError],
) -> Range:
    """A bare value is fixed; a dict has ``default`` and optional ``min``/``max``."""
    try:
        if not isinstance(value, Mapping):
            fixed = parse(value)
            return Range(fixed, fixed, fixed)
        unknown = set(value) - RANGE_KEYS
        if unknown:
            raise fail(
                key, f"unknown range key {sorted(unknown)[0]!r} (allowed: default, min, max)"
            )
        if "default" not in value:
            raise fail(key, "a range needs a 'default'")
        default = parse(value["default"])
        low = parse(value["min"]) if "min" in value else min(FLOORS[key], default)
        high = parse(value["max"]) if "max" in value else default
    except QuantityError as e:
        raise fail(key, str(e)) from None
    if low > high:
        raise fail(key, f"min {value.get('min')!r} > max {value.get('max', value['default'])!r}")
    if not low <= default <= high:
        raise fail(
            key,
            f"default {value['default']!r} outside range "
            f"[{value.get('min', low)!r}, {value.get('max', high)!r}]",
        )
    return Range(default, low, high)


def _parse_env(env: Any, where: str) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise ConfigError(f"{where}: must be a dict of strings")
    for k, v in env.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ConfigError(f"{where}: {k!r} must map a string to a string")
    return dict(env)
