"""Per-profile idle culling: jupyterhub-idle-culler with a profile-aware arbiter.

Run by the hub as a managed service (``python -m hub_ext.services.culler``, added by
:func:`wire`) with a least-privilege role. Each server's profile comes from its ``user_options``
(the spawner records the resolved profile there); its ``idle_timeout`` decides, GPU
profiles without one use the shorter ``gpu_timeout``. ``0`` never culls.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jupyterhub_idle_culler import IdleCuller
from traitlets import Dict, Int, default
from traitlets.config import Config, Configurable

if TYPE_CHECKING:
    from hub_ext.admission.policy import Policy

SERVICE = "dsplatform-idle-culler"
SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


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
    """The idle timeout (seconds) that applies to a server model from the hub API; 0 (never)
    for notebook jobs (their spawner runs only a job's runner, never a notebook server, and
    starts only for a submitted job: the option cannot make a sandbox unculled)."""
    options = server.get("user_options") or {}
    if isinstance(options, Mapping) and options.get("job"):
        return 0
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


def idle_timeouts(policy: Policy, culling: PlatformIdleCulling) -> dict[str, int]:
    """Every profile's effective idle timeout: its own, else the CPU or GPU default."""
    return {
        p.slug: p.idle_timeout
        if p.idle_timeout is not None
        else (culling.gpu_timeout if p.gpu.max > 0 else culling.timeout)
        for p in policy.profiles
    }


def wire(c: Config, policy: Policy) -> None:
    """Add the culler service and its role when any profile is culled."""
    culling = PlatformIdleCulling(config=c)
    timeouts = idle_timeouts(policy, culling)
    if not any(t > 0 for t in timeouts.values()):
        return
    services = [s for s in c.JupyterHub.get("services", []) if s.get("name") != SERVICE]
    every = cull_interval(timeouts, culling.timeout, culling.cull_every)
    services.append(
        {
            "name": SERVICE,
            "command": [
                sys.executable,
                "-m",
                "hub_ext.services.culler",
                f"--cull-every={every}",
                f"--timeout={culling.timeout}",
            ],
            "environment": {
                "DSPLATFORM_IDLE_TIMEOUTS": json.dumps(timeouts),
                "DSPLATFORM_IDLE_FALLBACK": str(culling.timeout),
            },
        }
    )
    c.JupyterHub.services = services
    roles = [r for r in c.JupyterHub.get("load_roles", []) if r.get("name") != SERVICE]
    roles.append({"name": SERVICE, "scopes": SCOPES, "services": [SERVICE]})
    c.JupyterHub.load_roles = roles


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):  # the hub stops services with SIGINT first
        ProfileIdleCuller.launch_instance()


if __name__ == "__main__":
    main()
