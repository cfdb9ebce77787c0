"""The environment spec a commit records (``.dsdata/environment.json``): the profile, the
granted resources, Python and the installed packages; never environment variables."""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any


def installed_packages() -> list[str]:
    """``name==version`` of every installed distribution, from ``*.dist-info`` names.

    Reading directory names (as ``pip freeze`` effectively reports) instead of every
    package's METADATA keeps a commit fast; the list is cached until a site directory
    changes (a package installed or removed).
    """
    key = tuple(
        (entry, os.stat(entry).st_mtime_ns) for entry in sys.path if entry and os.path.isdir(entry)
    )
    if _packages_cache.get("key") != key:
        found: set[str] = set()
        for entry, _ in key:
            for item in os.scandir(entry):
                if item.name.endswith((".dist-info", ".egg-info")):
                    stem = item.name.rsplit(".", 1)[0]
                    name, sep, version = stem.partition("-")
                    if sep and name:
                        found.add(f"{name.replace('_', '-').lower()}=={version}")
        _packages_cache.update(key=key, packages=sorted(found))
    packages: list[str] = _packages_cache["packages"]
    return packages


_packages_cache: dict[str, Any] = {}


def environment_spec() -> dict[str, Any]:
    """Toolchain, profile resources and installed packages (no environment variables)."""
    resources = os.environ.get("DSPLATFORM_RESOURCES")
    return {
        "profile": os.environ.get("DSPLATFORM_PROFILE"),
        "resources": json.loads(resources) if resources else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": installed_packages(),
    }
