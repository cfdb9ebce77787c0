"""Invalid admin configuration, and how the hub refuses to start with it (one place).

Every check of ``jupyterhub_config.py`` (profiles, quotas, devices, services, chart values,
OAuth variables) raises :class:`ConfigError` with a message naming the trait, the profile
and the key; :func:`stop_invalid` prints it and stops the hub before it opens a port.
"""

from __future__ import annotations

import sys
from typing import NoReturn


class ConfigError(ValueError):
    """Invalid admin configuration; the message names the trait, the profile and the key."""


def stop_invalid(error: ConfigError) -> NoReturn:
    """Stop the hub at start-up with the message (it names the trait, key or variable)."""
    print(f"dsplatform: invalid configuration: {error}", file=sys.stderr, flush=True)
    raise SystemExit(1)
