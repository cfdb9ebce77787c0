"""``reproduce``: the run's code at its sha, its exact dataset versions, its outputs from the
DVC remote, each checked against the content hashes the run recorded."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from server_ext import dsdata
from server_ext.errors import InvalidReference
from server_ext.experiments import ExperimentService, UnknownRun

from .mlflow_server import Project, mlflow_server_fixture, project_fixture  # noqa: F401
from .registries import (  # noqa: F401
    GTO_FILES,
    Registry,
    dvc_site_cache_fixture,
    expected_tree,
    gto_registry_fixture,
    md5_tree,
    registry_fixture,
    release,
)


def test_reproduce_recreates_code_data_and_outputs(
    project: Project, registry: Registry, tmp_path: Path
) -> None:
    root = project.root
    dsdata.pull("iris@v1")
    dsdata.pull("multi", "data/multi")
    (root / "train.py").write_text("DEPTH = 3\n")
    (root / "model").mkdir()
    (root / "model" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (root / "model" / "sub").mkdir()
    (root / "model" / "sub" / "vocab.txt").write_text("a\nb\n")
    original = dsdata.commit("to reproduce", params={"depth": "3"}, outputs=["model"])
    assert original.run_id
    outputs = md5_tree(root / "model")
    lineage = json.loads((root / ".dsdata" / "lineage.json").read_text())["pulls"]

    # the project moves on: other code, another dataset version, other outputs
    (root / "train.py").write_text("DEPTH = 9\n")
    dsdata.pull("iris@v2", force=True)
    (root / "model" / "weights.bin").write_bytes(b"retrained")
    later = dsdata.commit("moved on", outputs=["model"])
    assert later.git_sha != original.git_sha
    # outputs must come from the DVC remote: no local DVC cache left anywhere
    shutil.rmtree(root / ".dvc" / "cache")

    target = tmp_path / "again"
    result = dsdata.reproduce(original.run_id, str(target))
    assert result["directory"] == str(target) and result["git_sha"] == original.git_sha
    assert result["identical"] is True

    # code: the run's commit, checked out
    assert (target / "train.py").read_text() == "DEPTH = 3\n"
    head = Project(target, project.tracking_uri, project.dvc_remote).git("rev-parse", "HEAD")
    assert head == original.git_sha

    # datasets: the exact versions, identical content (by the registry's hash and by md5)
    by_path = {d["path"]: d for d in result["datasets"]}
    assert sorted(by_path) == ["data/iris", "data/multi"]
    recorded = {r["path"]: r for r in lineage}
    for path, name, version in (("data/iris", "iris", "v1.1.0"), ("data/multi", "multi", "v1.0.0")):
        row = by_path[path]
        assert (row["dataset"], row["version"], row["identical"]) == (name, version, True)
        assert row["content_hash"] == recorded[path]["content_hash"]
        assert md5_tree(target / path) == expected_tree(release(name, version))
    pulls = json.loads((target / ".dsdata" / "lineage.json").read_text())["pulls"]
    assert {p["rev"] for p in pulls if p["dataset"] == "iris"} == {registry.rev("iris@v1.1.0")}

    # outputs: fetched from the DVC remote, byte for byte the run's
    [out] = result["outputs"]
    assert out["path"] == "model" and out["identical"] is True
    assert out["content_hash"] == original.outputs["model"]
    assert md5_tree(target / "model") == outputs
    assert not (root / ".dvc" / "cache").exists()  # not borrowed from the project

    # the project itself was not touched
    assert (root / "train.py").read_text() == "DEPTH = 9\n"
    assert project.head() == later.git_sha


def test_reproduce_single_file_datasets_of_a_gto_registry(
    project: Project, gto_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Single files (``table`` by its GTO stage, ``sub:feats`` of a nested ``dvc.yaml``) are
    recorded by commit and come back byte for byte, by version, in the reproduction."""
    monkeypatch.setenv("DSDATA_REGISTRIES", gto_registry.url)
    root = project.root
    table = dsdata.pull("table@prod")
    feats = dsdata.pull("sub:feats")
    assert (table.path, table.version, feats.path) == ("data/table.csv", "v1.0.0", "data/feats.csv")
    (root / "train.py").write_text("print('fit')\n")
    original = dsdata.commit("on single files")
    assert original.run_id
    run = project.client().get_run(original.run_id)
    assert run.data.tags["dsdata.dataset.table"] == f"v1.0.0@{gto_registry.rev('table@v1.0.0')}"
    assert run.data.tags["dsdata.dataset.sub:feats"].startswith("v1.0.0@")

    dsdata.pull("table", force=True)  # the project moves on to the pre-release
    assert (root / "data" / "table.csv").read_bytes() == GTO_FILES["table"]["v1.1.0-rc.1"]
    dsdata.commit("moved on")

    target = tmp_path / "again"
    result = dsdata.reproduce(original.run_id, str(target))
    assert result["identical"] is True
    rows = {d["path"]: (d["dataset"], d["version"], d["identical"]) for d in result["datasets"]}
    assert rows == {
        "data/table.csv": ("table", "v1.0.0", True),
        "data/feats.csv": ("sub:feats", "v1.0.0", True),
    }
    assert (target / "data" / "table.csv").read_bytes() == GTO_FILES["table"]["v1.0.0"]
    assert (target / "data" / "feats.csv").read_bytes() == GTO_FILES["sub:feats"]["v1.0.0"]
    assert (root / "data" / "table.csv").read_bytes() == GTO_FILES["table"]["v1.1.0-rc.1"]


