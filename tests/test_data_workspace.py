"""The data core in the workspace: local changes protected, foreign files and unsafe paths
refused, lineage recorded, registry refs and stages; against real DVC registries."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from server_ext.cache import SharedCache
from server_ext.core import DataService
from server_ext.errors import (
    InvalidReference,
    RegistryUnavailable,
    UnknownDataset,
    UnknownVersion,
    WorkspaceConflict,
)

from .data_services import (  # noqa: F401  (fixtures)
    assert_cache_sound,
    cache_dir_fixture,
    make_service_fixture,
    service_fixture,
    snapshot_dir,
    version_hash,
)
from .registries import (  # noqa: F401  (fixtures)
    Registry,
    dvc_site_cache_fixture,
    expected_tree,
    md5_tree,
    registry_fixture,
    release,
)

# --- the workspace: local changes, foreign files, paths ------------------------------------


def test_modified_target_is_protected_until_force(service: DataService) -> None:
    service.pull("iris@v1.0.0")
    csv = service.root / "data" / "iris" / "iris.csv"
    edited = csv.read_bytes() + b"9.9,9.9,9.9,9.9,mine\n"
    csv.write_bytes(edited)
    [row] = service.status()
    assert (row["state"], row["changed"], row["version"]) == ("modified", ["iris.csv"], "v1.0.0")

    with pytest.raises(WorkspaceConflict, match=r"local changes \(1 file\(s\): iris\.csv\)"):
        service.pull("iris@v2")
    assert csv.read_bytes() == edited  # untouched
    assert sorted(os.listdir(service.root / "data" / "iris")) == ["iris.csv"]

    result = service.pull("iris@v2", force=True)
    assert result.version == "v2.0.0"
    assert md5_tree(service.root / "data" / "iris") == expected_tree(release("iris", "v2.0.0"))
    [row] = service.status()
    assert (row["state"], row["changed"], row["version"]) == ("unchanged", [], "v2.0.0")


def test_status_names_added_removed_and_missing(service: DataService) -> None:
    service.pull("multi")
    target = service.root / "data" / "multi"
    (target / "train" / "part-1.csv").unlink()
    (target / "notes.txt").write_text("mine")
    [row] = service.status()
    assert row["state"] == "modified"
    assert row["changed"] == ["notes.txt", "train/part-1.csv"]
    shutil.rmtree(target)
    [row] = service.status()
    assert row["state"] == "missing"


def test_unchanged_target_is_replaced_without_force(service: DataService) -> None:
    service.pull("iris@v1.0.0")
    result = service.pull("iris@v1.1.0")
    assert result.version == "v1.1.0"
    assert md5_tree(service.root / "data" / "iris") == expected_tree(release("iris", "v1.1.0"))
    assert [r["version"] for r in service.lineage.records()] == ["v1.0.0", "v1.1.0"]
    assert sorted(os.listdir(service.root / "data")) == ["iris"]


def test_files_not_from_a_pull_are_a_conflict(service: DataService) -> None:
    mine = service.root / "data" / "iris" / "mine.csv"
    mine.parent.mkdir(parents=True)
    mine.write_text("my own data\n")
    with pytest.raises(WorkspaceConflict, match="no %dsdata pull put there"):
        service.pull("iris")
    assert mine.read_text() == "my own data\n"
    assert service.pull("iris", force=True).version == "v2.0.0"
    assert not mine.exists()


def test_a_file_at_the_target_is_a_conflict(service: DataService) -> None:
    (service.root / "data").mkdir()
    (service.root / "data" / "iris").write_text("a file, not a directory")
    with pytest.raises(WorkspaceConflict, match="not a directory"):
        service.pull("iris")
    assert (service.root / "data" / "iris").read_text() == "a file, not a directory"


@pytest.mark.parametrize(
    "reference",
    ["../etc", "iris/../../x", "-rf", "iris@v1;rm", "iris@../v1", "iris_", "x" * 201, "", "@v1"],
)
def test_bad_references_are_refused(service: DataService, reference: str) -> None:
    with pytest.raises(InvalidReference):
        service.pull(reference)
    assert os.listdir(service.root) == []


@pytest.mark.parametrize(
    "path",
    ["/etc/x", "../outside", "data/../../outside", "-rf", ".", "data/\0x", "/", ".dsdata",
     ".dsdata/state", ".git/x"],
)  # fmt: skip
def test_targets_outside_the_workspace_are_refused(service: DataService, path: str) -> None:
    with pytest.raises(InvalidReference):
        service.pull("iris", path)
    assert os.listdir(service.root) == []
    assert not (service.root.parent / "outside").exists()


@pytest.mark.parametrize("below", ["iris", "sub/iris", "sub/deeper/iris"])
def test_a_symlink_leading_outside_cannot_be_a_target_parent(
    service: DataService, tmp_path: Path, below: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (service.root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidReference, match="outside the workspace"):
        service.pull("iris", f"link/{below}")
    assert os.listdir(outside) == []


def test_a_dangling_symlink_cannot_lead_outside(service: DataService, tmp_path: Path) -> None:
    (service.root / "link").symlink_to(tmp_path / "not-yet", target_is_directory=True)
    with pytest.raises(InvalidReference, match="outside the workspace"):
        service.pull("iris", "link/iris")
    assert not (tmp_path / "not-yet").exists()


def test_a_symlink_inside_the_workspace_may_be_a_target_parent(service: DataService) -> None:
    (service.root / "real").mkdir()
    (service.root / "alias").symlink_to(service.root / "real", target_is_directory=True)
    result = service.pull("iris@v1.0.0", "alias/sub/iris")
    assert result.path == "real/sub/iris"
    assert md5_tree(service.root / "real" / "sub" / "iris") == expected_tree(
        release("iris", "v1.0.0")
    )


def test_unknown_dataset_lists_the_available_ones(service: DataService) -> None:
    with pytest.raises(UnknownDataset) as raised:
        service.pull("penguins@v1")
    assert "penguins" in raised.value.message and "available: iris, multi" in raised.value.message
    assert os.listdir(service.root) == []


@pytest.mark.parametrize("version", ["v3", "v1.2", "v1.0.1", "v0"])
def test_unknown_version_lists_the_versions(service: DataService, version: str) -> None:
    with pytest.raises(UnknownVersion, match=r"versions: v1\.0\.0, v1\.1\.0, v2\.0\.0"):
        service.pull(f"iris@{version}")
    assert os.listdir(service.root) == []


def test_unreachable_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSDATA_REGISTRIES", os.fspath(tmp_path / "no" / "such" / "registry"))
    root, cache = tmp_path / "ws", tmp_path / "cache"
    root.mkdir()
    service = DataService(root=root, cache_dir=cache)
    with pytest.raises(RegistryUnavailable, match="Cannot read data registry"):
        service.list_datasets()
    with pytest.raises(RegistryUnavailable):
        service.pull("iris@v1")
    assert os.listdir(root) == []
    assert not cache.exists() or not list(cache.rglob("*"))


# --- lineage -------------------------------------------------------------------------------


def test_lineage_records_each_pull(service: DataService, registry: Registry) -> None:
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = service.pull("iris@v1")
    service.pull("multi", "data/m")
    data = json.loads((service.root / ".dsdata" / "lineage.json").read_text())
    assert data["version"] == 1
    first, second = data["pulls"]
    rel = release("iris", "v1.1.0")
    assert first["dataset"] == "iris"
    assert first["version"] == "v1.1.0" and first["requested"] == "iris@v1"
    assert first["tag"] == rel.tag
    assert re.fullmatch(r"[0-9a-f]{40}", first["rev"])
    assert first["rev"] == registry.rev(rel.tag) == result.rev
    assert first["registry"] == registry.url
    assert first["content_hash"] == result.content_hash == version_hash(service, "iris", "v1.1.0")
    assert first["path"] == "data/iris"
    assert (first["files"], first["bytes"]) == (1, rel.size)
    when = dt.datetime.fromisoformat(first["time"])
    assert started <= when <= dt.datetime.now(dt.UTC)
    assert (second["dataset"], second["path"], second["version"]) == ("multi", "data/m", "v1.0.0")
    assert [r["path"] for r in service.status()] == ["data/iris", "data/m"]


def test_cache_lock_files_belong_to_the_cache_writer_alone(tmp_path: Path) -> None:
    """Only the cache's writer (the catalog service, on a platform) takes its locks: a lock
    file is never writable by anyone else, whatever the umask."""
    cache = SharedCache(tmp_path / "cache")
    old = os.umask(0o000)
    try:
        with cache.lock("abc.dir"):
            pass
    finally:
        os.umask(old)
    mode = (tmp_path / "cache" / "locks" / "abc.dir.lock").stat().st_mode & 0o777
    assert mode == 0o600


def test_pull_by_stage(service: DataService, registry: Registry) -> None:
    """``iris@prod`` pulls the version GTO promoted to prod, as `dvc artifacts get --stage`."""
    from hub_ext.datasets.publish import git

    git(registry.path, "tag", "-a", "iris#prod#1", "iris@v1.1.0^{commit}", "-m", "promote")
    try:
        result = service.pull("iris@prod", "data/prod")
        assert result.version == "v1.1.0"
        with pytest.raises(
            UnknownVersion, match="No version of iris is in stage 'qa'; stages: prod"
        ):
            service.pull("iris@qa", "data/qa")
        assert [e.stages for e in service.list_datasets() if e.name == "iris"] == [
            {"prod": "v1.1.0"}
        ]
    finally:
        git(registry.path, "tag", "-d", "iris#prod#1")
