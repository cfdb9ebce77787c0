"""Where the datasets a user may pull are listed.

Inside a hub sandbox ``DSDATA_CATALOG_URL`` points at the hub's catalog API, which lists
only the datasets the user's groups may see (authenticated with ``JUPYTERHUB_API_TOKEN``).
Outside a hub, ``DSDATA_REGISTRIES`` (comma-separated registry URLs or paths) is the
catalog. Both give the same :class:`~server_ext.records.DatasetEntry` records, and hand out
the :class:`~server_ext.registry.Registry` that serves an entry's versions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .errors import DsdataError, NotADataset, RegistryUnavailable, UnknownDataset
from .hub_registry import HubRegistry
from .records import DatasetEntry
from .registry import DvcRegistry, Registry


class Catalog(Protocol):
    """Which datasets a user may pull, and the registry that serves each."""

    def entries(self) -> list[DatasetEntry]: ...

    def registry(self, entry: DatasetEntry) -> Registry: ...


def registry_entries(registries: Sequence[Registry]) -> list[DatasetEntry]:
    """Datasets of ``registries`` (first registry wins a name), described at their latest
    version. Artifacts of another type (models) are not datasets; a dataset that cannot be
    described is listed with its error, not dropped."""
    seen: dict[str, DatasetEntry] = {}
    for registry in registries:
        for name, versions in sorted(registry.versions().items()):
            if name in seen or not versions:
                continue
            listed = DatasetEntry(
                name=name,
                registry=registry.url,
                versions=tuple(v.version for v in versions),
                stages={s: v.version for v in versions for s in v.stages},
                latest=versions[-1].version,
            )
            try:
                latest = registry.describe(name, versions[-1])
            except NotADataset:
                continue  # a model or another artifact type
            except DsdataError as e:
                seen[name] = dataclasses.replace(listed, error=e.message)
                continue
            seen[name] = dataclasses.replace(
                listed,
                description=latest.description,
                labels=latest.labels,
                size=latest.size,
                nfiles=latest.nfiles,
                path=latest.path,
                kind="file" if latest.is_file else "directory",
            )
    return list(seen.values())


class CachedListing:
    """A registry listing shared by concurrent requests, read again after ``refresh`` s.

    The reading runs in a worker thread; callers on an event loop await :meth:`entries`.
    """

    def __init__(self, urls: Sequence[str], cache_dir: Path, refresh: float = 30.0) -> None:
        self.registries = [DvcRegistry(url, cache_dir) for url in urls]
        self.refresh = refresh
        self._entries: list[DatasetEntry] = []
        self._at: float | None = None
        self._lock: asyncio.Lock | None = None

    def invalidate(self) -> None:
        """Read the registries again on the next call (a version was just registered)."""
        self._at = None

    async def entries(self) -> list[DatasetEntry]:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._at is None or time.monotonic() - self._at >= self.refresh:
                self._entries = await asyncio.get_running_loop().run_in_executor(
                    None, registry_entries, self.registries
                )
                self._at = time.monotonic()
        return self._entries


class RegistryCatalog:
    """The catalog of a list of registries (``DSDATA_REGISTRIES``)."""

    def __init__(self, urls: Sequence[str], cache_dir: Path) -> None:
        self.registries = {url: DvcRegistry(url, cache_dir) for url in urls}
        self.cache_dir = cache_dir

    def entries(self) -> list[DatasetEntry]:
        return registry_entries(list(self.registries.values()))

    def registry(self, entry: DatasetEntry) -> Registry:
        return self.registries.get(entry.registry) or DvcRegistry(entry.registry, self.cache_dir)


class HubCatalog:
    """The hub's catalog API (``DSDATA_CATALOG_URL``), already filtered by the user's groups."""

    def __init__(self, url: str, token: str | None, cache_dir: Path) -> None:
        self.url = url
        self.token = token
        self.cache_dir = cache_dir
        self.dataset_url: str | None = None  # the catalog service's dataset routes

    def registry(self, entry: DatasetEntry) -> Registry:
        if self.dataset_url is None:  # the hub's own API: read the registry ourselves
            return DvcRegistry(entry.registry, self.cache_dir)
        name = urllib.parse.quote(entry.name, safe="")
        return HubRegistry(entry, self.dataset_url.format(name=name))

    def entries(self) -> list[DatasetEntry]:
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
        link = (data.get("links") or {}).get("dataset")
        if link:
            self.dataset_url = urllib.parse.urljoin(self.url, link)
        return [DatasetEntry.from_json(item) for item in data["datasets"]]


def default_catalog(cache_dir: Path) -> Catalog:
    url = os.environ.get("DSDATA_CATALOG_URL")
    if url:
        return HubCatalog(url, os.environ.get("JUPYTERHUB_API_TOKEN"), cache_dir)
    registries = [
        r.strip() for r in os.environ.get("DSDATA_REGISTRIES", "").split(",") if r.strip()
    ]
    return RegistryCatalog(registries, cache_dir)


def find(entries: Sequence[DatasetEntry], name: str) -> DatasetEntry:
    for entry in entries:
        if entry.name == name:
            return entry
    names = ", ".join(sorted(e.name for e in entries)) or "none"
    raise UnknownDataset(f"No dataset {name!r} in your catalog; available: {names}")
