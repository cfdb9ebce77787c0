"""Where the datasets a user may pull are listed.

Inside a hub sandbox ``DSDATA_CATALOG_URL`` points at the hub's catalog API, which lists
only the datasets the user's groups may see (authenticated with ``JUPYTERHUB_API_TOKEN``).
Outside a hub, ``DSDATA_REGISTRIES`` (comma-separated registry URLs or paths) is the
catalog. Both give the same entries: name, registry, description, labels, versions.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .errors import RegistryUnavailable, UnknownDataset
from .registry import describe_version, list_tags


class Catalog(Protocol):
    def entries(self) -> list[dict[str, Any]]: ...


def registry_entries(urls: Sequence[str], cache_dir: Path) -> list[dict[str, Any]]:
    """Datasets of ``urls`` (first registry wins a name), described at their latest tag."""
    seen: dict[str, dict[str, Any]] = {}
    for url in urls:
        for name, versions in sorted(list_tags(url).items()):
            if name in seen or not versions:
                continue
            try:
                latest = describe_version(url, name, versions[-1], cache_dir)
            except UnknownDataset:
                continue  # a model or another artifact type, not a dataset
            seen[name] = {
                "name": name,
                "registry": url,
                "description": latest.description,
                "labels": list(latest.labels),
                "versions": [v.version for v in versions],
                "stages": {s: v.version for v in versions for s in v.stages},
                "latest": versions[-1].version,
                "size": latest.size,
                "nfiles": latest.nfiles,
                "path": latest.path,
            }
    return list(seen.values())


class CachedListing:
    """A registry listing shared by concurrent requests, read again after ``refresh`` s.

    The reading runs in a worker thread; callers on an event loop await :meth:`entries`.
    """

    def __init__(self, urls: Sequence[str], cache_dir: Path, refresh: float = 30.0) -> None:
        self.urls, self.cache_dir, self.refresh = list(urls), cache_dir, refresh
        self._entries: list[dict[str, Any]] = []
        self._at: float | None = None
        self._lock: asyncio.Lock | None = None

    async def entries(self) -> list[dict[str, Any]]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._at is None or time.monotonic() - self._at > self.refresh:
                self._entries = await asyncio.get_running_loop().run_in_executor(
                    None, registry_entries, self.urls, self.cache_dir
                )
                self._at = time.monotonic()
        return self._entries


class RegistryCatalog:
    """The catalog of a list of registries (``DSDATA_REGISTRIES``)."""

    def __init__(self, urls: Sequence[str], cache_dir: Path) -> None:
        self.urls = list(urls)
        self.cache_dir = cache_dir

    def entries(self) -> list[dict[str, Any]]:
        return registry_entries(self.urls, self.cache_dir)


class HubCatalog:
    """The hub's catalog API (``DSDATA_CATALOG_URL``), already filtered by the user's groups."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url
        self.token = token

    def entries(self) -> list[dict[str, Any]]:
        request = urllib.request.Request(self.url)
        if self.token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                data = json.load(response)
        except urllib.error.HTTPError as e:
            raise RegistryUnavailable(
                f"Dataset catalog {self.url} answered {e.code}: {e.reason}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise RegistryUnavailable(f"Cannot reach the dataset catalog {self.url}: {e}") from None
        entries: list[dict[str, Any]] = data["datasets"]
        return entries


def default_catalog(cache_dir: Path) -> Catalog:
    url = os.environ.get("DSDATA_CATALOG_URL")
    if url:
        return HubCatalog(url, os.environ.get("JUPYTERHUB_API_TOKEN"))
    registries = [
        r.strip() for r in os.environ.get("DSDATA_REGISTRIES", "").split(",") if r.strip()
    ]
    return RegistryCatalog(registries, cache_dir)


def find(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for entry in entries:
        if entry["name"] == name:
            return entry
    names = ", ".join(sorted(e["name"] for e in entries)) or "none"
    raise UnknownDataset(f"No dataset {name!r} in your catalog; available: {names}")
