"""Hand a service the admin's configuration: each trait declared once, every one forwarded.

The hub evaluates ``jupyterhub_config.py``; a hub-managed service is another process. The
hub side calls :func:`service_config` with the service's configuration classes (e.g.
``PlatformCatalog``, ``DatasetCatalog``): every configurable trait's *effective* value
(defaults included) goes into the service's environment as JSON, and the service rebuilds
the very same classes from it with :func:`received_config`. A trait added to one of those
classes reaches the service without another line of code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from traitlets.config import Config, Configurable

ENV = "DSPLATFORM_SERVICE_CONFIG"


def settings_of(obj: Configurable) -> dict[str, Any]:
    """Every configurable trait of ``obj`` with its effective value."""
    return {name: getattr(obj, name) for name in sorted(obj.trait_names(config=True))}


def service_config(c: Config, *classes: type[Configurable]) -> dict[str, str]:
    """The environment entry that carries ``classes`` as configured in ``c``."""
    sections = {cls.__name__: settings_of(cls(config=c)) for cls in classes}
    return {ENV: json.dumps(sections, sort_keys=True)}


def received_config(env: Mapping[str, str] | None = None) -> Config:
    """In the service: the configuration the hub handed over (empty outside a hub)."""
    raw = (os.environ if env is None else env).get(ENV, "{}")
    return Config(json.loads(raw))
