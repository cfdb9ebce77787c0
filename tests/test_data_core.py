"""The data core against real DVC registries: list, info, pull, status, lineage, the cache.

Everything is real: git repositories with annotated release tags, DVC remotes on disk, the
shared cache, workspaces in temp dirs, several OS processes where concurrency matters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server_ext.cache import SharedCache
from server_ext.core import DataService, PullProgress, PullResult
from server_ext.errors import (
    CorruptData,
    InvalidReference,
    RegistryUnavailable,
    UnknownDataset,
    UnknownVersion,
    WorkspaceConflict,
)

from .registries import (  # noqa: F401  (fixtures)
    BIG_RELEASES,
    Registry,
    big_registry_fixture,
    dvc_site_cache_fixture,
    expected_tree,
    md5_tree,
    registry_fixture,
    release,
)

OBJECT_NAME = re.compile(r"^[0-9a-f]{30}(\.dir)?$")


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def make_service(
    registry: Registry, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DataService]:
    """``make_service(name)``: a DataService for workspace ``tmp_path/name``, shared cache."""
    monkeypatch.setenv("DSDATA_REGISTRIES", registry.url)
    monkeypatch.setenv("DSDATA_CACHE_DIR", os.fspath(cache_dir))
    monkeypatch.delenv("DSDATA_CATALOG_URL", raising=False)
    monkeypatch.delenv("DSPLATFORM_WORKSPACE", raising=False)

    def make(name: str = "ws") -> DataService:
        root = tmp_path / name
        root.mkdir(exist_ok=True)
        return DataService(root=root)

    return make


@pytest.fixture
def service(make_service: Callable[..., DataService]) -> DataService:
    return make_service()


def snapshot_dir(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root`` (hidden ones too) with its bytes: None for directories."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): None if p.is_dir() else p.read_bytes()
        for p in sorted(root.rglob("*"))
    }


def assert_cache_sound(cache_dir: Path) -> None:
    """Every object stored under its final name has exactly the content its name says."""
    for path in (cache_dir / "files" / "md5").glob("*/*"):
        name = path.name
        if not OBJECT_NAME.match(name):
            continue  # DVC's own temp files, never looked up
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        assert path.parent.name + name.removesuffix(".dir") == md5, f"corrupt object {path}"


def version_hash(service: DataService, name: str, version: str) -> str:
    for detail in service.info(name)["version_details"]:
        if detail["version"] == version:
            return str(detail["content_hash"])
    raise AssertionError(f"no {name}@{version}")


# --- list and info -------------------------------------------------------------------------


def test_list_gives_names_versions_latest_and_description(
    service: DataService, registry: Registry
) -> None:
    entries = service.list_datasets()
    assert [e["name"] for e in entries] == ["iris", "multi"]
    iris, multi = entries
    latest = release("iris", "v2.0.0")
    assert iris["versions"] == ["v1.0.0", "v1.1.0", "v2.0.0"]
    assert iris["latest"] == "v2.0.0"
    assert iris["description"] == latest.description
    assert iris["labels"] == list(latest.labels)
    assert (iris["size"], iris["nfiles"]) == (latest.size, len(latest.files))
    assert iris["registry"] == registry.url
    assert iris["path"] == "data/iris"
    assert multi["versions"] == ["v1.0.0"] and multi["latest"] == "v1.0.0"
    assert multi["description"] == "Nested directories"


def test_info_gives_each_version_size_hash_rev_and_cached_flag(
    service: DataService, registry: Registry
) -> None:
    info = service.info("iris")
    assert info["name"] == "iris" and info["registry"] == registry.url
    details = info["version_details"]
    assert [d["version"] for d in details] == ["v2.0.0", "v1.1.0", "v1.0.0"]  # newest first
    for detail in details:
        rel = release("iris", detail["version"])
        assert detail["tag"] == rel.tag
        assert detail["rev"] == registry.rev(rel.tag)
        assert (detail["size"], detail["nfiles"]) == (rel.size, len(rel.files))
        content_hash = detail["content_hash"]
        assert re.fullmatch(r"[0-9a-f]{32}\.dir", content_hash)
        # the content hash names DVC's manifest in the remote, which lists exactly our files
        raw = registry.object_path(content_hash).read_bytes()
        assert hashlib.md5(raw).hexdigest() + ".dir" == content_hash
        assert {e["relpath"]: e["md5"] for e in json.loads(raw)} == expected_tree(rel)
        assert detail["cached"] is False
    assert len({d["content_hash"] for d in details}) == 3

    service.pull("iris@v1.1.0")
    cached = {d["version"]: d["cached"] for d in service.info("iris")["version_details"]}
    assert cached == {"v2.0.0": False, "v1.1.0": True, "v1.0.0": False}


def test_info_of_an_unknown_dataset_lists_the_available_ones(service: DataService) -> None:
    with pytest.raises(UnknownDataset, match=r"available: iris, multi"):
        service.info("penguins")


# --- pull: version selection ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "version"),
    [
        ("iris@v1.0.0", "v1.0.0"),  # exact
        ("iris@v1", "v1.1.0"),  # newest v1.*
        ("iris@v1.1", "v1.1.0"),
        ("iris@v1.0", "v1.0.0"),
        ("iris@v2", "v2.0.0"),
        ("iris", "v2.0.0"),  # latest
        ("iris@latest", "v2.0.0"),
    ],
)
def test_pull_picks_the_version(
    service: DataService, registry: Registry, reference: str, version: str
) -> None:
    rel = release("iris", version)
    result = service.pull(reference)
    assert isinstance(result, PullResult)
    assert (result.dataset, result.version, result.tag) == ("iris", version, rel.tag)
    assert result.rev == registry.rev(rel.tag)
    assert result.path == "data/iris"
    assert (result.files, result.bytes) == (len(rel.files), rel.size)
    assert result.from_cache is False and result.downloaded_objects == len(rel.files) + 1
    assert md5_tree(service.root / "data" / "iris") == expected_tree(rel)


def test_version_argument_overrides_the_reference(service: DataService) -> None:
    result = service.pull("iris@v2", "elsewhere/iris-old", version="v1.0")
    assert result.version == "v1.0.0" and result.path == "elsewhere/iris-old"
    assert md5_tree(service.root / "elsewhere/iris-old") == expected_tree(release("iris", "v1.0.0"))


def test_pull_nested_directories_into_an_absolute_path_inside_the_workspace(
    service: DataService,
) -> None:
    target = service.root / "datasets" / "m"
    result = service.pull("multi@v1", os.fspath(target))
    assert result.path == "datasets/m"
    assert md5_tree(target) == expected_tree(release("multi", "v1.0.0"))
    assert (target / "test" / "nested" / "deep" / "part-0.csv").read_bytes() == b"x,y\n9,10\n"


def test_progress_reports_phases_in_order(service: DataService) -> None:
    seen: list[PullProgress] = []
    service.pull("multi", on_progress=lambda p: seen.append(PullProgress(**p.as_dict())))
    phases = [p.phase for p in seen]
    assert phases[0] == "resolving" and phases[-1] == "done"
    order = ["resolving", "downloading", "linking", "done"]
    assert [order.index(p) for p in phases] == sorted(order.index(p) for p in phases)
    assert "downloading" in phases and "linking" in phases
    for p in seen[1:]:  # never more than 100%, although DVC also counts the manifest
        assert p.bytes_done <= (p.bytes_total or 0) and p.files_done <= (p.files_total or 0)
    rel = release("multi", "v1.0.0")
    last = seen[-1]
    assert (last.bytes_done, last.bytes_total) == (rel.size, rel.size)
    assert (last.files_done, last.files_total) == (len(rel.files), len(rel.files))


# --- the shared cache ----------------------------------------------------------------------


def test_repull_comes_from_the_cache_even_without_the_remote(
    make_service: Callable[..., DataService], registry: Registry, cache_dir: Path
) -> None:
    first = make_service("one").pull("iris@v1.1.0")
    assert first.from_cache is False and first.downloaded_objects == 2
    gone = registry.remote.with_name(registry.remote.name + ".gone")
    registry.remote.rename(gone)
    try:
        service = make_service("two")
        again = service.pull("iris@v1.1.0", "copy/iris")
        assert again.from_cache is True and again.downloaded_objects == 0
        assert again.content_hash == first.content_hash
        assert md5_tree(service.root / "copy/iris") == expected_tree(release("iris", "v1.1.0"))
        # proof that the remote is really unreachable: an uncached version cannot come
        with pytest.raises(RegistryUnavailable):
            service.pull("iris@v1.0.0", "other/iris")
        assert not (service.root / "other").exists()
    finally:
        gone.rename(registry.remote)


def test_ten_users_share_one_cached_copy(
    make_service: Callable[..., DataService], registry: Registry, cache_dir: Path
) -> None:
    rel = release("multi", "v1.0.0")
    results = [make_service(f"user{i:02d}").pull("multi@v1") for i in range(10)]
    assert [r.from_cache for r in results] == [False] + [True] * 9
    assert [r.downloaded_objects for r in results] == [len(rel.files) + 1] + [0] * 9
    for i in range(10):
        assert md5_tree(cache_dir.parent / f"user{i:02d}" / "data" / "multi") == expected_tree(rel)
    # the cache holds exactly one copy: the version's objects plus its manifest
    manifest = registry.object_path(results[0].content_hash)
    one_copy = rel.size + manifest.stat().st_size
    assert SharedCache(cache_dir).usage_bytes() == one_copy
    objects = [p for p in (cache_dir / "files" / "md5").glob("*/*") if p.is_file()]
    assert len(objects) == len(rel.files) + 1


def _pull_in_process(
    root: str, cache: str, registry_url: str, reference: str, barrier: Any, results: Any
) -> None:
    """Child process (spawn): wait for the others, then pull."""
    os.environ["DSDATA_REGISTRIES"] = registry_url
    service = DataService(root=Path(root), cache_dir=Path(cache))
    service.list_datasets()  # resolve first, so the pulls race for the download itself
    barrier.wait(timeout=120)
    try:
        results.put(service.pull(reference).as_dict())
    except Exception as e:  # reported to the parent, which fails the test
        results.put({"error": repr(e)})


def test_concurrent_pulls_from_processes_download_once(
    registry: Registry, tmp_path: Path, cache_dir: Path
) -> None:
    ctx = multiprocessing.get_context("spawn")
    count = 4
    barrier, results = ctx.Barrier(count), ctx.Queue()
    roots = [tmp_path / f"proc{i}" for i in range(count)]
    procs = [
        ctx.Process(
            target=_pull_in_process,
            args=(os.fspath(r), os.fspath(cache_dir), registry.url, "multi@v1", barrier, results),
        )
        for r in roots
    ]
    for proc in procs:
        proc.start()
    try:
        done = [results.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    assert not [d for d in done if "error" in d], done
    rel = release("multi", "v1.0.0")
    assert sum(d["downloaded_objects"] for d in done) == len(rel.files) + 1
    assert sorted(d["from_cache"] for d in done) == [False] + [True] * (count - 1)
    for root in roots:
        assert md5_tree(root / "data" / "multi") == expected_tree(rel)
    assert_cache_sound(cache_dir)


def test_corrupt_remote_object_leaves_target_and_cache_clean(
    service: DataService, registry: Registry, cache_dir: Path
) -> None:
    service.pull("iris@v1.0.0")
    before = snapshot_dir(service.root / "data")
    lineage_before = (service.root / ".dsdata" / "lineage.json").read_bytes()
    v2_hash = version_hash(service, "iris", "v2.0.0")
    victim = next(e for e in registry.manifest(v2_hash) if e["relpath"] == "iris.csv")
    obj = registry.object_path(victim["md5"])
    original = obj.read_bytes()
    os.chmod(obj, 0o644)
    obj.write_bytes(b"sl,sw,pl,pw,species\n6.6,6.6,6.6,6.6,tampered\n")
    os.chmod(obj, 0o444)
    try:
        with pytest.raises(CorruptData, match="checksum"):
            service.pull("iris@v2")
    finally:
        os.chmod(obj, 0o644)
        obj.write_bytes(original)
        os.chmod(obj, 0o444)
    assert snapshot_dir(service.root / "data") == before  # byte for byte, no temp siblings
    assert (service.root / ".dsdata" / "lineage.json").read_bytes() == lineage_before
    cache = SharedCache(cache_dir)
    assert not cache.object_path(victim["md5"]).exists()
    assert not cache.is_complete(v2_hash)
    assert_cache_sound(cache_dir)
    [row] = service.status()
    assert (row["version"], row["state"]) == ("v1.0.0", "unchanged")
    # with the remote repaired, the same pull works
    result = service.pull("iris@v2")
    assert result.version == "v2.0.0" and result.from_cache is False
    assert md5_tree(service.root / "data" / "iris") == expected_tree(release("iris", "v2.0.0"))


def _pull_until_killed(root: str, cache: str, registry_url: str, phase: str, conn: Any) -> None:
    """Child process (spawn): pull big@v2, tell the parent when ``phase`` is under way, hang.

    ``downloading``: from the progress callback, once some bytes arrived.
    ``linking``: from inside the copy of the first file into the temp sibling.
    """
    os.environ["DSDATA_REGISTRIES"] = registry_url
    os.environ["DSDATA_LINK_TYPES"] = "copy"

    def hang() -> None:
        conn.send(phase)
        time.sleep(600)

    def on_progress(progress: PullProgress) -> None:
        if phase == "downloading" and progress.phase == phase and progress.bytes_done > 0:
            hang()

    if phase == "linking":
        real_copyfile = shutil.copyfile

        def copyfile(src: Any, dst: Any, **kwargs: Any) -> Any:
            out = real_copyfile(src, dst, **kwargs)
            if ".dsdata-" in os.fspath(dst):
                hang()
            return out

        shutil.copyfile = copyfile  # type: ignore[assignment]
    DataService(root=Path(root), cache_dir=Path(cache)).pull("big@v2", on_progress=on_progress)
    conn.send("finished")


@pytest.mark.parametrize("phase", ["downloading", "linking"])
def test_killed_pull_leaves_target_as_it_was(
    big_registry: Registry,
    tmp_path: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    phase: str,
) -> None:
    monkeypatch.setenv("DSDATA_REGISTRIES", big_registry.url)
    root = tmp_path / "ws"
    service = DataService(root=root, cache_dir=cache_dir)
    service.pull("big@v1")
    before = snapshot_dir(root / "data" / "big")
    assert list(before) == ["small.txt"]

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_pull_until_killed,
        args=(os.fspath(root), os.fspath(cache_dir), big_registry.url, phase, child),
    )
    proc.start()
    try:
        assert parent.poll(120), "the child never reached the phase"
        assert parent.recv() == phase
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(30)
    finally:
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == -signal.SIGKILL

    assert snapshot_dir(root / "data" / "big") == before
    if phase == "linking":  # the killed pull left its half-built temp sibling
        assert [n for n in os.listdir(root / "data") if n.startswith(".big.dsdata-")]
    [row] = service.status()
    assert (row["version"], row["state"]) == ("v1.0.0", "unchanged")
    assert_cache_sound(cache_dir)
    v2_hash = version_hash(service, "big", "v2.0.0")
    assert SharedCache(cache_dir).is_complete(v2_hash) is (phase == "linking")

    rel = release("big", "v2.0.0", BIG_RELEASES)
    result = service.pull("big@v2")
    assert result.version == "v2.0.0"
    if phase == "downloading":
        assert 0 < result.downloaded_objects <= len(rel.files) + 1
    else:
        assert result.from_cache is True  # the download had finished
    assert md5_tree(root / "data" / "big") == expected_tree(rel)
    assert sorted(os.listdir(root / "data")) == ["big"]  # no temp siblings left behind
    assert_cache_sound(cache_dir)


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
    "reference", ["../etc", "iris/../../x", "-rf", "iris@v1;rm", "iris@../v1", "Iris", "", "@v1"]
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


def test_cache_lock_files_are_usable_by_every_sandbox_user(tmp_path: Path) -> None:
    """The lock file a first user creates must not lock later users (other uids) out."""
    from server_ext.cache import SharedCache

    cache = SharedCache(tmp_path / "cache")
    old = os.umask(0o022)
    try:
        with cache.lock("abc.dir"):
            pass
    finally:
        os.umask(old)
    mode = (tmp_path / "cache" / "locks" / "abc.dir.lock").stat().st_mode & 0o777
    assert mode == 0o666


def test_versions_and_stages_from_refs() -> None:
    """GTO promotion tags NAME#STAGE#N name the version whose release shares the commit."""
    from server_ext.registry import versions_from_refs

    refs = {
        "refs/heads/main": b"c3",
        "refs/tags/iris@v1.0.0": b"t1", "refs/tags/iris@v1.0.0^{}": b"c1",
        "refs/tags/iris@v1.1.0": b"t2", "refs/tags/iris@v1.1.0^{}": b"c2",
        "refs/tags/iris@v2.0.0": b"t3", "refs/tags/iris@v2.0.0^{}": b"c3",
        "refs/tags/iris#prod#1": b"p1", "refs/tags/iris#prod#1^{}": b"c1",
        "refs/tags/iris#prod#2": b"p2", "refs/tags/iris#prod#2^{}": b"c2",
        "refs/tags/iris#staging#1": b"s1", "refs/tags/iris#staging#1^{}": b"c3",
        "refs/tags/iris#dev!#3": b"d3",  # a deprecation: not a stage
        "refs/tags/iris@v3": b"x",  # not a full version: ignored
        "refs/tags/other@v0.1.0": b"o1",
    }  # fmt: skip
    found = versions_from_refs(refs)
    assert [(v.version, v.stages) for v in found["iris"]] == [
        ("v1.0.0", ()), ("v1.1.0", ("prod",)), ("v2.0.0", ("staging",)),
    ]  # fmt: skip
    assert [v.version for v in found["other"]] == ["v0.1.0"]


def test_pull_by_stage(service: DataService, registry: Registry) -> None:
    """``iris@prod`` pulls the version GTO promoted to prod, as `dvc artifacts get --stage`."""
    from hub_ext.data_registry import git

    git(registry.path, "tag", "-a", "iris#prod#1", "iris@v1.1.0^{commit}", "-m", "promote")
    try:
        result = service.pull("iris@prod", "data/prod")
        assert result.version == "v1.1.0"
        with pytest.raises(
            UnknownVersion, match="No version of iris is in stage 'qa'; stages: prod"
        ):
            service.pull("iris@qa", "data/qa")
        assert [e["stages"] for e in service.list_datasets() if e["name"] == "iris"] == [
            {"prod": "v1.1.0"}
        ]
    finally:
        git(registry.path, "tag", "-d", "iris#prod#1")
