"""The catalog's dataset routes, and the one trusted writer of the shared dataset cache.

Sandboxes cannot write the shared cache nor read the registries; they ask here, with their
hub token (``server_ext.hub_registry.HubRegistry``):

* ``GET api/datasets``: the entries the caller's groups may see, and the routes below;
* ``GET api/datasets/{name}``: one entry;
* ``GET api/datasets/{name}/versions/{version}``: its content hash, size, files at that tag;
* ``POST api/datasets/{name}/versions/{version}/fetch``: fetch the version's objects from the
  registry's DVC remote into the shared cache (checksums verified, once for everyone, under
  the version's lock) and stream progress as JSON lines, ending with ``{"done": ...}`` or
  ``{"error": ...}``. The objects are then read-only and owned by the service, so any
  sandbox may link them and none can change them.

A dataset the caller's groups may not see is answered 404, as if it did not exist.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tornado import web

from hub_ext.datasets.catalog import may_see, visible
from hub_ext.services.catalog.handlers import CatalogHandler
from server_ext.cache import SharedCache
from server_ext.errors import DsdataError
from server_ext.records import DatasetEntry, DatasetVersion, Version
from server_ext.refs import shown
from server_ext.registry import DvcRegistry

if TYPE_CHECKING:
    from hub_ext.services.catalog.app import CatalogService


class DatasetFetcher:
    """Resolve, describe and fetch dataset versions into the shared cache (in threads)."""

    def __init__(self, cache_root: Path, metadata_dir: Path) -> None:
        self.cache = SharedCache(cache_root)
        self.metadata_dir = metadata_dir

    def registry(self, entry: DatasetEntry, into_cache: bool = False) -> DvcRegistry:
        # descriptions use the metadata directory; fetches write the shared cache itself, and
        # DVC's own state stays in the metadata directory, which sandboxes cannot reach
        cache = self.cache.root if into_cache else self.metadata_dir
        return DvcRegistry(entry.registry, cache, site_dir=self.metadata_dir / "site")

    def version(self, entry: DatasetEntry, version: str) -> Version:
        for candidate in self.registry(entry).versions().get(entry.name, []):
            if candidate.version == version:
                return candidate
        known = ", ".join(entry.versions) or "none"
        raise web.HTTPError(404, f"{entry.name} has no version {shown(version)}; versions: {known}")

    def describe(self, entry: DatasetEntry, version: str) -> DatasetVersion:
        return self.registry(entry).describe(entry.name, self.version(entry, version))

    def fetch(self, entry: DatasetEntry, version: str, progress: Any) -> int:
        dataset = self.describe(entry, version)
        fetched = self.registry(entry, into_cache=True).fetch(dataset, self.cache, progress)
        self.seal(dataset)
        return fetched

    def seal(self, dataset: DatasetVersion) -> None:
        """The version's objects: owned by us, read-only for everyone, in 0755 directories."""
        paths = [self.cache.object_path(dataset.dir_md5)]
        if not dataset.is_file:
            manifest = self.cache.manifest(dataset.dir_md5)
            paths += [self.cache.object_path(e["md5"]) for e in manifest]
        for path in paths:
            os.chmod(path, 0o444)
            for parent in (path.parent, path.parent.parent, path.parent.parent.parent):
                if stat.S_IMODE(parent.stat().st_mode) != 0o755:
                    os.chmod(parent, 0o755)


class DatasetRoute(CatalogHandler):
    """Base of the dataset routes: the entry the caller may see, or 404."""

    async def entry(self, name: str) -> DatasetEntry:
        user = self.require_user()
        groups = await self.groups_of(user)
        for entry in await self.app.dataset_entries():
            if entry.name == name and may_see(name, groups, self.app.dataset_groups):
                return entry
        raise web.HTTPError(404, f"No dataset {shown(name)} in your catalog")


class DatasetsHandler(DatasetRoute):
    async def get(self) -> None:
        user = self.require_user()
        groups = await self.groups_of(user)
        entries = visible(await self.app.dataset_entries(), groups, self.app.dataset_groups)
        base = f"{self.app.prefix.rstrip('/')}/api/datasets"
        self.write_json(
            {
                "datasets": [entry.to_json() for entry in entries],
                "links": {"dataset": base + "/{name}"},
            }
        )


class DatasetHandler(DatasetRoute):
    async def get(self, name: str) -> None:
        self.write_json((await self.entry(name)).to_json())


class VersionHandler(DatasetRoute):
    async def get(self, name: str, version: str) -> None:
        entry = await self.entry(name)
        try:
            described = await self.in_thread(self.app.fetcher.describe, entry, version)
        except DsdataError as e:
            raise web.HTTPError(e.status, e.message) from None
        self.write_json(described.as_dict())


class FetchHandler(DatasetRoute):
    """Fetch a version into the shared cache, streaming progress as JSON lines."""

    async def post(self, name: str, version: str) -> None:
        self.check_body()  # the request has no body; a huge one is still refused
        entry = await self.entry(name)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        def progress(done_bytes: int, done_files: int) -> None:
            event = {"progress": {"bytes": done_bytes, "files": done_files}}
            loop.call_soon_threadsafe(events.put_nowait, event)

        def run() -> None:
            try:
                fetched = self.app.fetcher.fetch(entry, version, progress)
                event: dict[str, Any] = {"done": {"fetched": fetched}}
            except web.HTTPError as e:
                event = {"error": {"message": e.log_message, "status": e.status_code}}
            except DsdataError as e:
                event = {"error": {"message": e.message, "status": e.status}}
            except Exception as e:  # still reported to the sandbox, never a hang
                event = {"error": {"message": f"{type(e).__name__}: {e}", "status": 500}}
            loop.call_soon_threadsafe(events.put_nowait, event)

        self.set_header("Content-Type", "application/x-ndjson")
        self.set_header("Cache-Control", "no-cache")
        work = loop.run_in_executor(None, run)
        while True:
            event = await events.get()
            self.write(json.dumps(event) + "\n")
            await self.flush()
            if "progress" not in event:
                break
        await work
        self.finish()


def routes(app: CatalogService, url: Any) -> list[tuple[str, type[CatalogHandler]]]:
    """The dataset routes under the service's prefix (``url(path)`` joins it)."""
    name, version = r"([^/]+)", r"([^/]+)"  # names with '/' arrive quoted (%2F)
    return [
        (url("api/datasets"), DatasetsHandler),
        (url(f"api/datasets/{name}"), DatasetHandler),
        (url(f"api/datasets/{name}/versions/{version}"), VersionHandler),
        (url(f"api/datasets/{name}/versions/{version}/fetch"), FetchHandler),
    ]
