"""Registry parity: dsdata sees a registry exactly as ``gto show`` does, and a pull gives the
bytes ``dvc artifacts get`` gives.

The registry is made with the real ``dvc`` and ``gto`` CLIs (``tests/registries.py``,
``build_gto_registry``): a single-file dataset, a file declared in a sub-directory's
``dvc.yaml`` (``sub:feats``), a directory, a pre-release, a deregistered version, an
unassigned stage, a deprecated artifact, a model, an untracked "dataset" and a lightweight
tag. The same registry is read through the core, ``/dsdata/api/`` and the magics' tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server_ext.catalog import RegistryCatalog
from server_ext.core import DataService
from server_ext.display import datasets_table, info_table
from server_ext.errors import UnknownDataset, UnknownVersion

from .registries import (  # noqa: F401  (fixtures)
    Registry,
    dvc_site_cache_fixture,
    gto_registry_fixture,
    md5_tree,
)
from .rest import API, body, dsdata_server_config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

DATASETS = ("images", "sub:feats", "table")  # type: dataset, active, at least one release


def tool(name: str, *args: str, cwd: Path | None = None) -> str:
    exe = os.path.join(os.path.dirname(sys.executable), name)
    proc = subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def gto_show(registry: Registry, name: str | None = None) -> Any:
    return json.loads(tool("gto", "show", *([name] if name else []), "--json", cwd=registry.path))


def dvc_get(registry: Registry, name: str, out: Path, *option: str) -> Path:
    tool("dvc", "artifacts", "get", registry.url, name, *option, "-o", os.fspath(out))
    return out


def tree(path: Path) -> dict[str, str]:
    """relpath -> md5; a single file is ``{"": md5}``."""
    if path.is_file():
        import hashlib

        return {"": hashlib.md5(path.read_bytes()).hexdigest()}
    return md5_tree(path)


@pytest.fixture
def service(gto_registry: Registry, tmp_path: Path) -> DataService:
    (tmp_path / "ws").mkdir()
    cache = tmp_path / "cache"
    return DataService(tmp_path / "ws", cache, RegistryCatalog([gto_registry.url], cache))


def test_the_listing_is_what_gto_show_reports(service: DataService, gto_registry: Registry) -> None:
    shown = gto_show(gto_registry)
    entries = {e.name: e for e in service.list_datasets()}
    # every active artifact GTO shows, except the model; the broken one with its error
    assert set(shown) == {*DATASETS, "broken", "model1"}
    assert set(entries) == {*DATASETS, "broken"}
    for name, entry in entries.items():
        assert entry.latest == shown[name]["version"], name
        assert dict(entry.stages) == {s: v for s, v in shown[name]["stage"].items() if v}, name
        versions = [v["version"] for v in gto_show(gto_registry, name) if v["registrations"]]
        assert sorted(entry.versions) == sorted(versions), name
    assert entries["table"].versions == ("v1.0.0", "v1.1.0-rc.1")  # semver order
    assert entries["table"].latest == "v1.1.0-rc.1"  # GTO's latest: pre-releases count
    assert entries["table"].stages == {"prod": "v1.0.0"}  # staging was unassigned
    assert entries["sub:feats"].versions == ("v1.0.0",)  # v2.0.0 was deregistered
    assert (entries["table"].kind, entries["table"].nfiles) == ("file", 1)
    assert entries["table"].path == "data/table.csv" and entries["table"].description
    assert entries["sub:feats"].path == "sub/feats.csv"
    assert (entries["images"].kind, entries["images"].nfiles) == ("directory", 2)
    assert "broken" in entries["broken"].error and "data/broken.csv" in entries["broken"].error
    assert not any(entries[n].error for n in DATASETS)
    from server_ext.widgets import DatasetBrowser

    browser = DatasetBrowser(service)
    browser.dataset.value = "table"
    assert browser.version._options_labels == ("v1.1.0-rc.1", "v1.0.0 (prod)")
    assert browser.path.placeholder == "data/table.csv"
    text = str(datasets_table(service.list_datasets()))
    assert "prod -> v1.0.0" in text and "dev -> v1.0.0" in text
    assert "unavailable: " in text and "sub:feats" in text


@pytest.mark.parametrize(
    ("reference", "option"),
    [
        ("table", ("--rev", "v1.1.0-rc.1")),  # latest is the pre-release
        ("table@v1.0.0", ("--rev", "v1.0.0")),
        ("table@v1.1.0-rc.1", ("--rev", "v1.1.0-rc.1")),
        ("table@prod", ("--stage", "prod")),
        ("sub:feats", ("--rev", "v1.0.0")),
        ("images@dev", ("--stage", "dev")),
        ("images@v1", ("--rev", "v1.0.0")),
    ],
)
def test_a_pull_gives_the_bytes_of_dvc_artifacts_get(
    service: DataService,
    gto_registry: Registry,
    tmp_path: Path,
    reference: str,
    option: tuple[str, ...],
) -> None:
    name = reference.partition("@")[0]
    result = service.pull(reference)
    expected = dvc_get(gto_registry, name, tmp_path / "dvc-out", *option)
    assert tree(service.root / result.path) == tree(expected)
    # single files land at data/<file name>; a nested artifact's directory at data/NAME
    default = {"table": "data/table.csv", "sub:feats": "data/feats.csv", "images": "data/images"}
    assert result.path == default[name]
    assert (service.root / result.path).is_file() == (name != "images")
    [row] = [r for r in service.status() if r["path"] == result.path]
    assert (row["dataset"], row["state"]) == (name, "unchanged")


def test_what_gto_retired_cannot_be_pulled(service: DataService) -> None:
    with pytest.raises(
        UnknownVersion, match=r"no version v9\.0\.0; versions: v1\.0\.0, v1\.1\.0-rc\.1"
    ):
        service.pull("table@v9.0.0")  # a lightweight tag is not a release
    with pytest.raises(UnknownVersion, match=r"no version v2\.0\.0"):
        service.pull("sub:feats@v2.0.0")  # deregistered
    with pytest.raises(UnknownVersion, match="in stage 'staging'; stages: prod"):
        service.pull("table@staging")  # unassigned
    with pytest.raises(UnknownDataset, match="No dataset 'retired'"):
        service.pull("retired")  # deprecated
    with pytest.raises(UnknownDataset, match="No dataset 'model1'"):
        service.pull("model1")  # a model, not a dataset
    assert not (service.root / "data").exists()


def test_a_single_file_dataset_through_status_info_and_repull(service: DataService) -> None:
    first = service.pull("table@v1.0.0")
    target = service.root / "data" / "table.csv"
    assert target.read_bytes() == b"a,b\n1,2\n" and first.content_hash.count(".") == 0
    target.write_bytes(b"edited\n")
    [row] = service.status()
    assert (row["state"], row["changed"]) == ("modified", ["table.csv"])
    with pytest.raises(Exception, match="local changes"):
        service.pull("table")
    assert target.read_bytes() == b"edited\n"  # refused: nothing lost
    again = service.pull("table", force=True)
    assert again.version == "v1.1.0-rc.1" and target.read_bytes() == b"a,b\n1,2\n3,4\n"
    assert again.from_cache is False and again.downloaded_objects == 1
    (service.root / "data" / "dir").mkdir()
    with pytest.raises(Exception, match="is a directory"):
        service.pull("table", "data/dir")
    info = service.info("table")
    assert [d.version for d in info.versions] == ["v1.1.0-rc.1", "v1.0.0"]
    assert all(d.cached and d.nfiles == 1 for d in info.versions)
    text = str(info_table(info))
    assert "one file" in text and "prod" in text
    lineage = service.lineage.records()
    assert [(r["dataset"], r["version"], r["path"]) for r in lineage] == [
        ("table", "v1.0.0", "data/table.csv"),
        ("table", "v1.1.0-rc.1", "data/table.csv"),
    ]


# --- the same registry through /dsdata/api/ -------------------------------------------------
@pytest.fixture
def jp_server_config(
    gto_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    return dsdata_server_config(monkeypatch, gto_registry.url, tmp_path / "cache")


async def test_the_rest_api_lists_and_pulls_nested_and_single_file_datasets(
    jp_fetch: Any, jp_root_dir: Path
) -> None:
    import asyncio

    listed = {d["name"]: d for d in body(await jp_fetch(*API, "datasets"))["datasets"]}
    assert set(listed) == {*DATASETS, "broken"}
    assert listed["table"]["kind"] == "file" and listed["table"]["stages"] == {"prod": "v1.0.0"}
    assert listed["broken"]["error"] and listed["images"]["error"] == ""
    info = body(await jp_fetch(*API, "datasets", "sub:feats"))  # jp_fetch quotes it
    assert [d["version"] for d in info["version_details"]] == ["v1.0.0"]
    response = await jp_fetch(
        *API, "pulls", method="POST", body=json.dumps({"dataset": "sub:feats"})
    )
    job_id = body(response)["id"]
    for _ in range(600):
        job = body(await jp_fetch(*API, "pulls", job_id))
        if job["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "done", job
    assert job["result"]["path"] == "data/feats.csv"
    assert (jp_root_dir / "data" / "feats.csv").read_bytes() == b"f\n0.5\n"
