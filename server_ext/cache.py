"""The shared, content-addressed dataset cache (``DSDATA_CACHE_DIR``).

Objects are DVC's: ``files/md5/ab/cdef…`` (read-only files) plus the ``.dir``
manifest of each directory dataset version (a single-file version is its one object).
Downloads go from the registry's DVC remote straight into this cache with DVC's transfer
machinery (checksums verified), under a per-version file lock so that concurrent pulls of
one version by many users download it once. A version whose manifest and objects are all
present is complete: pulling it again downloads nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import CorruptData, RegistryUnavailable
from .locks import file_lock
from .records import DatasetVersion

ProgressFn = Callable[[int, int], None]  # (bytes done, files done)


class SharedCache:
    """A content-addressed store shared by every sandbox of a platform."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def object_path(self, md5: str) -> Path:
        return self.root / "files" / "md5" / md5[:2] / md5[2:]

    def lock(self, dir_md5: str) -> contextlib.AbstractContextManager[None]:
        """Exclusive per-version lock of the cache's writer (mode 0600: on a platform, the
        catalog service writes the cache; sandboxes only read it)."""
        return file_lock(self.root / "locks" / f"{dir_md5}.lock", 0o600)

    def manifest(self, dir_md5: str) -> list[dict[str, str]]:
        """The version's files: ``[{"md5": …, "relpath": …}]``, checked against its hash."""
        raw = self.object_path(dir_md5).read_bytes()
        if hashlib.md5(raw).hexdigest() + ".dir" != dir_md5:
            raise CorruptData(f"Cache manifest {dir_md5} does not match its checksum")
        entries: list[dict[str, str]] = json.loads(raw)
        return entries

    def entries(self, dataset: DatasetVersion) -> list[dict[str, str]]:
        """The version's files; a single-file version is one entry named ``""``."""
        if dataset.is_file:
            return [{"md5": dataset.dir_md5, "relpath": ""}]
        return self.manifest(dataset.dir_md5)

    def is_complete(self, dir_md5: str) -> bool:
        if not dir_md5.endswith(".dir"):  # a single file: its object
            return self.object_path(dir_md5).is_file()
        try:
            entries = self.manifest(dir_md5)
        except (OSError, CorruptData, ValueError):
            return False
        return all(self.object_path(e["md5"]).exists() for e in entries)

    def fetch(self, repo: Any, dataset: DatasetVersion, progress: ProgressFn | None = None) -> int:
        """Download ``dataset``'s missing objects from ``repo``'s remote; return the count.

        Raises:
            RegistryUnavailable: the remote cannot be read or lacks objects.
            CorruptData: an object failed checksum verification (nothing corrupt is kept).
        """
        from dvc_data.hashfile.hash_info import HashInfo
        from dvc_data.hashfile.transfer import transfer
        from dvc_data.hashfile.tree import Tree

        try:
            remote = repo.cloud.get_remote_odb(None, "pull")
        except Exception as e:
            raise RegistryUnavailable(
                f"{dataset.registry!r} has no usable DVC remote: {e}"
            ) from None
        cache_odb = repo.cache.local
        dir_hash = HashInfo("md5", dataset.dir_md5)
        files: set[Any]
        if dataset.is_file:
            files = {dir_hash}
        else:
            try:
                tree = Tree.load(remote, dir_hash)
            except Exception as e:
                raise RegistryUnavailable(
                    f"Cannot read {dataset.name}@{dataset.version} from the registry's remote "
                    f"{remote.path!r}: {e}"
                ) from None
            files = {hash_info for _, _, hash_info in tree}
        missing: set[Any] = set()
        callback = _Progress(progress) if progress else None
        kwargs: dict[str, Any] = {"callback": callback} if callback else {}
        try:
            result = transfer(
                remote,
                cache_odb,
                list(files) if dataset.is_file else [dir_hash, *files],
                verify=True,
                cache_odb=cache_odb,
                validate_status=lambda status: missing.update(status.missing),
                **kwargs,
            )
        except Exception as e:
            raise RegistryUnavailable(f"Download from {remote.path!r} failed: {e}") from None
        if missing:
            raise RegistryUnavailable(
                f"{len(missing)} file(s) of {dataset.name}@{dataset.version} are missing "
                f"from the registry's remote {remote.path!r}"
            )
        # DVC deletes an object that fails verification and carries on: a gap means
        # corruption. Drop the manifest so the version never looks complete.
        bad = sorted(h.value for h in files if not self.object_path(h.value).exists())
        if bad or result.failed:
            with contextlib.suppress(FileNotFoundError):  # a file's object is already gone
                self.object_path(dataset.dir_md5).unlink()
            raise CorruptData(
                f"{len(bad) or len(result.failed)} file(s) of {dataset.name}@{dataset.version} "
                "failed checksum verification; the remote copy is damaged. Nothing was written."
            )
        return len(result.transferred)

    def usage_bytes(self) -> int:
        total = 0
        for path in (self.root / "files").rglob("*"):
            if path.is_file():
                total += path.stat().st_size
        return total


def _Progress(report: ProgressFn) -> Any:
    from fsspec.callbacks import Callback

    class Progress(Callback):
        """Files from ``relative_update``; bytes from each per-file child callback."""

        def __init__(self) -> None:
            super().__init__()
            self.bytes = 0

        def call(self, *args: Any, **kwargs: Any) -> None:
            report(self.bytes, int(self.value))

        def branched(self, path_1: Any, path_2: Any, **kwargs: Any) -> Any:
            parent = self

            class Child(Callback):
                seen = 0

                def relative_update(self, inc: int = 1) -> None:
                    self.seen += inc
                    parent.bytes += inc
                    report(parent.bytes, int(parent.value))

                def close(self) -> None:  # local copies report no bytes: stat instead
                    if not self.seen:
                        for path in (path_2, path_1):
                            with contextlib.suppress(OSError, TypeError):
                                parent.bytes += os.path.getsize(path)
                                break

            return Child()

    return Progress()
