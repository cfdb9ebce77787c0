"""The data core against real DVC registries: list, info, pull, status, lineage, the cache.

Everything is real: git repositories with annotated release tags, DVC remotes on disk, the
shared cache, workspaces in temp dirs, several OS processes where concurrency matters.
"""

from __future__ import annotations

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
    RegistryUnavailable,
    UnknownDataset,
)
from server_ext.records import DatasetEntry

from .data_services import (  # noqa: F401  (fixtures)
    assert_cache_sound,
    cache_dir_fixture,
    make_service_fixture,
    service_fixture,
    snapshot_dir,
    version_hash,
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

# --- list and info -------------------------------------------------------------------------


def test_list_gives_names_versions_latest_and_description(
    service: DataService, registry: Registry
) -> None:
    entries = service.list_datasets()
    assert [e.name for e in entries] == ["iris", "multi"]
    iris, multi = entries
    latest = release("iris", "v2.0.0")
    assert iris.versions == ("v1.0.0", "v1.1.0", "v2.0.0")
    assert iris.latest == "v2.0.0"
    assert iris.description == latest.description
    assert iris.labels == tuple(latest.labels)
    assert (iris.size, iris.nfiles) == (latest.size, len(latest.files))
    assert iris.registry == registry.url
    assert iris.path == "data/iris"
    assert multi.versions == ("v1.0.0",) and multi.latest == "v1.0.0"
    assert multi.description == "Nested directories"
    # the REST APIs' JSON of an entry is the same record
    assert DatasetEntry.from_json(json.loads(json.dumps(iris.to_json()))) == iris


def test_info_gives_each_version_size_hash_rev_and_cached_flag(
    service: DataService, registry: Registry
) -> None:
    info = service.info("iris")
    assert info.entry.name == "iris" and info.entry.registry == registry.url
    details = info.versions
    assert [d.version for d in details] == ["v2.0.0", "v1.1.0", "v1.0.0"]  # newest first
    for detail in details:
        rel = release("iris", detail.version)
        assert detail.tag == rel.tag
        assert detail.rev == registry.rev(rel.tag)
        assert (detail.size, detail.nfiles) == (rel.size, len(rel.files))
        content_hash = detail.content_hash
        assert re.fullmatch(r"[0-9a-f]{32}\.dir", content_hash)
        # the content hash names DVC's manifest in the remote, which lists exactly our files
        raw = registry.object_path(content_hash).read_bytes()
        assert hashlib.md5(raw).hexdigest() + ".dir" == content_hash
        assert {e["relpath"]: e["md5"] for e in json.loads(raw)} == expected_tree(rel)
        assert detail.cached is False
    assert len({d.content_hash for d in details}) == 3

    service.pull("iris@v1.1.0")
    cached = {d.version: d.cached for d in service.info("iris").versions}
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