def test_reproduce_into_the_default_directory(project: Project) -> None:
    (project.root / "a.py").write_text("x = 1\n")
    result = dsdata.commit("small")
    assert result.run_id
    reproduced = dsdata.reproduce(result.run_id)
    target = project.root / "reproduce" / result.run_id[:12]
    assert reproduced["directory"] == str(target)
    assert (target / "a.py").read_text() == "x = 1\n"
    assert reproduced["identical"] is True
    assert reproduced["datasets"] == [] and reproduced["outputs"] == []
    assert project.git("status", "--porcelain") == ""  # reproduce/ is ignored
    relative = dsdata.reproduce(result.run_id, "elsewhere/copy")
    assert relative["directory"] == str(project.root / "elsewhere" / "copy")


def test_reproduce_refuses_bad_run_ids_and_non_empty_targets(
    project: Project, tmp_path: Path
) -> None:
    service = ExperimentService()
    for bad in ("", "xyz", "0" * 31, "G" * 32, "../" + "0" * 29, "A" * 32):
        with pytest.raises(InvalidReference, match="expected 32 hex characters"):
            service.reproduce(bad, str(tmp_path / "r"))
    with pytest.raises(
        UnknownRun, match="No MLflow run 0123456789abcdef0123456789abcdef"
    ) as raised:
        service.reproduce("0123456789abcdef0123456789abcdef", str(tmp_path / "r"))
    assert raised.value.status == 404
    assert not (tmp_path / "r").exists()

    # a run made outside %dsdata commit: no sha to reproduce
    client = project.client()
    experiment = client.create_experiment(f"plain-{project.root.name}")
    plain = client.create_run(experiment).info.run_id
    with pytest.raises(UnknownRun, match="was not made by %dsdata commit"):
        service.reproduce(plain, str(tmp_path / "r"))

    (project.root / "a.py").write_text("x = 1\n")
    run_id = dsdata.commit("small").run_id
    assert run_id and re.fullmatch(r"[0-9a-f]{32}", run_id)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine\n")
    with pytest.raises(InvalidReference, match="exists and is not empty"):
        service.reproduce(run_id, str(occupied))
    assert [p.name for p in occupied.iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    assert service.reproduce(run_id, str(tmp_path / "empty"))["identical"] is True
