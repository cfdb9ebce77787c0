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


# --- a registry made the way DVC and GTO users make it: the real `dvc` and `gto` CLIs ------
GTO_FILES = {
    "table": {"v1.0.0": b"a,b\n1,2\n", "v1.1.0-rc.1": b"a,b\n1,2\n3,4\n"},
    "sub:feats": {"v1.0.0": b"f\n0.5\n", "v2.0.0": b"f\n0.7\n"},
    "images": {"v1.0.0": {"cats/1.txt": b"cat\n", "dogs/2.txt": b"dog\n"}},
}


def _cli(cwd: Path, tool: str, *args: str) -> str:
    """Run ``dvc``/``gto``/``git`` of this environment in ``cwd`` (fails loudly)."""
    import subprocess
    import sys
    import time

    from hub_ext.datasets.publish import GIT_IDENTITY

    exe = tool if tool == "git" else os.path.join(os.path.dirname(sys.executable), tool)
    env = {**os.environ, **GIT_IDENTITY}
    if tool == "gto":  # GTO orders events by tag time, in whole seconds
        time.sleep(max(0.0, 1.05 - (time.time() % 1)))
    proc = subprocess.run([exe, *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{tool} {' '.join(args)}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def build_gto_registry(base: Path) -> Registry:
    """Every case GTO knows, made with ``dvc add``/``dvc push``/``gto register|assign|
    deprecate``:

    * ``table``: a single file ``data/table.csv``; v1.0.0, then pre-release v1.1.0-rc.1;
      ``prod`` -> v1.0.0; ``staging`` assigned to v1.1.0-rc.1 and unassigned; a
      lightweight tag ``table@v9.0.0`` (GTO and DVC ignore it);
    * ``sub:feats``: a file declared in ``sub/dvc.yaml``; v1.0.0, v2.0.0 deregistered;
    * ``images``: a directory; v1.0.0, ``dev`` -> v1.0.0;
    * ``retired``: registered, then the artifact deprecated;
    * ``model1``: ``type: model``, not a dataset;
    * ``broken``: declared as a dataset, its path not tracked by DVC.
    """
    path, remote = base / "gto-registry", base / "gto-remote"
    path.mkdir(parents=True)
    remote.mkdir()
    _cli(path, "git", "init", "-q", "-b", "main")
    _cli(path, "dvc", "init", "-q")
    _cli(path, "dvc", "remote", "add", "-d", "storage", os.fspath(remote))
    (path / "data").mkdir()
    (path / "sub").mkdir()
    (path / "data" / "table.csv").write_bytes(GTO_FILES["table"]["v1.0.0"])
    (path / "sub" / "feats.csv").write_bytes(GTO_FILES["sub:feats"]["v1.0.0"])
    for rel, data in GTO_FILES["images"]["v1.0.0"].items():  # type: ignore[union-attr]
        (path / "data" / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / "data" / "images" / rel).write_bytes(data)
    (path / "data" / "retired.csv").write_bytes(b"old\n")
    (path / "data" / "broken.csv").write_bytes(b"never added\n")
    for target in ("data/table.csv", "data/images", "data/retired.csv"):
        _cli(path, "dvc", "add", "-q", target)
    _cli(path / "sub", "dvc", "add", "-q", "feats.csv")
    (path / "dvc.yaml").write_text(
        "artifacts:\n"
        "  table:\n    path: data/table.csv\n    type: dataset\n    desc: One table\n"
        "  images:\n    path: data/images\n    type: dataset\n    labels: [images]\n"
        "  retired:\n    path: data/retired.csv\n    type: dataset\n"
        "  model1:\n    path: data/table.csv\n    type: model\n"
        "  broken:\n    path: data/broken.csv\n    type: dataset\n"
    )
    (path / "sub" / "dvc.yaml").write_text(
        "artifacts:\n  feats:\n    path: feats.csv\n    type: dataset\n    desc: Features\n"
    )
    _cli(path, "dvc", "push", "-q")
    _cli(path, "git", "add", "-A")
    _cli(path, "git", "commit", "-qm", "first versions")
    for name in ("table", "sub:feats", "images", "retired", "model1", "broken"):
        _cli(path, "gto", "register", name, "--version", "v1.0.0")
    _cli(path, "gto", "assign", "table", "--version", "v1.0.0", "--stage", "prod")
    _cli(path, "gto", "assign", "images", "--version", "v1.0.0", "--stage", "dev")
    _cli(path, "gto", "deprecate", "retired")
    (path / "data" / "table.csv").write_bytes(GTO_FILES["table"]["v1.1.0-rc.1"])
    (path / "sub" / "feats.csv").write_bytes(GTO_FILES["sub:feats"]["v2.0.0"])
    _cli(path, "dvc", "add", "-q", "data/table.csv")
    _cli(path / "sub", "dvc", "add", "-q", "feats.csv")
    _cli(path, "dvc", "push", "-q")
    _cli(path, "git", "add", "-A")
    _cli(path, "git", "commit", "-qm", "second versions")
    _cli(path, "gto", "register", "table", "--version", "v1.1.0-rc.1")
    _cli(path, "gto", "register", "sub:feats", "--version", "v2.0.0")
    _cli(path, "gto", "assign", "table", "--version", "v1.1.0-rc.1", "--stage", "staging")
    _cli(path, "gto", "deprecate", "table", "v1.1.0-rc.1", "staging")  # unassign
    _cli(path, "gto", "deprecate", "sub:feats", "v2.0.0")  # deregister
    _cli(path, "git", "tag", "table@v9.0.0")  # lightweight: not a release
    return Registry(path, remote)


@pytest.fixture(scope="session", name="gto_registry")
def gto_registry_fixture(
    tmp_path_factory: pytest.TempPathFactory, dvc_site_cache: Path
) -> Registry:
    memo = (os.fspath(tmp_path_factory.getbasetemp()), "gto-registry")
    if memo not in _built:
        _built[memo] = build_gto_registry(tmp_path_factory.mktemp("gto"))
    return _built[memo]
