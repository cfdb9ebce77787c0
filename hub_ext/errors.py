"""Invalid admin configuration, and how the hub refuses to start with it (one place).

Every check of ``jupyterhub_config.py`` (profiles, quotas, devices, services, chart values,
OAuth variables) raises :class:`ConfigError` with a message naming the trait, the profile
and the key; :func:`stop_invalid` prints it and stops the hub before it opens a port.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn


class ConfigError(ValueError):
    """Invalid admin configuration; the message names the trait, the profile and the key."""


def check_service_addresses(section: str, settings: Any) -> None:
    """A hub-managed service's ``host`` (required) and ``bind_ip`` must fit into a URL
    (ConfigError naming ``c.<section>.<trait>``)."""
    for name in ("host", "bind_ip"):
        value = getattr(settings, name)
        if any(ch in value for ch in "/:@ ") or (name == "host" and not value):
            raise ConfigError(f"c.{section}.{name}: {value!r} is not a host name or IPv4 address")


def stop_invalid(error: ConfigError) -> NoReturn:
    """Stop the hub at start-up with the message (it names the trait, key or variable)."""
    print(f"dsplatform: invalid configuration: {error}", file=sys.stderr, flush=True)
    raise SystemExit(1)
