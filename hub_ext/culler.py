"""Per-profile idle culling: jupyterhub-idle-culler with a profile-aware arbiter.

Run by the hub as a managed service (``python -m hub_ext.culler``, see
:func:`hub_ext.setup.configure`). Each server's profile comes from its ``user_options``
(the spawner records the resolved profile there); its ``idle_timeout`` decides, GPU
profiles without one use the shorter ``gpu_timeout``. ``0`` never culls.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from jupyterhub_idle_culler import IdleCuller
from traitlets import Dict, Int, default
from traitlets.config import Configurable


class PlatformIdleCulling(Configurable):
    """Idle timeouts for profiles that do not set their own ``idle_timeout``."""

    timeout = Int(
        3600,
        help="""Seconds of inactivity after which a CPU sandbox without its own
        idle_timeout is stopped (0 = never).

            c.PlatformIdleCulling.timeout = 3600
        """,
    ).tag(config=True)

    gpu_timeout = Int(
        1800,
        help="""Seconds of inactivity after which a GPU sandbox without its own
        idle_timeout is stopped; shorter, because idle GPUs are the costliest (0 = never).

            c.PlatformIdleCulling.gpu_timeout = 1800
        """,
    ).tag(config=True)

    cull_every = Int(
        0,
        help="""Seconds between culler passes; 0 = half the shortest timeout, between 5
        and 300 seconds.""",
    ).tag(config=True)


def timeout_for(server: Mapping[str, Any], timeouts: Mapping[str, int], fallback: int) -> int:
    """The idle timeout (seconds) that applies to a server model from the hub API."""
    options = server.get("user_options") or {}
    slug = options.get("profile") if isinstance(options, Mapping) else None
    return timeouts.get(slug, fallback) if isinstance(slug, str) else fallback


def make_arbiter(timeouts: Mapping[str, int], fallback: int) -> Callable[..., bool]:
    def arbiter(
        *, inactive: timedelta, inactive_limit: int, server: Mapping[str, Any], **_: Any
    ) -> bool:
        limit = timeout_for(server, timeouts, fallback)
        return limit > 0 and inactive.total_seconds() >= limit

    return arbiter


def cull_interval(timeouts: Mapping[str, int], fallback: int, configured: int = 0) -> int:
    if configured > 0:
        return configured
    positive = [t for t in (*timeouts.values(), fallback) if t > 0]
    shortest = min(positive) if positive else 600
    return max(5, min(300, shortest // 2))


class ProfileIdleCuller(IdleCuller):
    """IdleCuller whose arbiter reads per-profile timeouts from ``DSPLATFORM_IDLE_TIMEOUTS``."""

    profile_timeouts = Dict(
        help="profile slug -> idle timeout in seconds (from DSPLATFORM_IDLE_TIMEOUTS)"
    ).tag(config=True)

    fallback_timeout = Int(
        help="Timeout for servers whose profile is unknown (from DSPLATFORM_IDLE_FALLBACK)."
    ).tag(config=True)

    @default("fallback_timeout")
    def _fallback_default(self) -> int:
        return int(os.environ.get("DSPLATFORM_IDLE_FALLBACK", "3600"))

    @default("profile_timeouts")
    def _profile_timeouts_default(self) -> dict[str, int]:
        return json.loads(os.environ.get("DSPLATFORM_IDLE_TIMEOUTS", "{}"))

    @default("cull_arbiter_hook")
    def _arbiter_default(self) -> Callable[..., bool]:
        return make_arbiter(self.profile_timeouts, self.fallback_timeout)


def main() -> None:
    ProfileIdleCuller.launch_instance()


if __name__ == "__main__":
    main()
