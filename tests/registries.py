"""Real DVC data registries for the data tests: git + DVC + a local-directory DVC remote.

Built with :mod:`hub_ext.datasets.publish` (the same code that writes the demo registry):
each release is ``dvc add`` + ``dvc.yaml`` artifact + ``dvc push`` + commit + annotated tag
``NAME@vX.Y.Z``. A test module imports the fixtures it uses, with their dependencies::

    from .registries import dvc_site_cache_fixture, registry_fixture  # noqa: F401

and names them ``registry``, ``big_registry``, ``dvc_site_cache`` in its tests. Imported
into several modules, they are still built once a session (memoised below).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pytest

from hub_ext.datasets.publish import git, init_registry, publish_version


@dataclass(frozen=True)
class Release:
    name: str
    version: str  # vX.Y.Z
    files: Mapping[str, bytes]
    description: str = ""
    labels: Sequence[str] = field(default_factory=tuple)

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())


def _iris(rows: int, columns: Sequence[str]) -> bytes:
    rng = random.Random(rows * 31 + len(columns))
    lines = [",".join(columns)]
    for i in range(rows):
        values = [f"{rng.uniform(0.1, 7.9):.1f}" for _ in columns[:-1]]
        lines.append(",".join([*values, ("setosa", "versicolor", "virginica")[i % 3]]))
    return ("\n".join(lines) + "\n").encode()


IRIS_COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width", "species")

RELEASES: tuple[Release, ...] = (
    Release(
        "iris",
        "v1.0.0",
        {"iris.csv": _iris(30, IRIS_COLUMNS)},
        "Iris flowers, first cut",
        ("tabular",),
    ),
    Release(
        "iris",
        "v1.1.0",
        {"iris.csv": _iris(150, IRIS_COLUMNS)},
        "Iris flowers, all 150 rows",
        ("tabular",),
    ),
    Release(
        "multi",
        "v1.0.0",
        {
            "train/part-0.csv": b"x,y\n1,2\n3,4\n",
            "train/part-1.csv": b"x,y\n5,6\n7,8\n",
            "test/nested/deep/part-0.csv": b"x,y\n9,10\n",
            "labels/classes.json": b'{"0": "cat", "1": "dog"}\n',
            "README.md": b"# multi\nNested directories.\n",
        },
        "Nested directories",
        ("images", "nested"),
    ),
    Release(
        "iris",
        "v2.0.0",
        {
            "iris.csv": _iris(150, ("sl", "sw", "pl", "pw", "species")),
            "README.md": b"# iris v2\nColumns renamed.\n",
        },
        "Iris flowers, renamed columns",
        ("tabular", "v2"),
    ),
)

MIB = 1 << 20


def _big_files(count: int, size: int) -> dict[str, bytes]:
    rng = random.Random(2024)
    return {f"shard-{i:03d}.bin": rng.randbytes(size) for i in range(count)}


BIG_RELEASES: tuple[Release, ...] = (
    Release("big", "v1.0.0", {"small.txt": b"the small first version\n"}, "Big, v1 is small"),
    Release("big", "v2.0.0", _big_files(50, MIB), "Big, v2 is 50 MiB in 50 files"),
)


def release(name: str, version: str, releases: Sequence[Release] = RELEASES) -> Release:
    for candidate in releases:
        if (candidate.name, candidate.version) == (name, version):
            return candidate
    raise KeyError(f"{name}@{version}")


class Registry(NamedTuple):
    """A built registry: ``(path, remote)`` unpacks like a tuple."""

    path: Path
    remote: Path

    @property
    def url(self) -> str:
        return os.fspath(self.path)

    def rev(self, tag: str) -> str:
        """The commit a release tag points to, as git itself says."""
        return git(self.path, "rev-parse", f"{tag}^{{commit}}")

    def manifest(self, dir_md5: str) -> list[dict[str, str]]:
        return json.loads(self.object_path(dir_md5).read_bytes())

    def object_path(self, md5: str) -> Path:
        return self.remote / "files" / "md5" / md5[:2] / md5[2:]


def build_registry(base: Path, releases: Sequence[Release]) -> Registry:
    """A git + DVC registry under ``base`` with ``releases`` published in order."""
    path, remote = base / "registry", base / "remote"
    init_registry(path, remote)
    for rel in releases:
        publish_version(
            path, rel.name, rel.files, rel.version, description=rel.description, labels=rel.labels
        )
    return Registry(path, remote)


def md5_tree(root: Path) -> dict[str, str]:
    """relpath -> md5 of every file under ``root`` (symlinks followed)."""
    return {
        p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def expected_tree(rel: Release) -> dict[str, str]:
    return {name: hashlib.md5(data).hexdigest() for name, data in rel.files.items()}


_built: dict[tuple[str, str], Registry] = {}


def _memoised(factory: pytest.TempPathFactory, key: str, releases: Sequence[Release]) -> Registry:
    memo = (os.fspath(factory.getbasetemp()), key)
    if memo not in _built:
        _built[memo] = build_registry(factory.mktemp(key), releases)
    return _built[memo]


@pytest.fixture(scope="session", name="dvc_site_cache")
def dvc_site_cache_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """DVC's site cache (repo indexes, locks) in a temp dir, not ``/var/tmp/dvc``.

    Set in the environment, so kernels and subprocesses started by the tests inherit it.
    """
    path = tmp_path_factory.getbasetemp() / "dvc-site-cache"
    path.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DVC_SITE_CACHE_DIR", os.fspath(path))
        yield path


@pytest.fixture(scope="session", name="registry")
def registry_fixture(tmp_path_factory: pytest.TempPathFactory, dvc_site_cache: Path) -> Registry:
    """iris v1.0.0, v1.1.0, v2.0.0 and multi v1.0.0 (nested directories)."""
    return _memoised(tmp_path_factory, "registry", RELEASES)


@pytest.fixture(scope="session", name="big_registry")
def big_registry_fixture(
    tmp_path_factory: pytest.TempPathFactory, dvc_site_cache: Path
) -> Registry:
    """big v1.0.0 (one small file) and v2.0.0 (50 files of 1 MiB)."""
    return _memoised(tmp_path_factory, "big-registry", BIG_RELEASES)
