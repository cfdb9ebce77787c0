"""Datasets through the platform: the catalog service fetches, the sandbox only reads.

In a hub sandbox the shared dataset cache is read-only and the registries are not readable
by sandbox accounts. :class:`HubRegistry` asks the catalog service (with the sandbox's hub
token) to describe a version and to fetch its objects into the shared cache, verified; the
service checks the caller's groups first, so a restricted dataset is fetched only for its
members. The sandbox then links the cache's read-only objects into the workspace.

The catalog announces these routes in its listing (``"links"``), so a catalog without them
(the hub's own ``/hub/api/dsplatform/datasets``) keeps the direct :class:`DvcRegistry` path.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .catalog_client import CatalogError, open_url
from .errors import DsdataError, RegistryUnavailable, UnknownDataset, UnknownVersion
from .records import DatasetEntry, DatasetVersion, Version
from .refs import parse_tag_version, release_tag

if TYPE_CHECKING:
    from .cache import SharedCache
    from .registry import ProgressFn

DESCRIBE_TIMEOUT = 120.0
FETCH_IDLE_TIMEOUT = 600.0  # seconds without a progress line before a fetch is given up


class HubRegistry:
    """One registry's datasets, served by the catalog service's dataset routes."""

    def __init__(self, entry: DatasetEntry, dataset_url: str) -> None:
        self.url = entry.registry
        self.entry = entry
        self.dataset_url = dataset_url.rstrip("/")  # .../api/datasets/{name}

    def versions(self) -> dict[str, list[Version]]:
        entry = self.entry
        stages: dict[str, list[str]] = {}
        for stage, version in entry.stages.items():
            stages.setdefault(version, []).append(stage)
        found = []
        for version in entry.versions:
            key = parse_tag_version(version)
            if key is not None:
                found.append(
                    Version(release_tag(entry.name, version), version, key,
                            tuple(sorted(stages.get(version, ()))))
                )  # fmt: skip
        return {entry.name: found}

    def describe(self, name: str, version: Version) -> DatasetVersion:
        data = self._call("GET", f"versions/{urllib.parse.quote(version.version, safe='')}")
        return DatasetVersion.from_dict(data)

    def fetch(
        self, dataset: DatasetVersion, cache: SharedCache, progress: ProgressFn | None = None
    ) -> int:
        """Have the platform fetch ``dataset`` into the shared cache; objects fetched."""
        path = f"versions/{urllib.parse.quote(dataset.version, safe='')}/fetch"
        with self._open("POST", path, FETCH_IDLE_TIMEOUT) as response:
            for raw in response:
                line = json.loads(raw)
                if "progress" in line and progress is not None:
                    progress(int(line["progress"]["bytes"]), int(line["progress"]["files"]))
                elif "error" in line:
                    raise _error(int(line["error"].get("status", 502)), line["error"]["message"])
                elif "done" in line:
                    return int(line["done"]["fetched"])
        raise RegistryUnavailable(
            f"The platform's fetch of {dataset.name}@{dataset.version} broke off"
        )

    # --- HTTP ------------------------------------------------------------------------------
    def _open(self, method: str, path: str, timeout: float) -> Any:
        try:
            return open_url(method, f"{self.dataset_url}/{path}", timeout=timeout)
        except CatalogError as e:
            raise _error(e.status, e.message) from None

    def _call(self, method: str, path: str) -> Mapping[str, Any]:
        with self._open(method, path, DESCRIBE_TIMEOUT) as response:
            data: Mapping[str, Any] = json.load(response)
        return data


def _error(status: int, message: str) -> DsdataError:
    if status == 404:
        return UnknownVersion(message) if "version" in message.lower() else UnknownDataset(message)
    if status in (400, 403):
        return CatalogError(status, message)
    return RegistryUnavailable(message)
