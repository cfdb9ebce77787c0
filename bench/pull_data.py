"""The data of ``bench_pull`` and how it measures: a registry of generated files, sizes on disk,
timed runs, and the two anchors (``dvc get`` and ``cp -r``)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .common import REPO

VERSION = "v1.0.0"
MIB = 1 << 20
DVC = REPO / ".venv" / "bin" / "dvc"


class GeneratedFiles(Mapping[str, bytes]):
    """relpath -> random bytes, generated on access (one file in memory at a time)."""

    def __init__(self, sizes: dict[str, int], seed: int) -> None:
        self.sizes = sizes
        self.seed = seed

    def __getitem__(self, rel: str) -> bytes:
        size = self.sizes[rel]
        rng = random.Random(f"{self.seed}:{rel}")
        buf = bytearray(size)
        view = memoryview(buf)
        for offset in range(0, size, MIB):
            n = min(MIB, size - offset)
            view[offset : offset + n] = rng.randbytes(n)
        return buf  # type: ignore[return-value]  # bytes-like; write_bytes takes it

    def __iter__(self) -> Iterator[str]:
        return iter(self.sizes)

    def __len__(self) -> int:
        return len(self.sizes)


def layouts(size: int, files: int) -> dict[str, dict[str, int]]:
    """``many``: ``files`` files in 10 sub-directories; ``one``: a single file; ``size`` each."""
    each, extra = divmod(size, files)
    many = {
        f"shard-{i * 10 // files:02d}/part-{i:05d}.bin": each + (1 if i < extra else 0)
        for i in range(files)
    }
    return {"many": many, "one": {"data.bin": size}}


def build_registry(base: Path, size: int, files: int) -> tuple[Path, dict[str, Any]]:
    """A DVC registry (private to root, as the platform's are) with both datasets at
    ``v1.0.0``; its own ``.dvc/cache`` removed, so every copy comes from the remote."""
    from hub_ext.datasets.publish import init_registry, publish_version

    home = base / "registries"
    home.mkdir(mode=0o700)
    registry, remote = home / "registry", home / "remote"
    init_registry(registry, remote)
    info = {}
    for seed, (name, sizes) in enumerate(layouts(size, files).items()):
        t0 = time.perf_counter()
        publish_version(
            registry, name, GeneratedFiles(sizes, seed), VERSION, description=f"bench {name}"
        )
        info[name] = {
            "files": len(sizes),
            "bytes": sum(sizes.values()),
            "publish_s": round(time.perf_counter() - t0, 1),
        }
    shutil.rmtree(registry / ".dvc" / "cache", ignore_errors=True)
    return registry, info


def tree_stats(root: Path) -> tuple[int, int]:
    """(files, bytes) under ``root``, symlinks followed."""
    n = total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            n += 1
            total += os.stat(os.path.join(dirpath, name)).st_size
    return n, total


def check_tree(root: Path, expect: Mapping[str, int], what: str) -> None:
    files, total = tree_stats(root)
    if (files, total) != (expect["files"], expect["bytes"]):
        raise SystemExit(
            f"{what}: {files} files / {total} bytes, expected {expect['files']} / {expect['bytes']}"
        )


def disk_usage(*roots: Path) -> dict[str, int]:
    """Bytes on disk under ``roots`` (st_blocks), each inode once; symlinks are their own size."""
    seen: set[tuple[int, int]] = set()
    out = {"bytes": 0, "file_bytes": 0, "files": 0, "symlinks": 0, "hardlinked_dupes": 0}
    for root in roots:
        for dirpath, dirs, names in os.walk(root):
            for name in [*dirs, *names]:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if (st.st_dev, st.st_ino) in seen:
                    out["hardlinked_dupes"] += 1
                    continue
                seen.add((st.st_dev, st.st_ino))
                out["bytes"] += st.st_blocks * 512
                if os.path.islink(path):
                    out["symlinks"] += 1
                elif name in names:
                    out["files"] += 1
                    out["file_bytes"] += st.st_blocks * 512
    return out


def rm(*paths: Path) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    os.sync()  # flush what the previous method wrote, untimed
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - t0, value


def dvc_get(registry: Path, name: str, out: Path, site: Path) -> None:
    """The anchor a user would otherwise run (the CLI's start-up included)."""
    command = [os.fspath(DVC), "get", os.fspath(registry), f"data/{name}", "-o", os.fspath(out),
               "--rev", f"{name}@{VERSION}"]  # fmt: skip
    env = {**os.environ, "DVC_SITE_CACHE_DIR": os.fspath(site), "DVC_NO_ANALYTICS": "1"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"dvc get failed: {proc.stderr}")


def copy_tree(registry: Path, name: str, out: Path) -> None:
    """The other anchor: ``cp -r`` of the registry's working copy."""
    subprocess.run(["cp", "-r", os.fspath(registry / "data" / name), os.fspath(out)], check=True)
