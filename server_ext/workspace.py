"""Materialising a cached dataset version into the workspace, atomically.

The version is built in a temporary sibling of the target from the shared cache, then
swapped into place with one ``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel
lacks it), so a failed or interrupted pull leaves the target exactly as it was.

Files are linked, not copied, where that is safe: reflink (copy-on-write) always; hardlink
and symlink only when the sandbox cannot write the shared cache object (it neither owns it
nor is root), so nobody can change another user's data through a link; else a copy.
``DSDATA_LINK_TYPES`` (e.g. ``"copy"``) restricts the choice further.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .cache import SharedCache
from .errors import WorkspaceConflict
from .records import DatasetVersion

DEFAULT_LINKS = ("reflink", "hardlink", "symlink", "copy")
_FALLBACK_ERRNOS = {
    errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOTTY,
    errno.EINVAL, errno.EACCES, errno.ENOSYS,
}  # fmt: skip


def link_types(sample: Path | None = None) -> tuple[str, ...]:
    """Link kinds to try, best first, safe for the current user and ``sample``'s owner."""
    raw = os.environ.get("DSDATA_LINK_TYPES", "")
    chosen = tuple(t.strip() for t in raw.split(",") if t.strip() in DEFAULT_LINKS)
    kinds = chosen or DEFAULT_LINKS
    if not shared_links_safe(sample):
        kinds = tuple(k for k in kinds if k not in ("hardlink", "symlink")) or ("copy",)
    return kinds


def shared_links_safe(sample: Path | None) -> bool:
    """Can a hardlink/symlink to the cache be trusted not to let us modify the cache?"""
    euid = os.geteuid()
    if euid == 0:
        return False  # root writes through any permission bits
    try:
        return sample is not None and sample.stat().st_uid != euid
    except OSError:
        return False


@dataclass
class Snapshot:
    """What a pull put at a path: content hashes and the stat seen right after."""

    files: dict[str, str]  # relpath -> md5
    stats: dict[str, tuple[int, int]] = field(default_factory=dict)  # relpath -> size, mtime

    def to_json(self) -> dict[str, object]:
        return {"files": self.files, "stats": {k: list(v) for k, v in self.stats.items()}}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Snapshot:
        files = dict(data.get("files", {}))  # type: ignore[call-overload]
        stats = {k: (int(v[0]), int(v[1])) for k, v in dict(data.get("stats", {})).items()}  # type: ignore[call-overload]
        return cls(files, stats)


def md5_file(path: Path, bufsize: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(root: Path) -> list[str]:
    """Files under ``root``, relative; a file ``root`` itself is ``""``."""
    if root.is_file() or (root.is_symlink() and not root.is_dir()):
        return [""]
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink()
    )


def changes(target: Path, snapshot: Snapshot) -> list[str]:
    """Files added, removed or modified under ``target`` since ``snapshot`` (sorted)."""
    if not target.exists():
        return sorted(snapshot.files)
    present = set(list_files(target))
    changed = sorted(present ^ set(snapshot.files))
    for rel in sorted(present & set(snapshot.files)):
        path = target / rel
        st = path.stat()
        if snapshot.stats.get(rel) == (st.st_size, st.st_mtime_ns):
            continue  # same size and mtime as right after the pull
        if md5_file(path) != snapshot.files[rel]:
            changed.append(rel)
    return sorted(target.name if rel == "" else rel for rel in changed)  # "": a file target


def _link(src: Path, dst: Path, kinds: Sequence[str]) -> str:
    from dvc_objects.fs.system import reflink

    for kind in kinds:
        try:
            if kind == "reflink":
                reflink(os.fspath(src), os.fspath(dst))
            elif kind == "hardlink":
                os.link(src, dst)
            elif kind == "symlink":
                os.symlink(src, dst)
            else:
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o644)
            return kind
        except OSError as e:
            if e.errno not in _FALLBACK_ERRNOS:
                raise
            with contextlib.suppress(FileNotFoundError):
                dst.unlink()
    raise OSError(errno.ENOTSUP, f"no way to place {dst} (tried {', '.join(kinds)})")


