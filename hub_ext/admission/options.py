"""Validation of ``user_options`` against the profiles a user may start (pure).

The same function checks options from the spawn form and from
``POST /hub/api/users/{name}/servers/{server}``: missing keys take the profile's default,
unknown keys, wrong types and out-of-range values are refused with a :class:`Refusal`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hub_ext.admission.profiles import Profile, Range
from hub_ext.admission.refusals import Refusal
from hub_ext.admission.units import QuantityError, format_bytes, format_cpu, parse_bytes
from server_ext.refs import shown

OPTION_KEYS = ("profile", "cpu", "memory", "gpus", "disk")


@dataclass(frozen=True)
class Request:
    """A validated request: what the user asks for, inside the profile's ranges."""

    profile: Profile
    cpu: float
    memory: int
    gpus: int
    disk: int | None

    @property
    def gpu_type(self) -> str | None:
        return self.profile.gpu_type if self.gpus else None

    def resources(self) -> dict[str, Any]:
        """The granted resources as the sandbox sees them in ``DSPLATFORM_RESOURCES``."""
        return {
            "cpu": self.cpu,
            "memory": format_bytes(self.memory),
            "gpus": self.gpus,
            "gpu_type": self.gpu_type,
            "disk": format_bytes(self.disk) if self.disk is not None else None,
        }


def startable_profiles(profiles: Sequence[Profile], groups: Sequence[str]) -> list[Profile]:
    """The profiles a member of ``groups`` may start, in the admin's order."""
    return [p for p in profiles if p.allows(groups)]


def default_profile(profiles: Sequence[Profile], groups: Sequence[str]) -> Profile | None:
    allowed = startable_profiles(profiles, groups)
    return next((p for p in allowed if p.default), allowed[0] if allowed else None)


def resolve_request(options: Any, profiles: Sequence[Profile], groups: Sequence[str]) -> Request:
    """Turn ``user_options`` into a :class:`Request` or raise :class:`Refusal`.

    Args:
        options: the user's options, e.g. ``{"profile": "gpu-a100", "gpus": 2}``.
        profiles: all configured profiles.
        groups: the user's hub groups.

    Raises:
        Refusal: ``invalid`` (400) for malformed options, ``forbidden`` (403) for a profile
            the user's groups may not start.
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise Refusal(
            "invalid", f"user_options must be a JSON object, got {type(options).__name__}"
        )
    unknown = [k for k in options if k not in OPTION_KEYS]
    if unknown:
        raise Refusal(
            "invalid", f"Unknown option {unknown[0]!r}; allowed options: {', '.join(OPTION_KEYS)}"
        )

    slug = options.get("profile")
    if slug is None:
        profile = default_profile(profiles, groups)
        if profile is None:
            raise Refusal("forbidden", "No profile is available to your groups")
    else:
        if not isinstance(slug, str):
            raise Refusal("invalid", f"Option 'profile' must be a profile name, got {slug!r}")
        by_slug = {p.slug: p for p in profiles}
        if slug not in by_slug:
            names = ", ".join(p.slug for p in startable_profiles(profiles, groups)) or "none"
            raise Refusal("invalid", f"Unknown profile {slug!r}; profiles you may start: {names}")
        profile = by_slug[slug]
        if not profile.allows(groups):
            mine = ", ".join(sorted(groups)) or "no groups"
            raise Refusal(
                "forbidden",
                f"Profile {slug!r} is limited to groups {', '.join(profile.groups)}; "
                f"you are in {mine}",
            )

    cpu = _choose(options, "cpu", profile.cpu, profile.slug, _number, format_cpu)
    memory = _choose(options, "memory", profile.memory, profile.slug, _size, format_bytes)
    gpus = _choose(options, "gpus", profile.gpu, profile.slug, _whole, lambda n: str(int(n)))
    disk = None
    if profile.disk is not None:
        disk = int(_choose(options, "disk", profile.disk, profile.slug, _size, format_bytes))
    elif options.get("disk") is not None:
        raise Refusal("invalid", f"Profile {profile.slug!r} has no disk option")
    return Request(profile=profile, cpu=cpu, memory=int(memory), gpus=int(gpus), disk=disk)


def _choose(
    options: Mapping[str, Any],
    key: str,
    allowed: Range,
    slug: str,
    parse: Callable[[str, Any], float],
    fmt: Callable[[float], str],
) -> float:
    raw = options.get(key)
    if raw is None:
        return allowed.default
    value = parse(key, raw)
    if not allowed.contains(value):
        if allowed.fixed:
            span = f"fixed at {fmt(allowed.min)}"
        else:
            span = f"from {fmt(allowed.min)} to {fmt(allowed.max)}"
        raise Refusal("invalid", f"{key} {fmt(value)} is outside profile {slug!r}: {key} is {span}")
    return value


DECIMAL_RE = re.compile(r"^\s*\d{1,12}(\.\d{1,12})?\s*$")  # "2", "0.5": what forms send
WHOLE_RE = re.compile(r"^\s*\d{1,12}\s*$")


def _number(key: str, raw: Any) -> float:
    if isinstance(raw, str) and DECIMAL_RE.match(raw):
        raw = float(raw)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw != raw:
        raise Refusal(
            "invalid",
            f"Option {key!r} must be a number like 2 or 0.5 (a JSON number, or a string of "
            f"digits), not {shown(raw, 40)}",
        )
    try:
        value = float(raw)
    except OverflowError:  # an int beyond float range, e.g. 10**400 in JSON
        value = float("inf")
    if value in (float("inf"), float("-inf")) or value < 0:
        raise Refusal(
            "invalid", f"Option {key!r} must be a finite non-negative number, got {raw!r}"
        )
    return value


def _whole(key: str, raw: Any) -> float:
    if isinstance(raw, str) and WHOLE_RE.match(raw):
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise Refusal(
            "invalid", f"Option {key!r} must be a whole number >= 0, got {shown(raw, 40)}"
        )
    return raw


def _size(key: str, raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise Refusal("invalid", f"Option {key!r} must be a size like '4G' or '512M', got {raw!r}")
    try:
        return parse_bytes(raw)
    except QuantityError as e:
        raise Refusal("invalid", f"Option {key!r}: {e}") from None
