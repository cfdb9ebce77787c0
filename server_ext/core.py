"""The one data core: list, info, pull, status. Magics, REST, widgets are thin fronts."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .cache import SharedCache
from .catalog import Catalog, default_catalog, find
from .errors import UnknownDataset
from .lineage import Lineage, find_project_root, now_iso
from .locks import file_lock
from .records import DatasetEntry, DatasetInfo, VersionDetail
from .refs import default_target, parse_ref, resolve_target
from .registry import pick_version
from .workspace import changes, check_replaceable, load_snapshot, materialise, save_snapshot


@dataclass
class PullProgress:
    """What a progress bar shows; sent to ``on_progress`` as the pull advances."""

    dataset: str
    phase: str = "resolving"  # resolving, downloading, linking, done
    bytes_done: int = 0
    bytes_total: int | None = None
    files_done: int = 0
    files_total: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[PullProgress], None]


@dataclass
class PullResult:
    dataset: str
    version: str
    tag: str
    rev: str
    registry: str
    path: str  # relative to the project root
    content_hash: str
    files: int
    bytes: int | None
    downloaded_objects: int
    from_cache: bool
    links: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_cache_dir() -> Path:
    env = os.environ.get("DSDATA_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dsdata"


class DataService:
    """Datasets of the catalog, pulled through the shared cache into a project."""

    def __init__(
        self,
        root: Path | None = None,
        cache_dir: Path | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.root = (root or find_project_root()).resolve()
        self.cache = SharedCache(cache_dir or default_cache_dir())
        self.catalog = catalog or default_catalog(self.cache.root)
        self.lineage = Lineage(self.root)
        self.state_dir = self.root / ".dsdata" / "state"

    # --- reading ---------------------------------------------------------------------
    def list_datasets(self) -> list[DatasetEntry]:
        """Datasets the user may pull, with their versions."""
        return sorted(self.catalog.entries(), key=lambda e: e.name)

    def info(self, name: str) -> DatasetInfo:
        """One dataset: description, source, and each version's size and content hash."""
        ref = parse_ref(name)
        entry = find(self.catalog.entries(), ref.name)
        registry = self.catalog.registry(entry)
        details = []
        for version in reversed(registry.versions().get(ref.name, [])):
            described = registry.describe(ref.name, version)
            details.append(
                VersionDetail(
                    version=version.version,
                    tag=version.tag,
                    rev=described.rev,
                    size=described.size,
                    nfiles=described.nfiles,
                    content_hash=described.dir_md5,
                    cached=self.cache.is_complete(described.dir_md5),
                )
            )
        return DatasetInfo(entry, tuple(details))

    def status(self) -> list[dict[str, Any]]:
        """Each pulled path: dataset, version, and whether its files changed since."""
        rows: list[dict[str, Any]] = []
        changed: list[str]
        for rel, record in sorted(self.lineage.current().items()):
            target = self.root / rel
            snapshot = load_snapshot(self.state_dir, rel)
            if not target.exists():
                state, changed = "missing", []
            elif snapshot is None:
                state, changed = "unknown", []
            else:
                changed = changes(target, snapshot)
                state = "modified" if changed else "unchanged"
            rows.append({**record, "state": state, "changed": changed})
        return rows

    # --- pulling ---------------------------------------------------------------------
    def _workspace_lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.root / ".dsdata" / "pull.lock")

    def pull(
        self,
        reference: str,
        path: str | None = None,
        *,
        version: str | None = None,
        force: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> PullResult:
        """Fetch a dataset version into ``path``, atomically.

        Args:
            reference: ``"iris"``, ``"iris@v2"`` or ``"iris@v2.1.0"``.
            path: target inside the project (default ``data/NAME``, for a single-file
                dataset ``data/<its file name>``).
            version: overrides the version in ``reference``.
            force: replace local changes in the target.
            on_progress: called with :class:`PullProgress` as the pull advances.

        Raises:
            InvalidReference, UnknownDataset, UnknownVersion, WorkspaceConflict,
            RegistryUnavailable, CorruptData: the target is left as it was.
        """
        started = time.monotonic()
        ref = parse_ref(reference, version)
        resolve_target(self.root, path, default_target(ref.name, "", False))  # 400 first
        progress = PullProgress(dataset=str(ref))

        def report() -> None:
            if on_progress is not None:
                on_progress(progress)

        report()
        entry = find(self.catalog.entries(), ref.name)
        source = self.catalog.registry(entry)
        registry = source.url
        versions = source.versions().get(ref.name)
        if not versions:
            raise UnknownDataset(f"Dataset {ref.name!r} has no released version in {registry!r}")
        chosen = pick_version(ref, versions, registry)
        dataset = source.describe(ref.name, chosen)
        default = default_target(ref.name, dataset.path, dataset.is_file)
        target = resolve_target(self.root, path, default)
        rel = target.relative_to(self.root).as_posix()
        progress.bytes_total, progress.files_total = dataset.size, dataset.nfiles
        with self._workspace_lock():
            check_replaceable(target, load_snapshot(self.state_dir, rel), force, dataset.is_file)
        downloaded = 0
        from_cache = self.cache.is_complete(dataset.dir_md5)
        if not from_cache:
            progress.phase = "downloading"
            report()

            def on_bytes(done_bytes: int, done_files: int) -> None:
                # DVC counts the version's manifest too: never report more than 100%
                progress.bytes_done = min(done_bytes, dataset.size or done_bytes)
                progress.files_done = min(done_files, dataset.nfiles or done_files)
                report()

            # the registry fetches under the version's lock, once for every puller: one that
            # waited finds it complete and downloads nothing
            downloaded = source.fetch(dataset, self.cache, on_bytes)
            from_cache = downloaded == 0
        progress.phase = "linking"
        report()
        with self._workspace_lock():
            # checked again: the target may have changed while we downloaded
            check_replaceable(target, load_snapshot(self.state_dir, rel), force, dataset.is_file)
            snapshot, links = materialise(self.cache, dataset, target)
            save_snapshot(self.state_dir, rel, snapshot)
            self.lineage.record(
                {
                    "dataset": ref.name,
                    "version": chosen.version,
                    "requested": str(ref),
                    "tag": chosen.tag,
                    "rev": dataset.rev,
                    "registry": registry,
                    "content_hash": dataset.dir_md5,
                    "path": rel,
                    "files": len(snapshot.files),
                    "bytes": dataset.size,
                    "time": now_iso(),
                }
            )
        progress.phase = "done"
        progress.files_done = len(snapshot.files)
        progress.bytes_done = dataset.size or progress.bytes_done
        report()
        return PullResult(
            dataset=ref.name,
            version=chosen.version,
            tag=chosen.tag,
            rev=dataset.rev,
            registry=registry,
            path=rel,
            content_hash=dataset.dir_md5,
            files=len(snapshot.files),
            bytes=dataset.size,
            downloaded_objects=downloaded,
            from_cache=from_cache,
            links=links,
            seconds=round(time.monotonic() - started, 3),
        )