_RENAME_EXCHANGE = 2


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(
        at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a))


def materialise(
    cache: SharedCache,
    dataset: DatasetVersion,
    target: Path,
    *,
    kinds: Iterable[str] | None = None,
) -> tuple[Snapshot, dict[str, int]]:
    """Build ``target`` from the cache in a temp sibling, then swap it into place (a
    directory, or the one file of a single-file dataset).

    The caller holds the workspace lock: temp siblings of ``target`` found now were left
    by a pull that was killed, and are removed.
    """
    entries = cache.entries(dataset)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(glob.escape(f".{target.name}.dsdata-") + "*"):
        if not stale.is_symlink():
            remove(stale)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.dsdata-", dir=target.parent))
    os.chmod(tmp, 0o755)
    if dataset.is_file:  # the file is built inside the temp directory, then swapped
        tmp_root, tmp = tmp, tmp / "file"
    else:
        tmp_root = tmp
    sample = cache.object_path(entries[0]["md5"]) if entries else None
    order = list(kinds or link_types(sample))
    used: dict[str, int] = {}
    files: dict[str, str] = {}
    try:
        for entry in entries:
            rel = entry["relpath"]
            dst = tmp.joinpath(*rel.split("/")) if rel else tmp
            dst.parent.mkdir(parents=True, exist_ok=True)
            kind = _link(cache.object_path(entry["md5"]), dst, order)
            order = order[order.index(kind) :]  # do not retry kinds that failed
            used[kind] = used.get(kind, 0) + 1
            files[rel] = entry["md5"]
        stats = {}
        for rel in files:
            st = (tmp.joinpath(*rel.split("/")) if rel else tmp).stat()
            stats[rel] = (st.st_size, st.st_mtime_ns)
        swap_into_place(tmp, target)
    finally:
        remove(tmp_root)  # what is left: nothing, the old content, or a failed build
    return Snapshot(files, stats), used


def remove(path: Path) -> None:
    """Remove a file, link or directory tree; gone already is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def swap_into_place(new: Path, target: Path) -> None:
    """Put ``new`` (a directory or a file) at ``target``; the old target is removed only on
    success. Afterwards ``new`` is gone or holds the old target."""
    if not target.exists() and not target.is_symlink():
        os.rename(new, target)
        return
    if exchange(new, target):
        remove(new)  # ``new`` now holds the old content
        return
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, trash / "old")
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(trash / "old", target)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def check_replaceable(
    target: Path, previous: Snapshot | None, force: bool, is_file: bool = False
) -> None:
    """Refuse to overwrite local changes (or files no pull put there) without ``force``."""
    if force or not (target.exists() or target.is_symlink()):
        return
    if target.is_dir() == is_file:
        what = "a directory" if target.is_dir() else "not a directory"
        raise WorkspaceConflict(f"{target} exists and is {what}; use --force to replace it")
    if previous is None:
        if is_file or any(target.iterdir()):
            raise WorkspaceConflict(
                f"{target} already holds files that no %dsdata pull put there; "
                "use --force to replace them or -o to pull elsewhere"
            )
        return
    changed = changes(target, previous)
    if changed:
        shown = ", ".join(changed[:5]) + (" …" if len(changed) > 5 else "")
        raise WorkspaceConflict(
            f"{target} has local changes ({len(changed)} file(s): {shown}); "
            "use --force to replace them"
        )


def save_snapshot(state_dir: Path, key: str, snapshot: Snapshot) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(snapshot.to_json()))
    os.replace(tmp, path)


def load_snapshot(state_dir: Path, key: str) -> Snapshot | None:
    path = state_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.json"
    try:
        return Snapshot.from_json(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None
